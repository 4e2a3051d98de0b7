"""Drive a module panel's buttons under the harness (Testing/slicer_harness.py: Slicer 5.12.3's own Python layer over
slicer-core, stand-ins only for Qt/CTK): load a scan as a volume node, build the module's Widget with ``setup()``,
click the stand-in buttons and fire the panel's ``QTimer`` (its ``timeout`` signal, i.e. the panel's timer callback)
until the run is over -- as a user of 3D Slicer would, with the engine's real child process behind it.

* ``iis``: the IIS panel on a scan (the bundled model of the scan's modality preselected): Run then Cancel (the scene
  as before), Step a few passes then Cancel (the scene as before), Step then "Run to end" (a result), Run (a result).
* ``classical``: the classical panel on the bundled sample: Apply then Cancel (the scene as before), Apply (a result).

Every step is recorded in a JSON report (``DRIVE-REPORT {...}`` as the last line); an error dialog the panel shows is
recorded too. Runs in its own process (the harness replaces ``slicer``, ``qt`` and ``ctk`` in ``sys.modules``).

Console use::

    python Testing/slicer_drive.py iis --volume ../shared/data/mr/vertebral-bodies-myosegmentum/44_img.nii.gz
    python Testing/slicer_drive.py classical
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("panel", choices=("iis", "classical"))
    parser.add_argument("--volume", help="the scan the IIS panel segments")
    parser.add_argument("--threads", type=int, default=2, help="the IIS panel's CPU threads (default 2)")
    parser.add_argument("--passes", type=int, default=3, help="network passes stepped before Cancel (default 3)")
    args = parser.parse_args(argv)
    try:
        report = drive_iis(args.volume, args.threads, args.passes) if args.panel == "iis" else drive_classical()
    except BaseException as exc:  # a report, whatever failed (the test asserts on it)
        report = dict(panel=args.panel, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    print("DRIVE-REPORT " + json.dumps(report, default=str))
    return 0 if not report.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
