"""SpineSegIIS: vertebra segmentation and labelling with an iterative instance segmentation (IIS) network, a 3D
Slicer scripted module.

The widget only collects choices, shows progress and results; the work is done by the Qt-free
``SpineSegLib.slicer.iis_logic.IISLogic`` (tested under slicer-core), to which :class:`SpineSegIISLogic`
delegates. **Run** starts ``spineseg iis`` in a child process (``PythonSlicer``), so the GUI never freezes and
Cancel kills it; **Step** runs one network pass per click in Slicer's process (a worker thread that halts after
each pass) and shows the patch, the current fragment, the memory and the vertebrae found so far. Nothing heavy is
imported when Slicer loads this module (no torch, no network code).
"""

import enum
import os
import pathlib
import shutil
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import (vtkMRMLLabelMapVolumeNode, vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode,
                    vtkMRMLSegmentationNode)
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

OTHER_MODEL = "Weights file..."


#
# SpineSegIIS
#
class SpineSegIIS(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineSeg IIS"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["SpineSeg"]       # SpineSegLib ships with the SpineSeg module
        self.parent.contributors = ["SpineSeg contributors"]
        self.parent.helpText = """
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
</pre>"""
        self.parent.acknowledgementText = """
Method: Lessmann N, van Ginneken B, de Jong PA, Isgum I. Iterative fully convolutional neural networks for automatic
vertebra segmentation and identification. Medical Image Analysis 53, 2019. Implementation: SpineSeg contributors
(Apache-2.0)."""


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    def label(self):
        return {"auto": "Automatic (GPU when available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}[self.value]


@parameterNodeWrapper
class SpineSegIISParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: pathlib.Path
    device: Device = Device.AUTO
    keepIncomplete: bool = True
    checkModality: bool = True
    showPatches: bool = True
    threads: Annotated[int, WithinRange(0, 256)] = 0
    startPoint: vtkMRMLMarkupsFiducialNode
    referenceNode: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]   # optional: None when not chosen


def _spineSegModule():
    """The SpineSeg module file (dependency installation and Lib reloading live there)."""
    import SpineSeg

    return SpineSeg


#
# SpineSegIISWidget
#
class SpineSegIISWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None          # background run
        self._stepper = None       # in-process stepping
        self._probe = None         # device probe / timing
        self._probeInfo = None
        self._outputs = None
        self._timer = qt.QTimer()
        self._timer.setInterval(150)
        self._timer.connect("timeout()", self.onTimer)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineSegIIS.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineSegIISLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.stepButton.connect("clicked(bool)", self.onStepButton)
        self.ui.runToEndButton.connect("clicked(bool)", self.onRunToEndButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.measureButton.connect("clicked(bool)", self.onMeasureButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.exportLabelmapButton.connect("clicked(bool)", self.onExportLabelmapButton)
        self.ui.exportSegmentationButton.connect("clicked(bool)", self.onExportSegmentationButton)
        self.ui.exportTableButton.connect("clicked(bool)", self.onExportTableButton)
        self.ui.progressBar.visible = False
        self.initializeParameterNode()
        self.populateModels()
        self._updateButtons()

    def cleanup(self) -> None:
        self._timer.stop()
        if self._task is not None:
            self._task.cancel()
        if self._stepper is not None:
            self._stepper.cancel()
        if self._probe is not None:
            self._probe.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._startProbe(timePasses=False)

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancelButton()
        self._outputs = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onReload(self) -> None:
        _spineSegModule().reloadSpineSegLib()
        ScriptedLoadableModuleWidget.onReload(self)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode: Optional[SpineSegIISParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._updateButtons()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._updateButtons()
        self._updateEstimate()

    # -- models --------------------------------------------------------------------------------------------
    def populateModels(self) -> None:
        """Bundled models (Resources/Models, with their cards) and an entry for any weights file."""
        from SpineSegLib.iis.model.catalog import list_models

        self._models = list_models()
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for m in self._models:
            combo.addItem(m.label(), str(m.path))
        combo.addItem(OTHER_MODEL, "")
        current = str(self._parameterNode.modelPath) if self._parameterNode else ""
        index = next((i for i, m in enumerate(self._models) if str(m.path) == current), None)
        if index is None:
            index = len(self._models) if (current and current != ".") or not self._models else 0
        combo.setCurrentIndex(index)
        combo.blockSignals(wasBlocked)
        self.onModelChanged(index)

    def onModelChanged(self, index) -> None:
        other = index >= len(self._models)
        self.ui.modelPathLineEdit.enabled = other
        if not other and self._parameterNode:
            self._parameterNode.modelPath = pathlib.Path(self._models[index].path)
        self._updateModelInfo()

    def _modelPath(self) -> str:
        path = str(self._parameterNode.modelPath) if self._parameterNode else ""
        return "" if path in ("", ".") else path

    def _updateModelInfo(self) -> None:
        path = self._modelPath()
        if not path:
            self.ui.modelInfoLabel.text = "No model bundled: choose a weights file (.pt)."
            return
        from SpineSegLib.core.errors import SpineSegError
        from SpineSegLib.iis.model.catalog import describe_model

        try:
            info = describe_model(path, read_weights=False)
        except SpineSegError as exc:
            self.ui.modelInfoLabel.text = str(exc)
            return
        self.ui.modelInfoLabel.text = info.details()
        self._updateEstimate()

    # -- device and run-time estimate ------------------------------------------------------------------------------
    def _startProbe(self, timePasses: bool) -> None:
        import importlib.util

        if self._probe is not None and not self._probe.finished:
            return
        if importlib.util.find_spec("torch") is None:
            self.ui.deviceInfoLabel.text = "PyTorch is not installed yet (it is installed on the first Run)."
            return
        if self._probeInfo is not None and not timePasses:
            return
        model = self._modelPath() if timePasses else None
        self.ui.deviceInfoLabel.text = "Timing network passes ..." if timePasses else "Detecting devices ..."
        self._probe = self.logic.start_probe(model)
        self._timer.start()

    def _probeFinished(self) -> None:
        probe, self._probe = self._probe, None
        if probe.state != "done":
            self.ui.deviceInfoLabel.text = f"Device detection failed: {probe.message}"
            return
        self._probeInfo = info = probe.result
        gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in info.get("gpus", [])) or "none"
        self.ui.deviceInfoLabel.text = (f"torch {info['torch']}; GPU: {gpus}; {info['cpu_cores']} CPU cores"
                                        + (" with bf16" if info.get("cpu_bf16") else ""))
        self._updateEstimate()

    def _updateEstimate(self) -> None:
        path = self._modelPath()
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if not path or volume is None:
            self.ui.estimateLabel.text = ""
            return
        from SpineSegLib.core.errors import SpineSegError

        try:
            estimate = self.logic.estimate(volume, path, probe=self._probeInfo)
        except SpineSegError as exc:
            self.ui.estimateLabel.text = f"No estimate: {exc}"
            return
        hasGpu = bool(self._probeInfo and self._probeInfo.get("cuda"))
        lines = [f"CPU: {estimate.text('cpu')}"]
        if hasGpu or not self._probeInfo:
            lines.append(f"GPU: {estimate.text('cuda')}")
        self.ui.estimateLabel.text = "\n".join(lines)

    def onMeasureButton(self) -> None:
        if not self._modelPath():
            slicer.util.errorDisplay("Choose a model first.", windowTitle="SpineSeg IIS")
            return
        from SpineSegLib.slicer import dependencies

        if not _spineSegModule().ensureDependencies(dependencies.IIS, "SpineSeg IIS"):
            return
        self._startProbe(timePasses=True)

    # -- state --------------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        running = self._task is not None and not self._task.finished
        stepping = self._stepper is not None and not self._stepper.finished
        return running or stepping

    def _updateButtons(self, caller=None, event=None) -> None:
        busy = self._busy()
        stepping = self._stepper is not None and not self._stepper.finished
        ready = bool(self._parameterNode and self._parameterNode.inputVolume and self._modelPath())
        self.ui.applyButton.enabled = ready and not busy
        self.ui.stepButton.enabled = (ready and not busy) or (stepping and self._stepper.state == "waiting")
        self.ui.runToEndButton.enabled = stepping and self._stepper.state == "waiting"
        self.ui.cancelButton.enabled = busy
        self.ui.progressBar.visible = busy
        hasResult = self._outputs is not None and self._outputs.segmentation.GetScene() is not None
        hasReference = bool(self._parameterNode and self._parameterNode.referenceNode)
        self.ui.evaluateButton.enabled = hasResult and hasReference and not busy
        for button in (self.ui.exportLabelmapButton, self.ui.exportSegmentationButton, self.ui.exportTableButton):
            button.enabled = hasResult and not busy

    def _log(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def _onProgress(self, fraction, message) -> None:
        if fraction == fraction:
            self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message

    def _options(self) -> dict:
        p = self._parameterNode
        start = None
        if p.startPoint is not None and p.startPoint.GetNumberOfControlPoints() > 0:
            ras = [0.0, 0.0, 0.0]
            p.startPoint.GetNthControlPointPositionWorld(0, ras)
            start = (-ras[0], -ras[1], ras[2])          # RAS -> LPS
        return dict(device=p.device.value, keep_incomplete=p.keepIncomplete, start_point_lps=start,
                    threads=p.threads or None, check_modality=p.checkModality)

    def _ready(self) -> bool:
        from SpineSegLib.slicer import dependencies

        return _spineSegModule().ensureDependencies(dependencies.IIS, "SpineSeg IIS")

    # -- run in the background ------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self._busy() or not self._ready():
            return
        from SpineSegLib.core.errors import SpineSegError

        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        try:
            self._task = self.logic.start(self._parameterNode.inputVolume, self._modelPath(),
                                          show_patches=self._parameterNode.showPatches, on_progress=self._onProgress,
                                          on_line=self._log, **self._options())
        except SpineSegError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg IIS")
            return
        self.ui.statusLabel.text = "Running in the background ..."
        self._timer.start()
        self._updateButtons()

    def onTimer(self) -> None:
        if self._task is not None and not self._task.finished:
            self._task.poll()
            if self._task.finished:
                self._runFinished()
        if self._stepper is not None and not self._stepper.finished:
            step = self._stepper.poll()
            self.ui.progressBar.value = int(round(100 * self._stepper.fraction))
            self.ui.statusLabel.text = self._stepper.message
            if step is not None and self._stepper.display.memory is not None:
                slicer.util.setSliceViewerLayers(label=self._stepper.display.memory, labelOpacity=0.4, fit=False)
            if self._stepper.finished:
                self._stepFinished()
        if self._probe is not None:
            self._probe.poll()
            if self._probe.finished:
                self._probeFinished()
        if not self._busy() and self._probe is None:
            self._timer.stop()
        self._updateButtons()

    def _runFinished(self) -> None:
        task = self._task
        if task.state == "done":
            self._showOutputs(task.result, f"Done in {task.elapsed_s:.0f} s.")
        elif task.state == "cancelled":
            self.ui.statusLabel.text = "Cancelled: the background process was stopped; nothing was added to the scene."
        else:
            self.ui.statusLabel.text = f"Failed: {task.message}"
            slicer.util.errorDisplay(task.message, windowTitle="SpineSeg IIS",
                                     detailedText="\n".join(task.output[-40:]))

    def _showOutputs(self, outputs, message) -> None:
        self._outputs = outputs
        rows = outputs.rows
        incomplete = [r["name"] for r in rows if r.get("complete") is False]
        names = ", ".join(r["name"] for r in rows) or "none"
        self.ui.statusLabel.text = (f"{message} {len(rows)} vertebrae: {names}"
                                    + (f" (incomplete, flagged: {', '.join(incomplete)})" if incomplete else "")
                                    + (("\n" + "\n".join(outputs.warnings)) if outputs.warnings else ""))
        self.ui.resultTableView.setMRMLTableNode(outputs.table)
        outputs.segmentation.CreateClosedSurfaceRepresentation()
        slicer.util.setSliceViewerLayers(background=self._parameterNode.inputVolume, label=None, fit=False)

    # -- stepping -------------------------------------------------------------------------------------------
    def onStepButton(self) -> None:
        from SpineSegLib.core.errors import SpineSegError

        if self._stepper is None or self._stepper.finished:
            if self._busy() or not self._ready():
                return
            try:
                self._stepper = self.logic.stepper(self._parameterNode.inputVolume, self._modelPath(),
                                                   **self._options())
            except SpineSegError as exc:
                slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg IIS")
                return
            self.ui.statusLabel.text = "Loading the model and the first patch ..."
        self._stepper.advance()
        self._timer.start()
        self._updateButtons()

    def onRunToEndButton(self) -> None:
        if self._stepper is not None and not self._stepper.finished:
            self._stepper.advance(free=True)
            self._timer.start()
            self._updateButtons()

    def _stepFinished(self) -> None:
        stepper = self._stepper
        slicer.util.setSliceViewerLayers(label=None, fit=False)
        if stepper.state == "done":
            self._showOutputs(stepper.outputs, f"Traversal finished after {len(stepper.steps)} passes.")
        elif stepper.state == "cancelled":
            self.ui.statusLabel.text = "Stepping cancelled; the temporary nodes were removed."
        else:
            self.ui.statusLabel.text = f"Failed: {stepper.message}"
            slicer.util.errorDisplay(stepper.message, windowTitle="SpineSeg IIS")

    def onCancelButton(self) -> None:
        if self._task is not None and not self._task.finished:
            self._task.cancel()
            self._runFinished()
        if self._stepper is not None and not self._stepper.finished:
            with slicer.util.WaitCursor():
                self._stepper.cancel()
            self._stepFinished()
        self._updateButtons()

    # -- evaluation and export ------------------------------------------------------------------------------
    def onEvaluateButton(self) -> None:
        from SpineSegLib.core.errors import SpineSegError

        try:
            table, result = self.logic.evaluate(self._outputs.segmentation, self._parameterNode.referenceNode,
                                                self._parameterNode.inputVolume)
        except SpineSegError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg IIS")
            return
        self.ui.evaluationTableView.setMRMLTableNode(table)
        s = result.summary()
        self.ui.statusLabel.text = (f"Evaluation: detection rate {s.get('detection_rate', float('nan')):.2f}, "
                                    f"identification accuracy {s.get('id_accuracy', float('nan')):.2f}, "
                                    f"mean Dice {s.get('dice_mean', float('nan')):.3f}")

    def _saveFileName(self, title, suggested, filters) -> str:
        return qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), title, suggested, filters)

    def _export(self, write, path) -> None:
        # the file dialog has asked whether to overwrite an existing file
        from SpineSegLib.core.errors import SpineSegError

        try:
            write()
        except SpineSegError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="SpineSeg IIS")
            return
        self.ui.statusLabel.text = f"Written: {path}"

    def onExportLabelmapButton(self) -> None:
        path = self._saveFileName("Export the vertebrae as a label map", self._outputs.segmentation.GetName() + ".nii.gz",
                                  "Label map (*.nii.gz *.nrrd *.nii *.mha)")
        if path:
            self._export(lambda: self.logic.export_labelmap(self._outputs.segmentation, path,
                                                            self._parameterNode.inputVolume, force=True), path)

    def onExportSegmentationButton(self) -> None:
        path = self._saveFileName("Export the segmentation", self._outputs.segmentation.GetName() + ".seg.nrrd",
                                  "Segmentation (*.seg.nrrd)")
        if path:
            self._export(lambda: self.logic.export_node(self._outputs.segmentation, path, force=True), path)

    def onExportTableButton(self) -> None:
        path = self._saveFileName("Export the per-vertebra table", self._outputs.table.GetName() + ".tsv",
                                  "Table (*.tsv *.csv)")
        if path:
            self._export(lambda: self.logic.export_node(self._outputs.table, path, force=True), path)


#
# SpineSegIISLogic
#
class SpineSegIISLogic(ScriptedLoadableModuleLogic):
    """The module's logic: a thin wrapper of ``SpineSegLib.slicer.iis_logic.IISLogic`` (imported on first use)
    working on ``slicer.mrmlScene``, the child process run with ``PythonSlicer``; every method of IISLogic is
    available here.

    From the Python console::

        logic = slicer.util.getModuleLogic("SpineSegIIS")      # or: import SpineSegIIS; logic = SpineSegIIS.SpineSegIISLogic()
        out = logic.segment(getNode("CTChest"), "/path/to/iis-ct.pt", device="auto")   # waits for the child process
        out.segmentation, out.table, out.rows

        task = logic.start(getNode("CTChest"), "/path/to/iis-ct.pt")   # no waiting: poll it (task.poll()) or
        task.wait()                                                      # wait; task.cancel() kills the child

        stepper = logic.stepper(getNode("CTChest"), "/path/to/iis-ct.pt")
        step = stepper.step()          # one network pass; the patch is the ROI "IIS patch"
        out = stepper.run_to_end()
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

            python = shutil.which("PythonSlicer")
            cache = os.path.join(slicer.app.cachePath, "SpineSeg", "pass-times.json")
            self._impl = IISLogic(slicer.mrmlScene, python=python, cache_path=cache)
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


#
# SpineSegIISTest
#
class SpineSegIISTest(ScriptedLoadableModuleTest):
    """Runs in 3D Slicer: loads the CTChest sample and runs the module's logic with the smallest bundled CT model,
    or -- when none is bundled -- with a tiny randomly initialised model written to a temporary folder (then the
    test checks the structure of the result, not its accuracy)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SpineSegIIS_CTChest()

    def _model(self, folder):
        from SpineSegLib.iis.model.catalog import list_models

        bundled = [m for m in list_models() if m.modality == "ct" and not m.experimental]
        if bundled:
            return str(min(bundled, key=lambda m: m.size_mb).path), True
        import torch
        from SpineSegLib.iis.model.checkpoint import save_checkpoint
        from SpineSegLib.iis.model.config import IISConfig
        from SpineSegLib.iis.model.network import IISNet

        torch.manual_seed(0)
        net = IISNet(IISConfig(width=4, levels=2, head_width=4, patch_size=(32, 32, 32), voxel_size_mm=(4.0, 4.0, 4.0)))
        with torch.no_grad():   # random weights; the output layers say "vertebra everywhere, L1, complete"
            net.segmentation_head.bias.fill_(8.0)
            net.label_head.dense.bias.fill_(20.0)
            net.completeness_head.dense.bias.fill_(8.0)
        return str(save_checkpoint(os.path.join(folder, "tiny-ct.pt"), net, {"purpose": "self-test"})), False

    def test_SpineSegIIS_CTChest(self):
        import tempfile

        import numpy as np
        import SampleData
        from SpineSegLib.slicer import markups, segmentations

        self.delayDisplay("Loading the CTChest sample")
        volume = SampleData.downloadSample("CTChest")
        logic = SpineSegIISLogic()
        with tempfile.TemporaryDirectory() as folder:
            model, bundled = self._model(folder)
            self.delayDisplay(f"Running IIS in a child process ({'bundled' if bundled else 'random tiny'} model)")
            out = logic.segment(volume, model, device="auto", timeout=1800)
            labels = segmentations.segment_labels(out.segmentation)
            self.assertGreater(len(labels), 0)
            self.assertEqual(sorted(labels.values()), sorted(r["label"] for r in out.rows))
            ids = segmentations.segmentation_to_image(out.segmentation, volume)
            self.assertEqual(set(int(v) for v in np.unique(ids.array) if v), set(labels.values()))

            self.delayDisplay("Stepping")
            stepper = logic.stepper(volume, model, device="cpu")
            for _ in range(3):
                step = stepper.step(timeout=600)
                if step is None or step.box is None:
                    break
                centre, size, _ = markups.box_lps(stepper.display.box)
                self.assertTrue(np.allclose(centre, step.box.centre_lps, atol=1e-3))
                self.assertTrue(np.allclose(size, step.box.size_mm, atol=1e-3))
            count = slicer.mrmlScene.GetNumberOfNodes()
            stepper.cancel()
            self.assertLess(slicer.mrmlScene.GetNumberOfNodes(), count)     # temporary nodes removed
        self.delayDisplay("Test passed")
