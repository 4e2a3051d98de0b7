"""Drive a module panel's buttons under the harness (Testing/slicer_harness.py: Slicer 5.12.3's own Python layer over
slicer-core, stand-ins only for Qt/CTK): load a scan as a volume node, build the module's Widget with ``setup()``,
click the stand-in buttons and fire the panel's ``QTimer`` (its ``timeout`` signal, i.e. the panel's timer callback)
until the run is over -- as a user of 3D Slicer would, with the engine's real child process behind it.

* ``iis``: the IIS panel on a scan (the bundled model of the scan's modality preselected): Run then Cancel (the scene
  as before), Step a few passes then Cancel (the scene as before), Step then "Run to end" (a result), Run (a result).
* ``classical``: the classical panel on the bundled sample: Apply then Cancel (the scene as before), Apply (a result).
* ``classical-vertebrae``: the classical panel with its Vertebrae checkbox on: Apply on the bundled sample (named,
  coloured vertebra segments and the report table), Evaluate against the sample's reference vertebrae (the per-vertebra
  table), then Apply on the sample's upper half (uncertain names, said in the status line).
* ``annotate-classical``: the SpineSeg Annotate panel on a dataset (``--dataset``): Open, "Predict with: Classical",
  Next (waiting for the model-free prediction of the case in the child), the case shown -- or, on an MR dataset,
  the child's refusal in the status line and a dialog.

Every step is recorded in a JSON report (``DRIVE-REPORT {...}`` as the last line); an error dialog the panel shows is
recorded too. Runs in its own process (the harness replaces ``slicer``, ``qt`` and ``ctk`` in ``sys.modules``).

Console use::

    python Testing/slicer_drive.py iis --volume ../shared/data/mr/vertebral-bodies-myosegmentum/44_img.nii.gz
    python Testing/slicer_drive.py classical
    python Testing/slicer_drive.py classical-vertebrae
    python Testing/slicer_drive.py annotate-classical --dataset /tmp/ct-dataset
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slicer_harness  # noqa: E402


def node_ids(scene) -> list[str]:
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def temporary_nodes(scene) -> list[str]:
    return [scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())
            if scene.GetNthNode(i).GetAttribute("SpineSeg.Temporary")]


class Driver:
    """One module's panel in the harness, its error dialogs recorded."""

    def __init__(self, module: str):
        self.slicer = slicer_harness.install()
        self.errors: list[str] = []
        self.slicer.util.errorDisplay = lambda text, *args, **kwargs: self.errors.append(str(text))
        self.python_module, self.parent, _ = slicer_harness.load_module(module)
        self.module = module

    def open_panel(self):
        """The module's Widget built as Slicer builds it, shown (``enter``); returns its panel."""
        parent_widget, self.widget = slicer_harness.setup_widget(self.python_module, self.module)
        parent_widget.isEntered = True
        if hasattr(self.widget, "enter"):      # Slicer calls it only when the module's Widget defines it
            self.widget.enter()
        return self.widget.panel

    def tick_until(self, timer, done, timeout_s: float, what: str, interval_s: float = 0.05) -> float:
        """Fire ``timer``'s timeout (as Qt would every interval while it is active) until ``done()``; seconds taken."""
        started = time.monotonic()
        while not done():
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{what}: not done after {timeout_s} s")
            if timer.isActive():
                timer._emit("timeout")
            time.sleep(interval_s)
        return round(time.monotonic() - started, 2)


