"""What the SpineSeg panels share: loading the ``.ui`` into the module widget, the parameter node bound to the
widgets (and rebound when the scene closes), error dialogs, save-file dialogs and exports, the first volume as the
default input, and the slice view to follow.

A panel (:class:`~SpineSegLib.slicer.classical_widget.ClassicalWidget`,
:class:`~SpineSegLib.slicer.iis_widget.IISWidget`) is built by the module file's Widget class, which passes itself
(the ``ScriptedLoadableModuleWidget``: layout, resource path, ``isEntered``) and the module's logic. Runs only
inside 3D Slicer (Qt); the choices it makes are the Qt-free :mod:`SpineSegLib.slicer.widget_choices`.

Console use (Slicer's Python console)::

    panel = slicer.modules.spineseg.widgetRepresentation().self().panel
    panel.parameterNode.inputVolume, panel.logic
"""

from __future__ import annotations

import logging
import traceback

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from SpineSegLib.slicer.widget_choices import slice_node_named, slice_view_to_follow


class PanelBase(VTKObservationMixin):
    """The panel of one module: ``host`` is the module's ScriptedLoadableModuleWidget, ``logic`` its Logic
    (``getParameterNode()`` and the work). Subclasses set :attr:`UI_FILE`, :attr:`TITLE` and connect their
    buttons in :meth:`connect`; :meth:`updateButtons` runs whenever the parameter node changes."""

    UI_FILE = ""
    TITLE = "SpineSeg"

    def __init__(self, host, logic) -> None:
        VTKObservationMixin.__init__(self)
        self.host = host
        self.logic = logic
        self.parameterNode = None
        self._guiTag = None
        uiWidget = slicer.util.loadUI(host.resourcePath(self.UI_FILE))
        host.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.connect()
        self.initializeParameterNode()

    # -- to override ------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect the buttons' signals."""

    def updateButtons(self, caller=None, event=None) -> None:
        """Enable what can be clicked now."""

    def stop(self) -> None:
        """Stop what runs (the scene closes, the module is unloaded)."""

    def guiMapping(self) -> dict:
        """``{parameter name: widget or GuiConnector}``: the widgets with a ``SlicerParameterName``; a subclass
        replaces a connector where Slicer's default one shows a value badly."""
        mapping = {}
        for widget in self.ui.__dict__.values():
            name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
            if name:
                mapping[name] = widget
        return mapping

    # -- the module widget's calls ------------------------------------------------------------------------------
    def cleanup(self) -> None:
        self.stop()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)          # the GUI stops following the parameter node until enter()

    def onSceneStartClose(self, caller, event) -> None:
        self.stop()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.host.parent.isEntered:
            self.initializeParameterNode()

    # -- the parameter node -------------------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self.parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self.parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self.parameterNode:
            self.parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None
            self.removeObserver(self.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.parameterNode = parameterNode
        if self.parameterNode:
            self._guiTag = self.parameterNode.connectParametersToGui(self.guiMapping())
            self.addObserver(self.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.updateButtons()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self.updateButtons()

    # -- dialogs and exports --------------------------------------------------------------------------------------
    def showError(self, message: str, detail: str = "") -> None:
        self.ui.statusLabel.text = message
        slicer.util.errorDisplay(message, windowTitle=self.TITLE, detailedText=detail or None)

    def showFailure(self, exc: BaseException) -> None:
        """An unexpected error: logged with its traceback, shown with it as the details."""
        logging.exception("%s failed", self.TITLE)
        self.showError(_("{title} failed: {error}").format(title=self.TITLE, error=exc), traceback.format_exc())

    def saveFileName(self, title: str, suggested: str, filters: str) -> str:
        """A path from the save-file dialog (which asks before overwriting), or "" when cancelled."""
        return qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), title, suggested, filters)

    def export(self, title: str, suggested: str, filters: str, write) -> None:
        """Ask for a path, then ``write(path)`` (forcing: the dialog asked about overwriting)."""
        from SpineSegLib.core.errors import SpineSegError

        path = self.saveFileName(title, suggested, filters)
        if not path:
            return
        try:
            write(path)
        except SpineSegError as exc:
            self.showError(str(exc))
            return
        self.ui.statusLabel.text = _("Written: {path}").format(path=path)

    # -- views ----------------------------------------------------------------------------------------------------
    def sliceNodeToFollow(self):
        """The slice node of the red view when the layout shows it, else of its first slice view; None when
        the layout has no slice view (or there is no layout manager)."""
        app = getattr(slicer, "app", None)
        layoutManager = app.layoutManager() if app is not None else None
        names = list(layoutManager.sliceViewNames()) if layoutManager is not None else []
        name = slice_view_to_follow(names)
        if name is None:
            return None
        widget = layoutManager.sliceWidget(name)
        if widget is not None:
            return widget.mrmlSliceNode()
        return slice_node_named(slicer.mrmlScene, name)
