"""SpineSegAnnotate: build a spine dataset by correcting automatic results, a 3D Slicer scripted module.

Thin: the panel is ``SpineSegLib.slicer.annotation_widget.AnnotationWidget`` and the work is the Qt-free
``SpineSegLib.slicer.annotation_logic.AnnotationLogic`` (tested under slicer-core), to which
:class:`SpineSegAnnotateLogic` delegates. Nothing of SpineSegLib is imported when Slicer loads this file.
"""

import tempfile

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class SpineSegAnnotate(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SpineSeg Annotate")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["SpineSeg"]       # SpineSegLib ships with the SpineSeg module
        self.parent.contributors = ["SpineSeg contributors"]
        self.parent.helpText = _("""
Builds a spine dataset by correcting automatic results, the way CTSpine1K and SPIDER were made: open an annotation
dataset folder (<tt>spineseg dataset init</tt>), press <b>Next case</b> (the next cases are predicted in the
background by the chosen model -- or, with <b>Predict with: Classical</b>, model-free for CT; MR cases are refused),
correct the vertebra segments, <b>Save correction</b> (a new label version;
nothing is ever overwritten), <b>Relabel</b> ("this is T12", the rest follows), <b>Review</b>, and
<b>Fine-tune</b> the model on the corrected cases in the background (Cancel stops it) with the per-vertebra Dice
before and after on the validation cases.
<br><br>From the Python console:<pre>
logic = slicer.util.getModuleLogic("SpineSegAnnotate")
logic.open("/path/to/dataset"); case = logic.next_case(); logic.save()
</pre>""")
        self.parent.acknowledgementText = _("SpineSeg contributors (Apache-2.0).")


class SpineSegAnnotateWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from SpineSegLib.slicer.annotation_widget import AnnotationWidget

        self.logic = SpineSegAnnotateLogic()
        self.panel = AnnotationWidget(self.layout, self.resourcePath("UI/SpineSegAnnotate.ui"), self.logic.impl)

    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.cleanup()

    def onReload(self) -> None:
        from SpineSegLib.slicer.widget_support import reload_lib

        reload_lib()
        ScriptedLoadableModuleWidget.onReload(self)


class SpineSegAnnotateLogic(ScriptedLoadableModuleLogic):
    """``SpineSegLib.slicer.annotation_logic.AnnotationLogic`` on ``slicer.mrmlScene``; its methods are this
    logic's (``logic.open``, ``next_case``, ``save``, ``relabel``, ``review``, ``start_finetune`` ...)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._impl = None

    @property
    def impl(self):
        if self._impl is None:
            from SpineSegLib.slicer.annotation_logic import AnnotationLogic

            self._impl = AnnotationLogic(slicer.mrmlScene)
        return self._impl

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.impl, name)


class SpineSegAnnotateTest(ScriptedLoadableModuleTest):
    """Runs the panel's logic on a one-case dataset made from the bundled sample; fine-tuning is skipped with a
    message when PyTorch is missing (the extension build machines)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SpineSegAnnotate_dataset()

    def test_SpineSegAnnotate_dataset(self):
        from SpineSegLib.slicer.annotation_selftest import run_self_test

        self.delayDisplay(_("Open, next, save, relabel, review, fine-tune"))
        with tempfile.TemporaryDirectory() as folder:
            out = run_self_test(slicer.mrmlScene, folder, log=self.delayDisplay)
        self.assertEqual(out["reviewed"], 3)
        self.delayDisplay(_("Test passed"))
