"""The SpineSeg module's panel: the classical (model-free) spine segmentation of a CT.

It collects the parameters (bound to the module's parameter node), runs the pipeline in the engine's child
process (a timer polls it: the GUI stays responsive, Cancel kills the child and adds nothing), shows the result (the
segmentation -- with "Vertebrae" also one named segment per vertebra and a per-vertebra table --, the centerline,
and the bounding lines, parabola and DP points of the axial slice a slice view
shows: the red one when the layout has it, else the first), evaluates against a reference (one metrics table,
updated on every Evaluate; with vertebrae also the per-vertebra metrics -- Dice, ASSD, detection, identification
-- in a second table, which the panel's table view then shows) and exports. The work is the module's logic
(:class:`~SpineSegLib.slicer.classical_logic.ClassicalLogic`). Runs only inside 3D Slicer.

Console use (Slicer's Python console)::

    panel = slicer.modules.spineseg.widgetRepresentation().self().panel
    panel.onApplyButton()             # as if Apply was clicked; panel.task is the running child
    panel.outputs.segmentation        # the last result's nodes (once panel.task is done)
"""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from SpineSegLib.slicer.widget_base import PanelBase
from SpineSegLib.slicer.widget_support import ensure_dependencies


class ClassicalWidget(PanelBase):
    UI_FILE = "UI/SpineSeg.ui"
    TITLE = "SpineSeg"

    def __init__(self, host, logic) -> None:
        self.task = None           # the engine child while the pipeline runs (logic.start)
        self.outputs = None        # the last ClassicalOutputs
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.onTimer)
        super().__init__(host, logic)

    def connect(self) -> None:
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.exportLabelmapButton.connect("clicked(bool)", self.onExportLabelmapButton)
        self.ui.exportTableButton.connect("clicked(bool)", self.onExportTableButton)
        self.ui.resetDefaultsButton.connect("clicked(bool)", self.onResetDefaultsButton)
        self.ui.showSliceMarkupsCheckBox.connect("toggled(bool)", self.onShowSliceMarkups)
        self.ui.cancelButton.visible = False
        self.ui.progressBar.visible = False

    def stop(self) -> None:
        self.onCancelButton()
        self.timer.stop()
        self.stopFollowing()
        self.outputs = None

    def running(self) -> bool:
        return self.task is not None and not self.task.finished

    def hasResult(self) -> bool:
        return self.outputs is not None and self.outputs.segmentation.GetScene() is not None

    def updateButtons(self, caller=None, event=None) -> None:
        running = self.running()
        p = self.parameterNode
        hasInput = bool(p and p.inputVolume)
        self.ui.applyButton.enabled = hasInput and not running
        self.ui.applyButton.toolTip = _("Segment the spine") if hasInput else _("Select a CT volume first")
        self.ui.cancelButton.visible = running
        self.ui.progressBar.visible = running
        hasResult = self.hasResult()
        self.ui.evaluateButton.enabled = hasResult and bool(p and p.referenceNode) and not running
        self.ui.exportLabelmapButton.enabled = hasResult and not running
        self.ui.exportTableButton.enabled = hasResult and self.outputs.metrics_table is not None and not running

    # -- running (in the engine's child process; a timer on the GUI thread polls it) ------------------------------
    def onProgress(self, fraction, phase) -> None:
        if fraction == fraction:
            self.ui.progressBar.value = int(round(100 * fraction))
        if phase:
            self.ui.statusLabel.text = phase

    def onApplyButton(self) -> None:
        from SpineSegLib.slicer import dependencies

        if self.running() or not ensure_dependencies(dependencies.CLASSICAL, self.TITLE):
            return
        from SpineSegLib.core.errors import SpineSegError

        self.stopFollowing()
        self.ui.progressBar.value = 0
        p = self.parameterNode
        try:
            self.task = self.logic.start(p.inputVolume, p, reference_node=p.referenceNode, on_progress=self.onProgress,
                                         vertebrae=bool(p.vertebrae))
        except SpineSegError as exc:
            self.showError(str(exc))
            return
        except Exception as exc:
            self.showFailure(exc)
            return
        self.ui.statusLabel.text = _("Segmenting the spine in the background ...")
        self.timer.start()
        self.updateButtons()

    def onTimer(self) -> None:
        if self.task is not None and not self.task.finished:
            self.task.poll()
            if self.task.finished:
                self.taskFinished()
        if not self.running():
            self.timer.stop()
        self.updateButtons()

    def taskFinished(self) -> None:
        task = self.task
        if task.state == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; nothing was added to the scene.")
            return
        if task.state != "done":
            self.showError(_("Failed: {error}").format(error=task.message))
            return
        self.outputs = task.result
        result = self.outputs.result
        found = _("found") if result.contrast else _("not found")
        text = _("Done in {seconds:.1f} s: {count} slices with bounding lines, contrast agent "
                 "{found}.").format(seconds=task.elapsed_s, count=len(result.slices), found=found)
        if self.outputs.vertebrae_segmentation is not None:
            text += " " + self.vertebraeSummary(self.outputs)
        if self.outputs.metrics_table is not None:
            text += " " + self.evaluationSummary(self.outputs)
        self.ui.statusLabel.text = text
        self.showResult()

    @staticmethod
    def vertebraeSummary(out) -> str:
        """The vertebrae found, and whether their names are certain (the reason when they are not)."""
        names = [v.name for v in out.vertebrae]
        span = _("{count} vertebrae ({first}-{last})").format(count=len(names), first=names[0], last=names[-1]) \
            if names else _("no vertebra labelled")
        naming = out.naming
        if naming is not None and naming.certain:
            return _("{span}; names: {note}").format(span=span, note=naming.note)
        note = naming.note if naming is not None else ""
        return _("{span}; NAMES UNCERTAIN: {note}").format(span=span, note=note)

    @staticmethod
    def evaluationSummary(out) -> str:
        """The spine's Dice and ASSD against the reference and, with vertebrae, the per-vertebra scores (or why
        there are none)."""
        m = out.metrics
        text = _("Spine: Dice {dice:.3f}, ASSD {assd:.2f} mm.").format(dice=m.get("dsc", float("nan")),
                                                                      assd=m.get("assd_mm", float("nan")))
        if out.vertebrae_segmentation is None:
            return text
        v = out.vertebrae_scores
        if not v:
            return text + " " + out.vertebrae_evaluation_note
        return text + " " + _("Vertebrae: {detected}/{total} detected, {identified} identified, mean Dice "
                              "{dice:.3f}, mean ASSD {assd:.2f} mm, {extra} extra.").format(
            detected=v["detected"], total=v["reference_vertebrae"], identified=v["id_correct"],
            dice=v["dice_mean"], assd=v["assd_mm_mean"], extra=v["extra"])

    def shownTable(self):
        """The table the view shows: the per-vertebra metrics, else the spine's, else the vertebra report."""
        out = self.outputs
        return next((t for t in (out.vertebrae_evaluation, out.metrics_table, out.vertebrae_table)
                     if t is not None), None)

    def onCancelButton(self) -> None:
        if self.running():
            self.task.cancel()
            self.taskFinished()
            self.updateButtons()

    def showResult(self) -> None:
        out = self.outputs
        slicer.util.setSliceViewerLayers(background=out.volume_node, fit=False)
        out.segmentation.GetDisplayNode().SetOpacity2DFill(0.35)
        if out.vertebrae_segmentation is not None:       # the vertebrae cover the spine: show them instead
            out.segmentation.GetDisplayNode().SetVisibility(False)
            out.vertebrae_segmentation.GetDisplayNode().SetOpacity2DFill(0.35)
        self.onShowSliceMarkups(self.ui.showSliceMarkupsCheckBox.checked)
        table = self.shownTable()
        if table is not None:
            self.ui.metricsTableView.setMRMLTableNode(table)
        self.updateButtons()

    def onShowSliceMarkups(self, show) -> None:
        if not self.hasResult():
            return
        self.stopFollowing()
        sliceNode = self.sliceNodeToFollow() if show else None
        if sliceNode is not None:
            self.logic.follow_slice_node(self.outputs, sliceNode)
        else:                                     # hidden, or no slice view in the layout to follow
            for node in self.outputs.slice_display.nodes():
                node.GetDisplayNode().SetVisibility(False)

    def stopFollowing(self) -> None:
        if self.outputs is not None:
            self.logic.stop_following(self.outputs)

    # -- evaluation and export ----------------------------------------------------------------------------------
    def onEvaluateButton(self) -> None:
        from SpineSegLib.core.errors import SpineSegError

        try:
            self.logic.evaluate(self.outputs, self.parameterNode.referenceNode)
        except SpineSegError as exc:
            self.showError(str(exc))
            return
        self.ui.metricsTableView.setMRMLTableNode(self.shownTable())
        self.ui.statusLabel.text = self.evaluationSummary(self.outputs)
        self.updateButtons()

    def onExportLabelmapButton(self) -> None:
        self.export(_("Export the spine mask"), self.outputs.segmentation.GetName() + ".nii.gz",
                    _("Label map") + " (*.nii.gz *.nrrd *.nii *.mha)",
                    lambda path: self.logic.export_labelmap(self.outputs, path, force=True))

    def onExportTableButton(self) -> None:
        self.export(_("Export the metrics table"), self.outputs.metrics_table.GetName() + ".tsv",
                    _("Table") + " (*.tsv *.csv)",
                    lambda path: self.logic.export_table(self.outputs, path, force=True))

    def onResetDefaultsButton(self) -> None:
        from dataclasses import fields

        from SpineSegLib.slicer.classical_logic import classical_params_class

        ClassicalParams = classical_params_class()
        defaults = ClassicalParams()
        for f in fields(ClassicalParams):
            if hasattr(self.parameterNode, f.name):
                setattr(self.parameterNode, f.name, getattr(defaults, f.name))
