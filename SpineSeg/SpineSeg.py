"""SpineSeg: model-free spine segmentation of chest CT (Revy et al.), a 3D Slicer scripted module.

This file only declares the module (title, help, the sample it registers with Sample Data), its parameter node and
its Logic / Widget / Test classes; the panel is ``SpineSegLib.slicer.classical_widget.ClassicalWidget``, the work
``SpineSegLib.slicer.classical_logic.ClassicalLogic`` and the self-test ``SpineSegLib.slicer.self_tests``. Nothing
of SpineSegLib is imported when Slicer loads this file; the pipeline's packages are installed on first use.
"""

from typing import Annotated, Union

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Default, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class SpineSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SpineSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineSeg contributors"]
        self.parent.helpText = _("""
Segments the spine of a chest CT without any training data (the classical pipeline of Revy et al.): a bone
threshold, the spine centerline from a half-disk localization map and a robust quadratic fit, a 2-D
reconstruction from the centerline, per-slice bounding lines H1-H3 / V1-V6, and a parabola and
dynamic-programming refinement of the vertebral bodies' anterior contour.
<br><br>Choose a CT volume and click <b>Apply</b>. The result is a segmentation ("Spine"), the centerline, and
the bounding lines, parabola and DP points of the axial slice shown in the red view (or the layout's first slice
view; they follow it as you scroll). With a reference segmentation or label map, IoU, Dice, HD95 and ASSD are
computed. With <b>Vertebrae</b> checked, the spine is also cut into vertebrae at the discs and named from the ribs
and the pelvis: one named segment per vertebra and a per-vertebra report table (heights, deformity grade, trabecular
HU; uncertain names are said so in the status line); with a reference, also per-vertebra Dice, ASSD, detection and
identification. Try it on Sample Data &gt; SpineSeg.
<br><br>From the Python console:<pre>
logic = slicer.util.getModuleLogic("SpineSeg")
out = logic.run(getNode("CTChest"))
</pre>See <a href="https://github.com/spineseg/SpineSeg">the project page</a>.""")
        self.parent.acknowledgementText = _("""
Method: Revy et al., "Spine segmentation in chest CT". Implementation: SpineSeg contributors (Apache-2.0).
Sample: LIDC-IDRI-0001 (The Cancer Imaging Archive, CC BY 3.0).""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """The bundled chest CT (and its reference vertebrae) in Sample Data, category SpineSeg."""
    import SampleData
    from SpineSegLib.slicer.widget_samples import register_sample_data

    register_sample_data(SampleData, title=_("SpineSeg"))


def classicalDefault(name):
    """A default generator reading ``ClassicalParams``' default of ``name`` when the parameter node is created
    (the defaults live in one place, and nothing is imported at module load)."""

    def generate():
        from SpineSegLib.slicer.classical_logic import classical_default

        return classical_default(name)

    return generate


# The GUI state, saved with the scene; the classical parameters carry the names of the ClassicalParams fields.
@parameterNodeWrapper
class SpineSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    referenceNode: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]   # optional: None when not chosen
    showSliceMarkups: bool = True
    vertebrae: bool = False         # also one named segment per vertebra (classical.vertebrae.label_vertebrae)
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


class SpineSegWidget(ScriptedLoadableModuleWidget):
    """Builds the panel (``SpineSegLib.slicer.classical_widget.ClassicalWidget``) with the module's logic."""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from SpineSegLib.slicer.classical_widget import ClassicalWidget

        self.logic = SpineSegLogic()
        self.panel = ClassicalWidget(self, self.logic)

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


class SpineSegLogic(ScriptedLoadableModuleLogic):
    """A thin wrapper of ``SpineSegLib.slicer.classical_logic.ClassicalLogic`` on ``slicer.mrmlScene``; every
    method of ClassicalLogic is available here. From the Python console::

        logic = slicer.util.getModuleLogic("SpineSeg")
        out = logic.run(getNode("CTChest"), {"bone_threshold_hu": 180})
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

    def run(self, inputVolume, parameters=None, progress=None, referenceNode=None, vertebrae=False):
        """Segment the spine of ``inputVolume`` (``parameters``: None, a dict, a ClassicalParams or the parameter
        node; ``vertebrae``: also one named segment per vertebra); returns ``ClassicalOutputs``."""
        return self.impl.run(inputVolume, parameters, progress=progress, reference_node=referenceNode,
                             vertebrae=vertebrae)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.impl, name)


class SpineSegTest(ScriptedLoadableModuleTest):
    """The self-test (``SpineSegLib.slicer.self_tests``) on the bundled sample."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from SpineSegLib.slicer.self_tests import bad_input_self_test, classical_self_test

        self.setUp()
        bad_input_self_test(self, SpineSegLogic())
        self.setUp()
        classical_self_test(self, SpineSegLogic())
