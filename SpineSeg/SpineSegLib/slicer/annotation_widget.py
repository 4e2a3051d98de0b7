"""The annotation-correction panel's widget (the ``SpineSegAnnotate`` module builds it): buttons, the case table
and progress. Every action is the Qt-free :class:`~SpineSegLib.slicer.annotation_logic.AnnotationLogic`'s; this
class only reads the choices, asks before unsaved edits are dropped, and shows what the logic returns. Runs only
inside 3D Slicer (``qt``, ``ctk``, ``slicer.util``).

A ``QTimer`` on the GUI thread polls the fine-tuning child (:mod:`.annotation_finetune`) and the background
predictions; nothing heavy runs on the GUI thread (saving a case, a fraction of a second, excepted). "Predict with"
chooses what predicts the cases ahead: the IIS model of the model selector, or the classical method (model-free, CT
only: ``spineseg dataset predict --method classical``; the child's refusal of MR cases is shown as it words it).

Console use (Slicer's Python console)::

    w = slicer.modules.spinesegannotate.widgetRepresentation().self().panel
    w.logic.open("/data/my-dataset"); w.refreshCases()
"""

from __future__ import annotations

import os
from pathlib import Path

import qt
import slicer
from slicer.i18n import tr as _

from SpineSegLib.annotation.predict import CLASSICAL, MODEL
from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.slicer import dependencies
from SpineSegLib.slicer import process as background
from SpineSegLib.slicer.annotation_logic import CASE_COLUMNS, vertebra_names
from SpineSegLib.slicer.widget_support import ensure_dependencies

TITLE = "SpineSeg Annotate"
#: the "Predict with" choices: (method, label), in the selector's order
METHOD_CHOICES = ((MODEL, "IIS model"), (CLASSICAL, "Classical (model-free, CT only)"))


