"""The SpineSeg IIS module's panel: vertebra segmentation and labelling with an iterative instance segmentation
network.

It lists the bundled models (preselecting one of the input's modality: a CT model for a CT, an MR model for an
MR), shows the device and a run-time estimate, runs in the background (Run, Cancel) or one network pass per click
(Step, Finish), places the optional start point (a point list and its place button), evaluates against a
reference (one evaluation table, updated on every Evaluate) and exports. The work is the module's logic
(:class:`~SpineSegLib.slicer.iis_logic.IISLogic`: ``start``, ``stepper``, ``estimate``, ``start_probe``,
``evaluate``, ``export_*``); a timer on the GUI thread polls it. Runs only inside 3D Slicer.

Console use (Slicer's Python console)::

    panel = slicer.modules.spinesegiis.widgetRepresentation().self().panel
    panel.models[panel.ui.modelComboBox.currentIndex].name      # the model chosen
    panel.onApplyButton()                                        # as if Run was clicked
"""

from __future__ import annotations

from pathlib import Path

import qt
import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper.guiConnectors import ctkPathLineEditToPathConnector

from SpineSegLib.slicer.widget_base import PanelBase
from SpineSegLib.slicer.widget_choices import (default_model_index, input_modality, model_path_text,
                                               model_path_value, start_point_lps)
from SpineSegLib.slicer.widget_support import ensure_dependencies


class OptionalPathConnector(ctkPathLineEditToPathConnector):
    """A path line edit that shows no model as an empty field (``pathlib.Path()`` would show ".")."""

    def read(self):
        return model_path_value(self._widget.currentPath)

    def write(self, value) -> None:
        self._widget.currentPath = model_path_text(value)


