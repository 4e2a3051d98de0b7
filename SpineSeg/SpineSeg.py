"""SpineSeg: model-free spine segmentation of chest CT (Revy et al.), a 3D Slicer scripted module.

The widget only collects parameters and shows progress; the work is done by the Qt-free
``SpineSegLib.slicer.classical_logic.ClassicalLogic`` (tested under slicer-core), to which
:class:`SpineSegLogic` delegates. Nothing heavy is imported when Slicer loads this module: SpineSegLib's
pipeline is imported on first use, after the missing Python packages were installed (with the user's consent).
"""

import importlib
import logging
import sys
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Default, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


#
# SpineSeg
#
class SpineSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineSeg contributors"]
        self.parent.helpText = """
Segments the spine of a chest CT without any training data (the classical pipeline of Revy et al.): a bone
threshold, the spine centerline from a half-disk localization map and a robust quadratic fit, a 2-D
reconstruction from the centerline, per-slice bounding lines H1-H3 / V1-V6, and a parabola and
dynamic-programming refinement of the vertebral bodies' anterior contour.
<br><br>Choose a CT volume and click <b>Apply</b>. The result is a segmentation ("Spine"), the centerline, and
the bounding lines, parabola and DP points of the axial slice shown in the red view (they follow the view as
you scroll). With a reference segmentation or label map, IoU, Dice, HD95 and ASSD are computed.
<br><br>From the Python console:<pre>
logic = slicer.util.getModuleLogic("SpineSeg")
out = logic.run(getNode("CTChest"))
</pre>See <a href="https://github.com/spineseg/SpineSeg">the project page</a>."""
        self.parent.acknowledgementText = """
Method: Revy et al., "Spine segmentation in chest CT". Implementation: SpineSeg contributors (Apache-2.0)."""


def classicalDefault(name):
    """A default generator reading the backend's default of classical parameter ``name`` when the parameter node
    is created (so the defaults live in one place, ``ClassicalParams``, and nothing is imported at module load)."""

    def generate():
        from SpineSegLib.slicer.classical_logic import classical_default

        return classical_default(name)

    return generate


#
# SpineSegParameterNode: the GUI state, saved with the scene. The classical parameters carry the names of the
# ClassicalParams fields (the logic reads them by name), their defaults come from ClassicalParams.
#
@parameterNodeWrapper
class SpineSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    referenceNode: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]   # optional: None when not chosen
    showSliceMarkups: bool = True
    # masks
    bone_threshold_hu: Annotated[float, WithinRange(50.0, 1000.0), Default(generator=classicalDefault("bone_threshold_hu"))]
    body_threshold_hu: Annotated[float, WithinRange(-900.0, 0.0), Default(generator=classicalDefault("body_threshold_hu"))]
    remove_aorta: Annotated[bool, Default(generator=classicalDefault("remove_aorta"))]
    # centerline
    disk_radius_mm: Annotated[float, WithinRange(3.0, 40.0), Default(generator=classicalDefault("disk_radius_mm"))]
    posterior_fraction: Annotated[float, WithinRange(0.0, 0.9), Default(generator=classicalDefault("posterior_fraction"))]
    column_search_mm: Annotated[float, WithinRange(5.0, 150.0), Default(generator=classicalDefault("column_search_mm"))]
    ransac_residual_mm: Annotated[float, WithinRange(1.0, 60.0), Default(generator=classicalDefault("ransac_residual_mm"))]
    centerline_window_mm: Annotated[float, WithinRange(0.0, 2000.0), Default(generator=classicalDefault("centerline_window_mm"))]
    # reconstruction and bounding lines
    seed_radius_mm: Annotated[float, WithinRange(1.0, 40.0), Default(generator=classicalDefault("seed_radius_mm"))]
    spinous_z_dilation_mm: Annotated[float, WithinRange(0.0, 40.0), Default(generator=classicalDefault("spinous_z_dilation_mm"))]
    spinous_reconstruction_mm: Annotated[float, WithinRange(0.0, 40.0), Default(generator=classicalDefault("spinous_reconstruction_mm"))]
    top_band_mm: Annotated[float, WithinRange(0.0, 40.0), Default(generator=classicalDefault("top_band_mm"))]
    spinous_band_mm: Annotated[float, WithinRange(5.0, 150.0), Default(generator=classicalDefault("spinous_band_mm"))]
    width_shift_factor: Annotated[float, WithinRange(0.0, 3.0), Default(generator=classicalDefault("width_shift_factor"))]
    # parabola and dynamic programming
    refine_with_parabola: Annotated[bool, Default(generator=classicalDefault("refine_with_parabola"))]
    parabola_min_halfwidth_mm: Annotated[float, WithinRange(2.0, 60.0), Default(generator=classicalDefault("parabola_min_halfwidth_mm"))]
    parabola_max_halfwidth_mm: Annotated[float, WithinRange(2.0, 80.0), Default(generator=classicalDefault("parabola_max_halfwidth_mm"))]
    parabola_count: Annotated[int, WithinRange(2, 50), Default(generator=classicalDefault("parabola_count"))]
    parabola_shift_mm: Annotated[float, WithinRange(0.0, 40.0), Default(generator=classicalDefault("parabola_shift_mm"))]
    dp_penalty: Annotated[float, WithinRange(0.0, 1000.0), Default(generator=classicalDefault("dp_penalty"))]
    dp_scale_min: Annotated[float, WithinRange(0.1, 1.0), Default(generator=classicalDefault("dp_scale_min"))]
    dp_scale_max: Annotated[float, WithinRange(1.0, 3.0), Default(generator=classicalDefault("dp_scale_max"))]
    # finishing
    fill_body_holes: Annotated[bool, Default(generator=classicalDefault("fill_body_holes"))]