class AnnotationWidget:
    """The panel inside the module's layout (``layout``), its widgets from the ``.ui`` file at ``uiPath``."""

    def __init__(self, layout, uiPath, logic):
        self.logic = logic
        self._task = None            # fine-tuning child
        self._waitingFor = None      # a case whose background prediction Next waits for
        uiWidget = slicer.util.loadUI(str(uiPath))
        layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self.onTimer)
        for name, handler in (("openButton", self.onOpen), ("nextButton", self.onNext), ("saveButton", self.onSave),
                              ("revertButton", self.onRevert), ("editButton", self.onEdit),
                              ("relabelButton", self.onRelabel), ("reviewButton", self.onReview),
                              ("finetuneButton", self.onFinetune), ("cancelButton", self.onCancel),
                              ("useNewModelButton", self.onUseNewModel)):
            getattr(self.ui, name).connect("clicked(bool)", handler)
        self.ui.caseTable.connect("cellDoubleClicked(int,int)", self.onCaseDoubleClicked)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.methodComboBox.addItems([_(label) for _method, label in METHOD_CHOICES])
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.caseTable.setColumnCount(len(CASE_COLUMNS))
        self.ui.caseTable.setHorizontalHeaderLabels([_(heading) for _key, heading in CASE_COLUMNS])
        self.ui.relabelAsComboBox.addItems(vertebra_names())
        self.ui.userLineEdit.text = os.environ.get("USER", os.environ.get("USERNAME", ""))
        self.ui.progressBar.visible = False
        self._newModel = None
        self._modelPaths = []        # the model selector's entries ("" = no model)
        self._shownFailure = ""      # the background prediction failure last shown in the status line
        self._failureDialog = False  # whether one was shown in a dialog since the method or model was chosen
        self.populateModels()
        self._update()
        self._timer.start()

    def cleanup(self) -> None:
        self._timer.stop()
        if self._task is not None:
            self._task.cancel()
        self.logic.stop_prefetch()

    # -- helpers -----------------------------------------------------------------------------------------------
    def _run(self, action, *args):
        """Run a logic action; an error is shown, never raised into Qt."""
        try:
            return action(*args)
        except SpineSegError as exc:
            self._say(str(exc))
            slicer.util.errorDisplay(str(exc))
        except Exception as exc:  # show it, keep the panel usable
            import traceback

            traceback.print_exc()
            self._say(_("Unexpected error: {error}").format(error=exc))
            slicer.util.errorDisplay(_("Unexpected error: {error}").format(error=exc))
        return None

    def _say(self, text: str) -> None:
        self.ui.statusLabel.text = text

    def _user(self):
        return self.ui.userLineEdit.text.strip() or None

    def _mayDropEdits(self) -> bool:
        """True when no edits would be lost, or the user agrees to drop them."""
        if not self.logic.has_unsaved_edits():
            return True
        return slicer.util.confirmYesNoDisplay(
            _("Case {case} has unsaved edits. Discard them?").format(case=self.logic.case.name))

    def _update(self) -> None:
        hasDataset, hasCase = self.logic.dataset is not None, self.logic.case is not None
        running = self._task is not None and not self._task.finished
        self.ui.nextButton.enabled = hasDataset and self._waitingFor is None
        for name in ("saveButton", "revertButton", "editButton", "relabelButton", "reviewButton"):
            getattr(self.ui, name).enabled = hasCase
        self.ui.finetuneButton.enabled = hasDataset and not running and bool(self._modelPath())
        self.ui.cancelButton.enabled = running
        self.ui.useNewModelButton.enabled = self._newModel is not None

    # -- models ------------------------------------------------------------------------------------------------
    def populateModels(self) -> None:
        from SpineSegLib.iis.model.catalog import list_models

        combo = self.ui.modelComboBox
        blocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("No model"))
        self._modelPaths = [""]
        for m in list_models():
            combo.addItem(m.label())
            self._modelPaths.append(str(m.path))
        combo.blockSignals(blocked)

    def _modelPath(self) -> str:
        index = self.ui.modelComboBox.currentIndex
        return self._modelPaths[index] if 0 <= index < len(self._modelPaths) else ""

    def onModelChanged(self, index) -> None:
        if self._modelPath() and not ensure_dependencies(dependencies.IIS, _(TITLE)):
            self.ui.modelComboBox.setCurrentIndex(0)
            return
        self._run(self.logic.set_model, self._modelPath() or None)
        self._predictAhead()

    def onMethodChanged(self, index) -> None:
        method = METHOD_CHOICES[index][0] if 0 <= index < len(METHOD_CHOICES) else MODEL
        if method == CLASSICAL and not ensure_dependencies(dependencies.CLASSICAL, _(TITLE)):
            self.ui.methodComboBox.setCurrentIndex(0)
            return
        self._run(self.logic.set_method, method)
        self._predictAhead()

    def _predictAhead(self) -> None:
        """Predict the cases after the current one with the chosen method (none without a model for "model")."""
        self._shownFailure, self._failureDialog = "", False
        if self.logic.predicts() and self.logic.dataset is not None:
            self.logic.start_prefetch(after=self.logic.case.name if self.logic.case else None)
        self._update()

    # -- dataset and cases -------------------------------------------------------------------------------------
    def onOpen(self) -> None:
        if not self._mayDropEdits():
            return
        if self._run(self.logic.open, self.ui.datasetPathLineEdit.currentPath, True) is None:
            return
        self.ui.datasetPathLineEdit.addCurrentPathToHistory()
        self.logic.start_prefetch()
        self.refreshCases()
        self._say(self.logic.summary())

    def refreshCases(self) -> None:
        rows = self._run(self.logic.cases) or []
        table = self.ui.caseTable
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (key, _heading) in enumerate(CASE_COLUMNS):
                item = qt.QTableWidgetItem(str(row.get(key, "")))
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                if row.get("problem"):
                    item.setToolTip(row["problem"])
                table.setItem(r, c, item)
            if self.logic.case is not None and row["case"] == self.logic.case.name:
                table.selectRow(r)
        table.resizeColumnsToContents()
        if self.logic.dataset is not None:
            self.ui.countsLabel.text = self.logic.summary()
        self._update()

    def onCaseDoubleClicked(self, row, column) -> None:
        name = self.ui.caseTable.item(row, 0).text()
        if self._mayDropEdits() and self._run(self.logic.load_case, name, None, True) is not None:
            self._shown()

    def onNext(self) -> None:
        if not self._mayDropEdits():
            return
        name = self._run(self.logic.next_case_name) if self.logic.dataset is not None else None
        if name is None:
            self._say(_("No case left to annotate."))
            return
        if self.logic.prediction_pending(name):
            self._waitingFor = name
            self._say(_("Waiting for the prediction of case {case} ...").format(case=name))
            self._update()
            return
        self._loadNext(name)

    def _loadNext(self, name) -> None:
        self._waitingFor = None
        if self._run(self.logic.load_case, name, None, True) is not None:
            self.logic.start_prefetch(after=name)
            self._shown()

    def _shown(self) -> None:
        case = self.logic.case
        slicer.util.setSliceViewerLayers(background=case.volume, fit=True)
        self.ui.relabelVertebraComboBox.clear()
        self.ui.relabelVertebraComboBox.addItems(self.logic.segment_names())
        self._say(_("Case {case}: {status}, version {version}").format(
            case=case.name, status=case.status, version=case.based_on or "-"))
        self.refreshCases()

    def onEdit(self) -> None:
        """Open the Segment Editor on the case's segmentation and volume."""
        case = self.logic.case
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(case.segmentation)
        editor.setSourceVolumeNode(case.volume)

    def onSave(self) -> None:
        version = self._run(self.logic.save, self._user())
        if version is not None:
            self._say(_("Case {case}: saved version {version}").format(case=self.logic.case.name, version=version))
            self.refreshCases()

    def onRevert(self) -> None:
        if self._mayDropEdits() and self._run(self.logic.refresh) is not None:
            self._shown()

    def onRelabel(self) -> None:
        vertebra, asName = self.ui.relabelVertebraComboBox.currentText, self.ui.relabelAsComboBox.currentText
        out = self._run(self.logic.relabel, vertebra, asName, self._user(), self.ui.relabelOnlyCheckBox.checked)
        if out is not None:
            version, result = out
            self._shown()
            self._say(_("Case {case}: {change}; saved version {version}").format(
                case=self.logic.case.name, change=result.describe(), version=version) if version else result.describe())

    def onReview(self) -> None:
        version = self._run(self.logic.review, self._user())
        if version is not None:
            self._say(_("Case {case}: version {version} reviewed").format(case=self.logic.case.name, version=version))
            self.refreshCases()

    # -- fine-tuning -----------------------------------------------------------------------------------------
    def onFinetune(self) -> None:
        if not ensure_dependencies(dependencies.IIS, _(TITLE)):
            return
        output = self.ui.outputPathLineEdit.currentPath
        if not output:
            model = Path(self._modelPath())
            output = str(self.logic.dataset.root / f"{model.stem}-ft.pt")
        self._newModel = None
        self._task = self._run(self.logic.start_finetune, self._modelPath(), output,
                               iterations=self.ui.iterationsSpinBox.value, on_progress=self._onProgress)
        if self._task is not None:
            self.ui.progressBar.visible = True
            self.ui.progressBar.value = 0
            self._say(_("Fine-tuning in the background ..."))
        self._update()

    def _onProgress(self, fraction, message) -> None:
        if fraction == fraction:
            self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self._say(message)

    def onCancel(self) -> None:
        if self._task is not None and self._task.cancel():
            self._finetuneEnded()

    def _finetuneEnded(self) -> None:
        task, self.ui.progressBar.visible = self._task, False
        if task.state == background.DONE:
            self._newModel = task.result.output
            self.ui.finetuneResultLabel.text = task.result.describe()
        elif task.state == background.CANCELLED:
            self.ui.finetuneResultLabel.text = _("Fine-tuning cancelled; the dataset is unchanged.")
        else:
            self.ui.finetuneResultLabel.text = task.message
        self._say(self.ui.finetuneResultLabel.text)
        self._update()

    def onUseNewModel(self) -> None:
        """Offer the fine-tuned weights as the model for predictions (the IIS module takes the file too)."""
        combo = self.ui.modelComboBox
        combo.addItem(_("{name} (fine-tuned)").format(name=self._newModel.name))
        self._modelPaths.append(str(self._newModel))
        combo.setCurrentIndex(len(self._modelPaths) - 1)

    def onTimer(self) -> None:
        if self._task is not None and not self._task.finished:
            if self._task.poll() in background.FINISHED:
                self._finetuneEnded()
        if self._waitingFor is not None and not self.logic.prediction_pending(self._waitingFor):
            self._loadNext(self._waitingFor)
        elif self._waitingFor is None and self.logic.dataset is not None:
            state = self.logic.prefetch_state()
            if state and self._task is None:
                self.ui.prefetchLabel.text = state
        self._showPrefetchFailure()

    def _showPrefetchFailure(self) -> None:
        """A failed background prediction (e.g. MR cases the classical method refuses, in the command line's words)
        in the status line (each new message) and a dialog (the first one since the method or model was chosen)."""
        failure = self.logic.prefetch_failure() if self.logic.dataset is not None else ""
        if failure and failure != self._shownFailure:
            self._shownFailure = failure
            self._say(_("Background prediction failed: {error}").format(error=failure))
            if not self._failureDialog:
                self._failureDialog = True
                slicer.util.errorDisplay(failure)