class IISWidget(PanelBase):
    UI_FILE = "UI/SpineSegIIS.ui"
    TITLE = "SpineSeg IIS"

    def __init__(self, host, logic) -> None:
        self.task = None           # background run
        self.stepper = None        # stepping
        self.probe = None          # device probe / timing
        self.probeInfo = None
        self.outputs = None
        self.models = []
        self.lastInputID = None
        self.lastModelPath = None
        self.timer = qt.QTimer()
        self.timer.setInterval(150)
        self.timer.connect("timeout()", self.onTimer)
        super().__init__(host, logic)
        self.populateModels()

    def connect(self) -> None:
        ui = self.ui
        ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        ui.stepButton.connect("clicked(bool)", self.onStepButton)
        ui.runToEndButton.connect("clicked(bool)", self.onRunToEndButton)
        ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        ui.measureButton.connect("clicked(bool)", self.onMeasureButton)
        ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        ui.exportLabelmapButton.connect("clicked(bool)", self.onExportLabelmapButton)
        ui.exportSegmentationButton.connect("clicked(bool)", self.onExportSegmentationButton)
        ui.exportTableButton.connect("clicked(bool)", self.onExportTableButton)
        ui.startPointSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onStartPointNodeChanged)
        single = getattr(getattr(slicer, "qSlicerMarkupsPlaceWidget", None), "ForcePlaceSingleMarkup", None)
        if single is not None:
            ui.startPointPlaceWidget.placeMultipleMarkups = single
        ui.progressBar.visible = False

    def guiMapping(self) -> dict:
        mapping = super().guiMapping()
        mapping["modelPath"] = OptionalPathConnector(self.ui.modelPathLineEdit, Path)
        return mapping

    def stop(self) -> None:
        self.timer.stop()
        self.onCancelButton()
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None
        self.outputs = None

    def enter(self) -> None:
        super().enter()
        self.startProbe(timePasses=False)

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        volume = self.parameterNode.inputVolume if self.parameterNode else None
        volumeID = volume.GetID() if volume is not None else None
        if volumeID != self.lastInputID:
            self.lastInputID = volumeID
            self.selectModelForInput()
        if self.modelPath() != self.lastModelPath:        # chosen in the list, or a weights file typed in
            self.lastModelPath = self.modelPath()
            self.updateModelInfo()
        self.updateButtons()
        self.updateEstimate()

    # -- models -------------------------------------------------------------------------------------------------
    def modelPath(self) -> str:
        return model_path_text(self.parameterNode.modelPath) if self.parameterNode else ""

    def populateModels(self) -> None:
        """The bundled models (with their cards) and an entry for any weights file; the current model when it is
        bundled, else one of the input's modality."""
        self.models = list(self.logic.models())
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for m in self.models:
            combo.addItem(m.label(), str(m.path))
        combo.addItem(_("Weights file..."), "")
        current = self.modelPath()
        index = next((i for i, m in enumerate(self.models) if str(m.path) == current), None)
        if index is None and current:
            index = len(self.models)                  # a weights file of the user's
        if index is None:
            volume = self.parameterNode.inputVolume if self.parameterNode else None
            index = default_model_index(self.models, input_modality(volume))
        combo.setCurrentIndex(len(self.models) if index is None else index)
        combo.blockSignals(wasBlocked)
        self.onModelChanged(combo.currentIndex)

    def selectModelForInput(self) -> None:
        """A new input: when a bundled model of the other modality is selected, select one of the input's."""
        combo = self.ui.modelComboBox
        if not self.models or combo.currentIndex >= len(self.models):
            return                                  # not populated yet, or the user's own weights file
        modality = input_modality(self.parameterNode.inputVolume)
        if modality is None or self.models[combo.currentIndex].modality == modality:
            return
        index = default_model_index(self.models, modality)
        if index is not None and index != combo.currentIndex:
            combo.setCurrentIndex(index)

    def onModelChanged(self, index) -> None:
        other = index >= len(self.models)
        self.ui.modelPathLineEdit.enabled = other
        if not other and self.parameterNode:
            self.parameterNode.modelPath = Path(self.models[index].path)
        self.updateModelInfo()

    def updateModelInfo(self) -> None:
        path = self.modelPath()
        if not path:
            self.ui.modelInfoLabel.text = _("No model chosen: choose a bundled model or a weights file (.pt).")
            return
        from SpineSegLib.core.errors import SpineSegError
        from SpineSegLib.iis.model.catalog import describe_model

        try:
            info = describe_model(path, read_weights=False)
        except SpineSegError as exc:
            self.ui.modelInfoLabel.text = str(exc)
            return
        self.ui.modelInfoLabel.text = info.details()
        self.updateEstimate()

    # -- device and run-time estimate ----------------------------------------------------------------------------
    def startProbe(self, timePasses: bool) -> None:
        import importlib.util

        if self.probe is not None and not self.probe.finished:
            return
        if importlib.util.find_spec("torch") is None:
            self.ui.deviceInfoLabel.text = _("PyTorch is not installed yet (it is installed on the first Run).")
            return
        if self.probeInfo is not None and not timePasses:
            return
        model = self.modelPath() if timePasses else None
        self.ui.deviceInfoLabel.text = _("Timing network passes ...") if timePasses else _("Detecting devices ...")
        self.probe = self.logic.start_probe(model)
        self.timer.start()

    def probeFinished(self) -> None:
        probe, self.probe = self.probe, None
        if probe.state != "done":
            self.ui.deviceInfoLabel.text = _("Device detection failed: {error}").format(error=probe.message)
            return
        self.probeInfo = info = probe.result
        gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in info.get("gpus", [])) or _("none")
        text = _("torch {torch}; GPU: {gpus}; {cores} CPU cores").format(torch=info["torch"], gpus=gpus,
                                                                          cores=info["cpu_cores"])
        self.ui.deviceInfoLabel.text = text + (_(" with bf16") if info.get("cpu_bf16") else "")
        self.updateEstimate()

    def updateEstimate(self) -> None:
        path = self.modelPath()
        volume = self.parameterNode.inputVolume if self.parameterNode else None
        if not path or volume is None:
            self.ui.estimateLabel.text = ""
            return
        from SpineSegLib.core.errors import SpineSegError

        try:
            estimate = self.logic.estimate(volume, path, probe=self.probeInfo)
        except SpineSegError as exc:
            self.ui.estimateLabel.text = _("No estimate: {reason}").format(reason=exc)
            return
        lines = [_("CPU: {estimate}").format(estimate=estimate.text("cpu"))]
        if not self.probeInfo or self.probeInfo.get("cuda"):
            lines.append(_("GPU: {estimate}").format(estimate=estimate.text("cuda")))
        self.ui.estimateLabel.text = "\n".join(lines)

    def onMeasureButton(self) -> None:
        if not self.modelPath():
            self.showError(_("Choose a model first."))
            return
        if self.ready():
            self.startProbe(timePasses=True)

    # -- state ----------------------------------------------------------------------------------------------------
    def stepping(self) -> bool:
        return self.stepper is not None and not self.stepper.finished

    def busy(self) -> bool:
        return (self.task is not None and not self.task.finished) or self.stepping()

    def updateButtons(self, caller=None, event=None) -> None:
        busy, stepping = self.busy(), self.stepping()
        waiting = stepping and self.stepper.state == "waiting"
        p = self.parameterNode
        ready = bool(p and p.inputVolume and self.modelPath())
        self.ui.applyButton.enabled = ready and not busy
        self.ui.stepButton.enabled = (ready and not busy) or waiting
        self.ui.runToEndButton.enabled = waiting
        self.ui.cancelButton.enabled = busy
        self.ui.progressBar.visible = busy
        hasResult = self.outputs is not None and self.outputs.segmentation.GetScene() is not None
        self.ui.evaluateButton.enabled = hasResult and bool(p and p.referenceNode) and not busy
        for button in (self.ui.exportLabelmapButton, self.ui.exportSegmentationButton, self.ui.exportTableButton):
            button.enabled = hasResult and not busy

    def onStartPointNodeChanged(self, node) -> None:
        self.ui.startPointPlaceWidget.setCurrentNode(node)
        self.ui.startPointPlaceWidget.enabled = node is not None
        if node is not None and node.GetNumberOfControlPoints() <= 1:
            node.SetMaximumNumberOfControlPoints(1)     # one start point: placing again moves it

    def log(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onProgress(self, fraction, message) -> None:
        if fraction == fraction:
            self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message

    def options(self) -> dict:
        p = self.parameterNode
        return dict(device=p.device.value, keep_incomplete=p.keepIncomplete, start_point_lps=start_point_lps(p.startPoint),
                    threads=p.threads or None, check_modality=p.checkModality)

    def ready(self) -> bool:
        from SpineSegLib.slicer import dependencies

        return ensure_dependencies(dependencies.IIS, self.TITLE)

    # -- run in the background ------------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self.busy() or not self.ready():
            return
        from SpineSegLib.core.errors import SpineSegError

        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        try:
            self.task = self.logic.start(self.parameterNode.inputVolume, self.modelPath(),
                                         show_patches=self.parameterNode.showPatches, on_progress=self.onProgress,
                                         on_line=self.log, **self.options())
        except SpineSegError as exc:
            self.showError(str(exc))
            return
        self.ui.statusLabel.text = _("Running in the background ...")
        self.timer.start()
        self.updateButtons()

    def onTimer(self) -> None:
        if self.task is not None and not self.task.finished:
            self.task.poll()
            if self.task.finished:
                self.runFinished()
        if self.stepping():
            self.pollStepper()
        if self.probe is not None:
            self.probe.poll()
            if self.probe.finished:
                self.probeFinished()
        if not self.busy() and self.probe is None:
            self.timer.stop()
        self.updateButtons()

    def runFinished(self) -> None:
        task = self.task
        if task.state == "done":
            self.showOutputs(task.result, _("Done in {seconds:.0f} s.").format(seconds=task.elapsed_s))
        elif task.state == "cancelled":
            self.ui.statusLabel.text = _("Cancelled: the background process was stopped; nothing was added to the "
                                         "scene.")
        else:
            self.showError(_("Failed: {error}").format(error=task.message),
                           "\n".join(getattr(task, "output", [])[-40:]))     # the child's last lines

    def showOutputs(self, outputs, message) -> None:
        self.outputs = outputs
        rows = outputs.rows
        incomplete = [r["name"] for r in rows if r.get("complete") is False]
        text = _("{message} {count} vertebrae: {names}").format(message=message, count=len(rows),
                                                                 names=", ".join(r["name"] for r in rows) or _("none"))
        if incomplete:
            text += " " + _("(incomplete, flagged: {names})").format(names=", ".join(incomplete))
        self.ui.statusLabel.text = "\n".join([text, *outputs.warnings])
        self.ui.resultTableView.setMRMLTableNode(outputs.table)
        outputs.segmentation.CreateClosedSurfaceRepresentation()
        slicer.util.setSliceViewerLayers(background=self.parameterNode.inputVolume, label=None, fit=False)

    # -- stepping -------------------------------------------------------------------------------------------------
    def onStepButton(self) -> None:
        from SpineSegLib.core.errors import SpineSegError

        if not self.stepping():
            if self.busy() or not self.ready():
                return
            try:
                self.stepper = self.logic.stepper(self.parameterNode.inputVolume, self.modelPath(), **self.options())
            except SpineSegError as exc:
                self.showError(str(exc))
                return
            self.ui.statusLabel.text = _("Loading the model and the first patch ...")
        elif self.stepper.state != "waiting":
            return                                      # a pass is being computed: one click, one pass
        self.stepper.advance()
        self.timer.start()
        self.updateButtons()

    def onRunToEndButton(self) -> None:
        if self.stepping():
            self.stepper.advance(free=True)
            self.timer.start()
            self.updateButtons()

    def pollStepper(self) -> None:
        stepper = self.stepper
        step = stepper.poll()
        self.ui.progressBar.value = int(round(100 * stepper.fraction))
        self.ui.statusLabel.text = stepper.message
        if step is not None and stepper.display.memory is not None:
            slicer.util.setSliceViewerLayers(label=stepper.display.memory, labelOpacity=0.4, fit=False)
        if stepper.finished:
            self.stepFinished()

    def stepFinished(self) -> None:
        stepper = self.stepper
        slicer.util.setSliceViewerLayers(label=None, fit=False)
        if stepper.state == "done":
            self.showOutputs(stepper.outputs, _("Traversal finished after {count} passes.").format(
                count=len(stepper.steps)))
        elif stepper.state == "cancelled":
            self.ui.statusLabel.text = _("Stepping cancelled; the temporary nodes were removed.")
        else:
            self.showError(_("Failed: {error}").format(error=stepper.message))

    def onCancelButton(self) -> None:
        if self.task is not None and not self.task.finished:
            self.task.cancel()
            self.runFinished()
        if self.stepping():
            self.stepper.cancel()                       # kills the child at once
            self.stepFinished()
        self.updateButtons()

    # -- evaluation and export ------------------------------------------------------------------------------------
    def onEvaluateButton(self) -> None:
        from SpineSegLib.core.errors import SpineSegError

        p = self.parameterNode
        try:
            table, result = self.logic.evaluate(self.outputs.segmentation, p.referenceNode, p.inputVolume)
        except SpineSegError as exc:
            self.showError(str(exc))
            return
        self.ui.evaluationTableView.setMRMLTableNode(table)
        s = result.summary()
        nan = float("nan")
        self.ui.statusLabel.text = _("Evaluation: detection rate {detection:.2f}, identification accuracy "
                                     "{identification:.2f}, mean Dice {dice:.3f}").format(
            detection=s.get("detection_rate", nan), identification=s.get("id_accuracy", nan),
            dice=s.get("dice_mean", nan))

    def onExportLabelmapButton(self) -> None:
        segmentation, volume = self.outputs.segmentation, self.parameterNode.inputVolume
        self.export(_("Export the vertebrae as a label map"), segmentation.GetName() + ".nii.gz",
                    _("Label map") + " (*.nii.gz *.nrrd *.nii *.mha)",
                    lambda path: self.logic.export_labelmap(segmentation, path, volume, force=True))

    def onExportSegmentationButton(self) -> None:
        segmentation = self.outputs.segmentation
        self.export(_("Export the segmentation"), segmentation.GetName() + ".seg.nrrd",
                    _("Segmentation") + " (*.seg.nrrd)",
                    lambda path: self.logic.export_node(segmentation, path, force=True))

    def onExportTableButton(self) -> None:
        table = self.outputs.table
        self.export(_("Export the per-vertebra table"), table.GetName() + ".tsv", _("Table") + " (*.tsv *.csv)",
                    lambda path: self.logic.export_node(table, path, force=True))
