"""SpineSegIIS: vertebra segmentation and labelling with an iterative instance segmentation (IIS) network, a 3D
Slicer scripted module.

This file only declares the module, its parameter node and its Logic / Widget / Test classes; the panel is
``SpineSegLib.slicer.iis_widget.IISWidget``, the work ``SpineSegLib.slicer.iis_logic.IISLogic`` (the network
runs in a child process) and the self-test ``SpineSegLib.slicer.self_tests``. SpineSegLib ships with the SpineSeg
module; nothing of it (no torch, no network code) is imported when Slicer loads this file.
"""

import enum
import os
import pathlib
import shutil
from typing import Annotated, Union

import slicer
from slicer import (vtkMRMLLabelMapVolumeNode, vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode,
                    vtkMRMLSegmentationNode)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class SpineSegIIS(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SpineSeg IIS")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["SpineSeg"]       # SpineSegLib ships with the SpineSeg module
        self.parent.contributors = ["SpineSeg contributors"]
        self.parent.helpText = _("""
Finds the vertebrae of a CT or MR scan one after the other with an iterative instance segmentation network
(Lessmann et al. 2019), labels them (C1 ... L5, S1; T13 and L6 on request) and says for each whether it lies
completely in the scan.
<br><br>Choose the scan and a model (bundled, with its model card, or a weights file), then <b>Run</b> (in the
background, Cancel stops it) or <b>Step</b> through the traversal one network pass at a time. The result is a
segmentation with one named, coloured, coded segment per vertebra (incomplete ones flagged) and a table with
volume, mean intensity, completeness and the anterior / middle / posterior vertebral body heights.
<br><br>From the Python console:<pre>
logic = slicer.util.getModuleLogic("SpineSegIIS")
out = logic.segment(getNode("CTChest"), "/path/to/model.pt")
</pre>""")
        self.parent.acknowledgementText = _("""
Method: Lessmann N, van Ginneken B, de Jong PA, Isgum I. Iterative fully convolutional neural networks for automatic
vertebra segmentation and identification. Medical Image Analysis 53, 2019. Implementation: SpineSeg contributors
(Apache-2.0).""")


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


@parameterNodeWrapper
class SpineSegIISParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: pathlib.Path                       # Path() when none is chosen (shown as an empty field)
    device: Device = Device.AUTO
    keepIncomplete: bool = True
    checkModality: bool = True
    showPatches: bool = True
    threads: Annotated[int, WithinRange(0, 256)] = 0
    startPoint: vtkMRMLMarkupsFiducialNode
    referenceNode: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]   # optional: None when not chosen


class SpineSegIISWidget(ScriptedLoadableModuleWidget):
    """Builds the panel (``SpineSegLib.slicer.iis_widget.IISWidget``) with the module's logic."""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from SpineSegLib.slicer.iis_widget import IISWidget

        self.logic = SpineSegIISLogic()
        self.panel = IISWidget(self, self.logic)

    def cleanup(self) -> None:
        self.panel.cleanup()

    def enter(self) -> None:
        self.panel.enter()

    def exit(self) -> None:
        self.panel.exit()

    def onReload(self) -> None:
        from SpineSegLib.slicer.widget_support import reload_lib

        reload_lib()
        ScriptedLoadableModuleWidget.onReload(self)


class SpineSegIISLogic(ScriptedLoadableModuleLogic):
    """A thin wrapper of ``SpineSegLib.slicer.iis_logic.IISLogic`` on ``slicer.mrmlScene``, the child process run
    with ``PythonSlicer``; every method of IISLogic is available here. From the Python console::

        logic = slicer.util.getModuleLogic("SpineSegIIS")
        out = logic.segment(getNode("CTChest"), "/path/to/iis-ct.pt", device="auto")   # waits
        task = logic.start(getNode("CTChest"), "/path/to/iis-ct.pt")   # task.poll() / task.wait() / task.cancel()
        stepper = logic.stepper(getNode("CTChest"), "/path/to/iis-ct.pt"); step = stepper.step()
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._impl = None

    def getParameterNode(self):
        return SpineSegIISParameterNode(super().getParameterNode())

    @property
    def impl(self):
        if self._impl is None or self._impl.scene is not slicer.mrmlScene:
            from SpineSegLib.slicer.iis_logic import IISLogic

            cache = os.path.join(slicer.app.cachePath, "SpineSeg", "pass-times.json")
            self._impl = IISLogic(slicer.mrmlScene, python=shutil.which("PythonSlicer"), cache_path=cache)
        return self._impl

    def export_labelmap(self, segmentationNode, path, referenceVolume=None, force=False):
        from SpineSegLib.slicer.common import export_labelmap

        return export_labelmap(segmentationNode, path, referenceVolume, force=force)

    def export_node(self, node, path, force=False):
        from SpineSegLib.slicer.common import export_node

        return export_node(node, path, force=force)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.impl, name)


class SpineSegIISTest(ScriptedLoadableModuleTest):
    """The self-test (``SpineSegLib.slicer.self_tests``) on the bundled sample; skipped without PyTorch."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from SpineSegLib.slicer.self_tests import iis_self_test

        self.setUp()
        iis_self_test(self, SpineSegIISLogic())