#
# Dependencies (asked for and installed on first use, never at module start)
#
def ensureDependencies(requirements, requester: str) -> bool:
    """Check ``requirements`` (see ``SpineSegLib.slicer.dependencies``), ask the user, install what is missing.

    pip packages go through ``slicer.packaging.pip_ensure`` (Slicer >= 5.11) or ``slicer.util.pip_install``;
    torch through the PyTorch extension's ``PyTorchUtils`` when it is installed; SimpleITK and an installed
    torch are never replaced. Returns True when everything is there afterwards."""
    from SpineSegLib.slicer import dependencies

    missing = dependencies.check(requirements)
    if not missing:
        return True
    plan = dependencies.install_plan(missing)
    message = dependencies.describe(plan)
    if not plan.pip and plan.torch is None:
        slicer.util.errorDisplay(message, windowTitle=f"{requester}: missing Python packages")
        return False
    if not slicer.util.confirmOkCancelDisplay(message + "\n\nInstall now?",
                                              windowTitle=f"{requester}: install Python packages"):
        return False
    with slicer.util.WaitCursor():
        if plan.pip:
            try:
                import slicer.packaging as packaging
                pipEnsure = packaging.pip_ensure
            except (ImportError, AttributeError):
                pipEnsure = None
            if pipEnsure is not None:
                pipEnsure(plan.pip, prompt_install=False, requester=requester)
            else:
                slicer.util.pip_install(" ".join(plan.pip))   # a string: older Slicer versions split it
        if plan.torch is not None:
            minimum = plan.torch.requirement.minimum
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                PyTorchUtils = None
            if PyTorchUtils is not None:
                torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                                      torchVersionRequirement=f">={minimum}")
                if torch is None:
                    slicer.util.errorDisplay("PyTorch was not installed.", windowTitle=requester)
                    return False
            else:
                slicer.util.pip_install(f"torch>={minimum}")
    importlib.invalidate_caches()
    still = dependencies.check(requirements)
    if still:
        slicer.util.errorDisplay("Still missing after the installation: " + "; ".join(m.reason for m in still)
                                 + ".\nRestarting 3D Slicer may help.", windowTitle=requester)
        return False
    return True


def reloadSpineSegLib():
    """Reload the SpineSegLib submodules already imported (Slicer's Reload only reloads the module file), the
    ones imported last first, so that a module is reloaded after those it imports."""
    names = [name for name in list(sys.modules) if name == "SpineSegLib" or name.startswith("SpineSegLib.")]
    for name in reversed(names):
        module = sys.modules.get(name)
        if module is not None:
            try:
                importlib.reload(module)
            except Exception:  # a module that fails to reload is reported, the others still reload
                logging.exception("SpineSeg: could not reload %s", name)