def drive_iis(volume_path: str, threads: int, passes: int) -> dict:
    from SpineSegLib.core.image import read_image
    from SpineSegLib.slicer import segmentations
    from SpineSegLib.slicer.volumes import image_to_volume

    d = Driver("SpineSegIIS")
    report = dict(module="SpineSegIIS", errors=d.errors, steps=[])
    scene = d.slicer.mrmlScene
    volume = image_to_volume(scene, read_image(volume_path), Path(volume_path).name.split(".")[0])
    panel = d.open_panel()
    ui, p = panel.ui, panel.parameterNode
    report["input"] = p.inputVolume.GetName() if p.inputVolume else None
    report["model"] = panel.models[ui.modelComboBox.currentIndex].name if ui.modelComboBox.currentIndex < len(
        panel.models) else None
    p.device = type(p.device)("cpu")
    p.threads = threads
    # the device probe the panel started when it was shown
    report["probe_s"] = d.tick_until(panel.timer, lambda: panel.probe is None, 300, "device probe")
    report["device_info"] = ui.deviceInfoLabel.text
    before = node_ids(scene)

    # a model of the other modality: the child refuses it, the panel shows the child's message, adds nothing
    chosen = ui.modelComboBox.currentIndex
    other = next((i for i, m in enumerate(panel.models) if m.modality != panel.models[chosen].modality), None)
    if other is not None:
        ui.modelComboBox.currentIndex = other
        ui.applyButton.click()
        d.tick_until(panel.timer, lambda: panel.task.finished, 300, "Run with the other modality's model")
        report["steps"].append(dict(action=f"Run with {panel.models[other].name}", state=panel.task.state,
                                    message=panel.task.message, dialogs=list(d.errors),
                                    scene_unchanged=node_ids(scene) == before))
        d.errors.clear()
        ui.modelComboBox.currentIndex = chosen

    # Run, then Cancel once the traversal runs
    ui.applyButton.click()
    d.tick_until(panel.timer, lambda: panel.task.finished or "traversal" in (panel.task.message or ""), 300,
                 "Run until the traversal")
    ui.cancelButton.click()
    report["steps"].append(dict(action="Run, Cancel", state=panel.task.state, status=ui.statusLabel.text,
                                scene_unchanged=node_ids(scene) == before, cancel_enabled=ui.cancelButton.enabled))

    # Step a few passes, then Cancel
    states = []
    for _ in range(passes):
        ui.stepButton.click()
        d.tick_until(panel.timer, lambda: panel.stepper.state != "stepping", 300, "Step")
        states.append(panel.stepper.state)
    box = panel.stepper.display.box
    report["steps"].append(dict(action=f"Step x{passes}", states=states, passes=len(panel.stepper.steps),
                                box_shown=box is not None and box.GetScene() is scene,
                                run_to_end_enabled=ui.runToEndButton.enabled, status=ui.statusLabel.text))
    ui.cancelButton.click()
    report["steps"].append(dict(action="Cancel stepping", state=panel.stepper.state, status=ui.statusLabel.text,
                                scene_unchanged=node_ids(scene) == before))

    # Step, then Run to end: the same child finishes, the result is imported
    ui.stepButton.click()
    d.tick_until(panel.timer, lambda: panel.stepper.state != "stepping", 300, "Step")
    pid = panel.stepper.task.pid
    ui.runToEndButton.click()
    seconds = d.tick_until(panel.timer, lambda: panel.stepper.finished, 1200, "Run to end")
    report["steps"].append(dict(action="Step, Run to end", state=panel.stepper.state, seconds=seconds,
                                same_child=panel.stepper.task.pid == pid, **_result(panel, scene, segmentations)))
    stepped = panel.outputs

    # Run
    ui.applyButton.click()
    seconds = d.tick_until(panel.timer, lambda: panel.task.finished, 1200, "Run")
    report["steps"].append(dict(action="Run", state=panel.task.state, seconds=seconds,
                                **_result(panel, scene, segmentations)))
    report["same_vertebrae"] = ([r["name"] for r in stepped.rows] == [r["name"] for r in panel.outputs.rows]
                                if panel.outputs is not None and stepped is not None else None)
    report["temporary_nodes_left"] = temporary_nodes(scene)
    d.widget.cleanup()
    return report


def _result(panel, scene, segmentations) -> dict:
    out = panel.outputs
    if out is None:
        return dict(segments=[], status=panel.ui.statusLabel.text)
    names = [out.segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(out.segmentation.GetSegmentation().GetNumberOfSegments())]
    return dict(segments=names, segmentation_in_scene=out.segmentation.GetScene() is scene,
                table_in_scene=out.table.GetScene() is scene, table_shown=panel.ui.resultTableView.mrmlTableNode()
                is out.table, rows=[r["name"] for r in out.rows], labels=sorted(segmentations.segment_labels(
                    out.segmentation).values()), status=panel.ui.statusLabel.text,
                export_enabled=panel.ui.exportLabelmapButton.enabled)