#
# SpineSegWidget
#
class SpineSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._progress = None
        self._outputs = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.exportLabelmapButton.connect("clicked(bool)", self.onExportLabelmapButton)
        self.ui.exportTableButton.connect("clicked(bool)", self.onExportTableButton)
        self.ui.resetDefaultsButton.connect("clicked(bool)", self.onResetDefaultsButton)
        self.ui.showSliceMarkupsCheckBox.connect("toggled(bool)", self.onShowSliceMarkups)
        self.ui.cancelButton.visible = False
        self.ui.progressBar.visible = False
        self.initializeParameterNode()
        self._updateButtons()

    def cleanup(self) -> None:
        self._stopFollowing()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self._stopFollowing()
        self._outputs = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onReload(self) -> None:
        reloadSpineSegLib()
        ScriptedLoadableModuleWidget.onReload(self)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode: Optional[SpineSegParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        running = self._progress is not None
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = hasInput and not running
        self.ui.applyButton.toolTip = "Segment the spine" if hasInput else "Select a CT volume first"
        self.ui.cancelButton.visible = running
        self.ui.progressBar.visible = running
        hasResult = self._outputs is not None and self._outputs.segmentation.GetScene() is not None
        hasReference = bool(self._parameterNode and self._parameterNode.referenceNode)
        self.ui.evaluateButton.enabled = hasResult and hasReference and not running
        self.ui.exportLabelmapButton.enabled = hasResult and not running
        self.ui.exportTableButton.enabled = hasResult and self._outputs.metrics_table is not None and not running

    # -- running --------------------------------------------------------------------------------------------
    def _onProgress(self, name, fraction) -> None:
        if fraction == fraction:
            self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = name
        slicer.app.processEvents()     # keeps the GUI alive and lets Cancel be clicked

    def onApplyButton(self) -> None:
        from SpineSegLib.slicer import dependencies

        if not ensureDependencies(dependencies.CLASSICAL, "SpineSeg"):
            return
        from SpineSegLib.core.errors import SpineSegError
        from SpineSegLib.core.progress import Cancelled, Progress

        self._stopFollowing()
        self._progress = Progress(self._onProgress)
        self.ui.progressBar.value = 0
        self._updateButtons()
        try:
            with slicer.util.WaitCursor():
                self._outputs = self.logic.run(self._parameterNode.inputVolume, self._parameterNode,
                                               progress=self._progress,
                                               referenceNode=self._parameterNode.referenceNode)
        except Cancelled:
            self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
            return
        except SpineSegError as exc:
            self.ui.statusLabel.text = str(exc)
            slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg")
            return
        except Exception as exc:
            logging.exception("SpineSeg failed")
            slicer.util.errorDisplay(f"SpineSeg failed: {exc}", detailedText=_traceback(), windowTitle="SpineSeg")
            return
        finally:
            self._progress = None
            self._updateButtons()
        result = self._outputs.result
        self.ui.statusLabel.text = (f"Done in {result.timings.get('total', 0):.1f} s: {len(result.slices)} slices with "
                                    f"bounding lines, contrast agent {'found' if result.contrast else 'not found'}.")
        self._showResult()

    def onCancelButton(self) -> None:
        if self._progress is not None:
            self._progress.cancel()
            self.ui.statusLabel.text = "Cancelling ..."

    def _showResult(self) -> None:
        out = self._outputs
        slicer.util.setSliceViewerLayers(background=out.volume_node, fit=False)
        out.segmentation.GetDisplayNode().SetOpacity2DFill(0.35)
        self.onShowSliceMarkups(self.ui.showSliceMarkupsCheckBox.checked)
        if out.metrics_table is not None:
            self.ui.metricsTableView.setMRMLTableNode(out.metrics_table)
        self._updateButtons()

    def onShowSliceMarkups(self, show) -> None:
        if self._outputs is None:
            return
        self._stopFollowing()
        if show:
            redNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            self.logic.follow_slice_node(self._outputs, redNode)
        else:
            for node in self._outputs.slice_display.nodes():
                node.GetDisplayNode().SetVisibility(False)

    def _stopFollowing(self) -> None:
        if self._outputs is not None and self.logic is not None:
            self.logic.stop_following(self._outputs)

    # -- evaluation and export --------------------------------------------------------------------------------
    def onEvaluateButton(self) -> None:
        from SpineSegLib.core.errors import SpineSegError

        try:
            table = self.logic.evaluate(self._outputs, self._parameterNode.referenceNode)
        except SpineSegError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg")
            return
        self.ui.metricsTableView.setMRMLTableNode(table)
        self._updateButtons()

    def _saveFileName(self, title, suggested, filters) -> str:
        return qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), title, suggested, filters)

    def onExportLabelmapButton(self) -> None:
        path = self._saveFileName("Export the spine mask", self._outputs.segmentation.GetName() + ".nii.gz",
                                  "Label map (*.nii.gz *.nrrd *.nii *.mha)")
        if path:
            self._export(lambda: self.logic.export_labelmap(self._outputs, path, force=True), path)

    def onExportTableButton(self) -> None:
        path = self._saveFileName("Export the metrics table", self._outputs.metrics_table.GetName() + ".tsv",
                                  "Table (*.tsv *.csv)")
        if path:
            self._export(lambda: self.logic.export_table(self._outputs, path, force=True), path)

    def _export(self, write, path) -> None:
        # the file dialog has asked whether to overwrite an existing file
        from SpineSegLib.core.errors import SpineSegError

        try:
            write()
        except SpineSegError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg")
            return
        self.ui.statusLabel.text = f"Written: {path}"

    def onResetDefaultsButton(self) -> None:
        from dataclasses import fields

        from SpineSegLib.slicer.classical_logic import classical_params_class

        ClassicalParams = classical_params_class()
        defaults = ClassicalParams()
        for f in fields(ClassicalParams):
            if hasattr(self._parameterNode, f.name):
                setattr(self._parameterNode, f.name, getattr(defaults, f.name))