def drive_classical() -> dict:
    from SpineSegLib.slicer.self_tests import load_sample

    d = Driver("SpineSeg")
    report = dict(module="SpineSeg", errors=d.errors, steps=[])
    scene = d.slicer.mrmlScene
    load_sample(scene)
    panel = d.open_panel()
    ui, p = panel.ui, panel.parameterNode
    report["input"] = p.inputVolume.GetName() if p.inputVolume else None
    before = node_ids(scene)

    # Apply, then Cancel once the pipeline reports its first phase
    ui.applyButton.click()
    d.tick_until(panel.timer, lambda: panel.task.finished or panel.task.fraction > 0, 120, "Apply until progress")
    phase = panel.task.message
    ui.cancelButton.click()
    report["steps"].append(dict(action="Apply, Cancel", cancelled_during=phase, state=panel.task.state,
                                status=ui.statusLabel.text, scene_unchanged=node_ids(scene) == before))

    # Apply
    ui.applyButton.click()
    seconds = d.tick_until(panel.timer, lambda: panel.task.finished, 600, "Apply")
    out = panel.outputs
    step = dict(action="Apply", state=panel.task.state, seconds=seconds, status=ui.statusLabel.text,
                progress=ui.progressBar.value)
    if out is not None:
        segmentation = out.segmentation.GetSegmentation()
        step.update(segments=[segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())],
                    segmentation_in_scene=out.segmentation.GetScene() is scene,
                    centerline_points=out.centerline.GetNumberOfControlPoints(),
                    markups_checkbox=ui.showSliceMarkupsCheckBox.checked,
                    export_enabled=ui.exportLabelmapButton.enabled, running=panel.running())
        # the user scrolls the red view to a slice of the result: its bounding lines follow
        red = d.slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        entry = out.result.slices[len(out.result.slices) // 2]
        red.SetSliceOffset(entry.z_mm)
        step["slice_markups_follow_red"] = out.slice_display.slice_index == len(out.result.slices) // 2
    report["steps"].append(step)
    d.widget.cleanup()
    return report


def _vertebrae_step(panel, action: str, seconds: float) -> dict:
    """What a vertebrae run put into the scene: segments (name, colour, label), the report table, the status."""
    from SpineSegLib.slicer.segmentations import segment_labels
    from SpineSegLib.slicer.tables import table_rows

    out = panel.outputs
    step = dict(action=action, state=panel.task.state, seconds=seconds, status=panel.ui.statusLabel.text)
    if out is None or out.vertebrae_segmentation is None:
        return step
    seg = out.vertebrae_segmentation
    labels = segment_labels(seg)
    segments = [seg.GetSegmentation().GetNthSegment(i) for i in range(seg.GetSegmentation().GetNumberOfSegments())]
    ids = [seg.GetSegmentation().GetSegmentIdBySegment(s) for s in segments]
    step.update(segmentation=seg.GetName(), segments=[s.GetName() for s in segments],
                colours=[[round(c, 4) for c in s.GetColor()] for s in segments], labels=[labels[i] for i in ids],
                spine_visible=bool(out.segmentation.GetDisplayNode().GetVisibility()),
                table=out.vertebrae_table.GetName(), rows=[r["Vertebra"] for r in table_rows(out.vertebrae_table)],
                table_shown=panel.ui.metricsTableView.mrmlTableNode() is out.vertebrae_table,
                names_certain=out.naming.certain if out.naming is not None else None)
    return step


def drive_classical_vertebrae() -> dict:
    from SpineSegLib.core.image import Image, read_image
    from SpineSegLib.core.orientation import to_canonical
    from SpineSegLib.core.resources import resource_dir
    from SpineSegLib.slicer.self_tests import load_sample
    from SpineSegLib.slicer.tables import table_rows
    from SpineSegLib.slicer.volumes import image_to_volume, volume_to_image
    from SpineSegLib.slicer.widget_samples import SAMPLE

    d = Driver("SpineSeg")
    report = dict(module="SpineSeg", errors=d.errors, steps=[])
    scene = d.slicer.mrmlScene
    volume = load_sample(scene)
    panel = d.open_panel()
    ui, p = panel.ui, panel.parameterNode
    ui.vertebraeCheckBox.checked = True                       # the user ticks "Vertebrae"
    report.update(input=p.inputVolume.GetName() if p.inputVolume else None, vertebrae_parameter=p.vertebrae)

    ui.applyButton.click()
    seconds = d.tick_until(panel.timer, lambda: panel.task.finished, 600, "Apply with vertebrae")
    report["steps"].append(_vertebrae_step(panel, "Apply (vertebrae)", seconds))

    # Evaluate against the sample's reference vertebrae (a label map the user loaded and picked)
    reference = image_to_volume(scene, read_image(resource_dir("samples") / SAMPLE / "vertebrae.nii.gz"),
                                "reference vertebrae", labelmap=True)
    ui.referenceSelector.setCurrentNode(reference)
    enabled = ui.evaluateButton.enabled
    ui.evaluateButton.click()
    out = panel.outputs
    table = out.vertebrae_evaluation
    report["steps"].append(dict(
        action="Evaluate", enabled=enabled, reference_parameter=p.referenceNode is reference,
        status=ui.statusLabel.text, spine_dice=out.metrics.get("dsc"),
        table=table.GetName() if table is not None else None,
        table_shown=table is not None and ui.metricsTableView.mrmlTableNode() is table,
        rows=[{k: r[k] for k in ("ref_name", "pred_name", "status", "dice", "assd_mm", "detected", "identified")}
              for r in table_rows(table)] if table is not None else [],
        summary={k: out.vertebrae_scores.get(k) for k in ("detected", "id_correct", "reference_vertebrae", "extra",
                                                          "dice_mean", "assd_mm_mean")}))

    # the upper half of the sample (only the first rib in view): the names are uncertain
    can = to_canonical(volume_to_image(volume)).image
    half = can.array.shape[0] // 2
    upper = Image(can.array[half:].copy(), can.spacing, tuple(can.index_to_lps([0, 0, half])), can.direction)
    ui.referenceSelector.setCurrentNode(None)
    ui.inputSelector.setCurrentNode(image_to_volume(scene, upper, "upper half"))
    ui.applyButton.click()
    seconds = d.tick_until(panel.timer, lambda: panel.task.finished, 600, "Apply on the upper half")
    report["steps"].append(_vertebrae_step(panel, "Apply (vertebrae, upper half)", seconds))
    report["temporary_nodes_left"] = temporary_nodes(scene)
    d.widget.cleanup()
    return report


def drive_annotate_classical(dataset: str) -> dict:
    d = Driver("SpineSegAnnotate")
    from SpineSegLib.slicer.annotation_widget import METHOD_CHOICES     # imports qt: after the harness is in place

    report = dict(module="SpineSegAnnotate", errors=d.errors, steps=[], shown_volumes=[])
    # fit=True needs the application's slice logics, which the harness does not model: record what is shown
    d.slicer.util.setSliceViewerLayers = lambda background=None, **kw: report["shown_volumes"].append(
        background.GetName() if background is not None else None)
    d.open_panel()
    panel = d.widget.panel
    ui, logic = panel.ui, panel.logic
    logic.threads = 1
    ui.datasetPathLineEdit.currentPath = dataset
    ui.openButton.click()
    report["steps"].append(dict(action="Open", status=ui.statusLabel.text, cases=[r["case"] for r in logic.cases()]))
    ui.methodComboBox.currentIndex = [m for m, _ in METHOD_CHOICES].index("classical")
    report["steps"].append(dict(action="Predict with: Classical", method=logic.method,
                                choice=ui.methodComboBox.currentText, prefetch=logic.prefetch_state()))
    ui.nextButton.click()
    waiting = ui.statusLabel.text
    seconds = d.tick_until(panel._timer, lambda: logic.case is not None or d.errors, 300,
                           "Next with the classical method")
    d.tick_until(panel._timer, lambda: not logic.prefetch_state().startswith("predicting"), 300,
                 "the background predictions")
    panel._timer._emit("timeout")                  # the panel's next tick shows how they ended
    case = logic.case
    segmentation = case.segmentation.GetSegmentation() if case is not None else None
    report["steps"].append(dict(
        action="Next", waiting=waiting, seconds=seconds, status=ui.statusLabel.text,
        case=case.name if case else None, case_status=case.status if case else None, prefetch=ui.prefetchLabel.text,
        failure=logic.prefetch_failure(),
        segments=[segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        if segmentation is not None else []))
    d.widget.cleanup()
    return report


DRIVES = {"iis": lambda args: drive_iis(args.volume, args.threads, args.passes),
          "classical": lambda args: drive_classical(),
          "classical-vertebrae": lambda args: drive_classical_vertebrae(),
          "annotate-classical": lambda args: drive_annotate_classical(args.dataset)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("panel", choices=tuple(DRIVES))
    parser.add_argument("--volume", help="the scan the IIS panel segments")
    parser.add_argument("--dataset", help="the annotation dataset the Annotate panel opens")
    parser.add_argument("--threads", type=int, default=2, help="the IIS panel's CPU threads (default 2)")
    parser.add_argument("--passes", type=int, default=3, help="network passes stepped before Cancel (default 3)")
    args = parser.parse_args(argv)
    try:
        report = DRIVES[args.panel](args)
    except BaseException as exc:  # a report, whatever failed (the test asserts on it)
        report = dict(panel=args.panel, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    print("DRIVE-REPORT " + json.dumps(report, default=str))
    return 0 if not report.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