def _traceback() -> str:
    import traceback

    return traceback.format_exc()


#
# SpineSegLogic
#
class SpineSegLogic(ScriptedLoadableModuleLogic):
    """The module's logic: a thin wrapper of ``SpineSegLib.slicer.classical_logic.ClassicalLogic`` (imported on
    first use) working on ``slicer.mrmlScene``; every method of ClassicalLogic is available here.

    From the Python console::

        logic = slicer.util.getModuleLogic("SpineSeg")     # or: import SpineSeg; logic = SpineSeg.SpineSegLogic()
        out = logic.run(getNode("CTChest"), {"bone_threshold_hu": 180})
        out.segmentation, out.centerline, out.result.timings
        logic.follow_slice_node(out, getNode("vtkMRMLSliceNodeRed"))
        logic.export_labelmap(out, "/tmp/spine.nii.gz")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._impl = None

    def getParameterNode(self):
        return SpineSegParameterNode(super().getParameterNode())

    @property
    def impl(self):
        if self._impl is None or self._impl.scene is not slicer.mrmlScene:
            from SpineSegLib.slicer.classical_logic import ClassicalLogic

            self._impl = ClassicalLogic(slicer.mrmlScene)
        return self._impl

    def run(self, inputVolume, parameters=None, progress=None, referenceNode=None):
        """Segment the spine of ``inputVolume``; ``parameters``: None, a dict of ClassicalParams fields, a
        ClassicalParams or the parameter node. Returns ``ClassicalOutputs`` (segmentation, centerline, ...)."""
        return self.impl.run(inputVolume, parameters, progress=progress, reference_node=referenceNode)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.impl, name)


#
# SpineSegTest
#
class SpineSegTest(ScriptedLoadableModuleTest):
    """Runs in 3D Slicer (Developer mode: Reload and Test, or ``Slicer --testing``): loads the CTChest sample and
    runs the module's logic on it."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SpineSeg_CTChest()
        self.setUp()
        self.test_SpineSeg_bad_input()

    def test_SpineSeg_CTChest(self):
        import numpy as np
        import SampleData
        from SpineSegLib.slicer import markups, segmentations

        self.delayDisplay("Loading the CTChest sample")
        volume = SampleData.downloadSample("CTChest")
        self.assertIsNotNone(volume)
        logic = SpineSegLogic()
        self.delayDisplay("Segmenting the spine")
        out = logic.run(volume)
        segmentation = out.segmentation.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 1)
        self.assertEqual(segmentation.GetNthSegment(0).GetName(), "Spine")
        mask = segmentations.segmentation_to_image(out.segmentation, volume)
        volumeMl = float((mask.array > 0).sum()) * mask.voxel_volume_mm3 / 1000.0
        self.assertGreater(volumeMl, 100.0)      # a chest CT shows at least ~10 vertebrae
        self.assertLess(volumeMl, 2000.0)
        points = markups.control_points_lps(out.centerline)
        self.assertGreater(len(points), 20)
        self.assertTrue(np.allclose(points, out.result.centerline_curve_lps, atol=1e-3))
        # the slice markups follow the red slice view
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        logic.follow_slice_node(out, red)
        entry = out.result.slices[len(out.result.slices) // 3]
        red.SetSliceOffset(entry.z_mm)
        shown = markups.control_points_lps(out.slice_display.lines["H1"])
        self.assertTrue(np.allclose(shown[:, :2], np.asarray(entry.h1)[:, :2], atol=1e-2))
        logic.stop_following(out)
        self.delayDisplay("Test passed")

    def test_SpineSeg_bad_input(self):
        import numpy as np
        from SpineSegLib.slicer import volumes
        from SpineSegLib.core.errors import InputError
        from SpineSegLib.core.image import Image

        logic = SpineSegLogic()
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            logic.run(None)
        flat = volumes.image_to_volume(slicer.mrmlScene, Image(np.full((1, 64, 64), -1000, np.int16)), "flat")
        with self.assertRaises(InputError):
            logic.run(flat)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count + 1)   # only the test's own volume
        self.delayDisplay("Bad input refused")
