"""The typed contract between the Slicer logics and the engine child (``spineseg engine``), with a real MRML scene:
Run and Step through the same child process on LIDC-IDRI-0001 (classical) and MyoSegmenTUM 44 (IIS,
``mr-vertebral-bodies``), Cancel during each leaves the scene as it was (node count and IDs), a malformed or truncated
event line fails with a clear message, and the input image is written once."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, data_path

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.events import (EngineRequest, ErrorEvent, EventError, NamedVertebraRecord, NamingSummary,
                                     NoteEvent, PatchBox, ProgressEvent, ReportEvent, ResultEvent, StepEvent, VertebraRecord,
                                     parse_event)
from SpineSegLib.core.image import read_image
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.slicer import engine
from SpineSegLib.slicer.classical_logic import ClassicalLogic
from SpineSegLib.slicer.engine import EngineTask
from SpineSegLib.slicer.iis_logic import IISLogic
from SpineSegLib.slicer.scene import new_scene
from SpineSegLib.slicer.volumes import image_to_volume

SAMPLE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm"
MR_MODEL = "mr-vertebral-bodies"


def node_ids(scene) -> list:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


# -- the contract itself (fast) ---------------------------------------------------------------------------------
def test_request_arguments_round_trip_through_the_childs_parser(tmp_path):
    from SpineSegLib.cli import build_parser

    for request in (EngineRequest("classical", tmp_path / "in.nii", tmp_path, params={"bone_threshold_hu": 180.0}),
                    EngineRequest("classical", "in.nii", "w", vertebrae=True),
                    EngineRequest("classical", "in.nii", "w", vertebrae=True, report=True, show_steps=False),
                    EngineRequest("iis", "in.nii", "w", model="m.pt", device="cpu", keep_incomplete=False,
                                  start_point_lps=(-2.5, 180, -410.125), threads=2, interactive=True,
                                  show_steps=False)):
        assert EngineRequest.from_arguments(build_parser().parse_args(request.to_arguments())) == request
    with pytest.raises(Exception, match="needs a model"):
        EngineRequest("iis", "in.nii", "w")
    assert "--vertebrae" not in EngineRequest("classical", "in.nii", "w").to_arguments()     # off by default
    with pytest.raises(SpineSegError, match="only the classical engine labels vertebrae"):
        EngineRequest("iis", "in.nii", "w", model="m.pt", vertebrae=True)
    with pytest.raises(SpineSegError, match="a report needs the vertebrae"):
        EngineRequest("classical", "in.nii", "w", report=True)


def test_every_event_survives_one_line():
    box = PatchBox([1.0, 2.0, 3.0], [96.0] * 3, np.eye(3).tolist(), [0.0] * 3, [1.0] * 3, [4, 5, 6])
    events = [ProgressEvent(0.25, "traversal"), ProgressEvent(None, "loading"), NoteEvent("resampled", "warning"),
              StepEvent(3, "follow", "moved", 0.4, box, "/w/f.nii", "/w/m.npy", {"label": 20.1}, "hello"),
              StepEvent(9, "done", "stop", 1.0), ErrorEvent("no vertebra found"),
              ResultEvent("iis", "/w/v.nii", [VertebraRecord(20, "L1", 1, 20.1, 0.98, True, True, 41.5)],
                          info={"modality": "mr"}),
              ResultEvent("classical", "/w/spine.nii", [NamedVertebraRecord(8, "T1", False, ["rib on both sides"], 5120,
                                                                            [1.5, -180.25, -60.0])],
                          geometry={"contrast": True}, info={"timings": {"total": 3.2}},
                          warnings=["the vertebra names are uncertain: no rib in view"],
                          vertebrae_path="/w/vertebrae.nii", naming=NamingSummary(False, "no rib in view"),
                          report_rows=[{"Vertebra": "T1", "Volume (ml)": 21.5, "Genant grade": None}]),
              ResultEvent("classical", "/w/spine.nii", geometry={"contrast": False}),
              ReportEvent("probe", {"cpu_cores": 2, "per_pass_seconds": {"cpu": 0.5}, "gpus": []}),
              ReportEvent("finetune", {"before": {"dice_mean": None}}, "/w/report.json")]
    for event in events:
        line = event.to_line()
        assert line.endswith("\n") and line.count("\n") == 1
        assert parse_event(line) == event


@pytest.mark.parametrize("line, match", [
    ('{"kind": "progress", "fraction": 0.5, "pha', "ended in the middle of an event line"),
    ('{"kind": "progress", "fraction": 0.5\n', "truncated event line"),
    ("[ 42%] traversal\n", "malformed event line"),
    ('{"kind": "launch"}\n', "no known event"),
    ('{"kind": "step", "index": 1}\n', "incomplete step event"),
    ('{"kind": "result", "task": "iis", "labels_path": "x", "vertebrae": [{"id": 1}]}\n', "incomplete result"),
    ('{"kind": "result", "task": "classical", "labels_path": "x", "vertebrae": [{"label": 8, "name": "T1"}]}\n',
     "incomplete result"),
    ('{"kind": "result", "task": "classical", "labels_path": "x", "naming": {"note": "?"}}\n', "incomplete result"),
    ('{"kind": "result", "task": "dream", "labels_path": "x"}\n', "incomplete result"),
    ('{"kind": "report", "data": {}}\n', "incomplete report event"),
    ('{"kind": "report", "name": "probe", "data": [1, 2]}\n', "incomplete report event"),
])
def test_a_bad_event_line_is_a_clear_error(line, match):
    with pytest.raises(EventError, match=match):
        parse_event(line, complete=line.endswith("\n"))


def fake_child(tmp_path, output: str) -> str:
    """An executable that stands in for the Python interpreter and prints ``output`` on stdout."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\nprintf '%s' '" + output.replace("'", "'\\''") + "'\nsleep 0.2\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for the child")
@pytest.mark.parametrize("output, match", [
    ('{"kind":"progress","fraction":0.1,"phase":"a"}\n{"kind":"progress","fraction":0.5,"pha',
     "ended in the middle of an event line"),
    ('{"kind":"progress","fraction":0.1,"phase":"a"}\nTraceback (most recent call last):\n', "malformed event line"),
    ('{"kind":"progress","fraction":1.0,"phase":"done"}\n', "without a result event"),
])
def test_the_task_fails_clearly_on_a_bad_event_stream_and_adds_nothing(tmp_path, output, match):
    scene = new_scene()
    volume = image_to_volume(scene, read_image(SAMPLE / "image.nii.gz"), "CT")
    before = node_ids(scene)
    logic = ClassicalLogic(scene)
    task = logic.start(volume, python=fake_child(tmp_path, output))
    assert task.wait(30) == "failed"
    assert match in task.message and "\n" not in task.message
    assert node_ids(scene) == before and not task.work_dir.exists()


def test_the_image_is_written_once_and_the_child_leaves_only_its_result(monkeypatch):
    """Classical Run on the bundled 2.5 mm LIDC sample: one write of the input, one result file read back."""
    writes, seen = [], {}
    real = engine.write_image
    monkeypatch.setattr(engine, "write_image", lambda *a, **k: writes.append(a[1]) or real(*a, **k))
    scene = new_scene()
    volume = image_to_volume(scene, read_image(SAMPLE / "image.nii.gz"), "CT")
    logic = ClassicalLogic(scene)
    task = logic.start(volume, on_progress=lambda f, p: seen.setdefault(p, f))

    def finish(task, event, original=task.finish):
        seen["files"] = sorted(p.name for p in task.work_dir.iterdir())
        return original(task, event)

    task.finish = finish
    assert task.wait(120) == "done", task.message
    assert len(writes) == 1 and writes[0].name == "input.nii"
    assert seen["files"] == ["input.nii", "spine.nii"]
    assert "bounding lines" in seen and task.result.segmentation.GetScene() is scene
    assert not task.work_dir.exists()


def test_a_vertebrae_run_sends_typed_records_the_label_map_and_the_report():
    """Classical Run with vertebrae=True on the bundled sample: the child writes the mask and the label map once
    each and sends one NamedVertebraRecord per vertebra, the naming and the report rows."""
    scene = new_scene()
    volume = image_to_volume(scene, read_image(SAMPLE / "image.nii.gz"), "CT")
    task = ClassicalLogic(scene).start(volume, vertebrae=True)
    assert task.request.vertebrae and task.request.report and "--vertebrae" in task.request.to_arguments()
    seen = {}

    def finish(task, event, original=task.finish):
        seen["files"] = sorted(p.name for p in task.work_dir.iterdir())
        seen["labels"] = read_image(event.vertebrae_path)
        return original(task, event)

    task.finish = finish
    assert task.wait(120) == "done", task.message
    event = task.result_event
    assert seen["files"] == ["input.nii", "spine.nii", "vertebrae.nii"]
    assert event.vertebrae and all(isinstance(r, NamedVertebraRecord) and r.evidence for r in event.vertebrae)
    ids = sorted(int(v) for v in np.unique(seen["labels"].array) if v)
    assert ids == sorted(r.label for r in event.vertebrae)
    assert isinstance(event.naming, NamingSummary) and event.naming.note
    assert [row["Vertebra"] for row in event.report_rows] == [r.name for r in event.vertebrae]
    assert set(event.info["report_columns"]) == set(event.report_rows[0])
    assert task.result.vertebrae_segmentation.GetScene() is scene and not task.work_dir.exists()


# -- Run, Step and Cancel on real scans (slow) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def lidc():
    return read_image(data_path("ct", "lidc-idri-0001") / "image.nii.gz")


@pytest.fixture(scope="module")
def myo():
    return read_image(data_path("mr", "vertebral-bodies-myosegmentum") / "44_img.nii.gz")


@pytest.mark.slow
def test_classical_run_and_cancel_on_lidc(lidc):
    scene = new_scene()
    volume = image_to_volume(scene, lidc, "LIDC-IDRI-0001")
    logic = ClassicalLogic(scene)
    before = node_ids(scene)
    progress = Progress()
    phases = []
    progress.callback = lambda name, fraction: phases.append(name) or (name == "bounding lines" and progress.cancel())
    with pytest.raises(Cancelled):
        logic.run(volume, progress=progress)
    assert node_ids(scene) == before and "parabola fit" not in phases
    out = logic.run(volume)
    assert out.segmentation.GetScene() is scene and out.result.mask.same_grid(lidc)
    assert int(out.result.mask.array.sum()) > 10000 and len(out.result.slices) > 100


@pytest.mark.slow
def test_iis_run_step_and_cancel_through_one_child_on_mr(myo):
    scene = new_scene()
    volume = image_to_volume(scene, myo, "MyoSegmenTUM 44")
    logic = IISLogic(scene)
    before = node_ids(scene)
    # Cancel during a Run: killed at once, nothing left
    task = logic.start(volume, MR_MODEL, device="cpu", threads=2)
    while task.poll() == "running" and "traversal" not in task.message:
        time.sleep(0.05)
    assert task.state == "running"
    started = time.monotonic()
    assert task.cancel() and time.monotonic() - started < 2.0
    assert node_ids(scene) == before
    # Step 5 passes, Cancel: the temporary nodes go, the scene is as it was
    stepper = logic.stepper(volume, MR_MODEL, device="cpu", threads=2)
    steps = [stepper.step(timeout=300) for _ in range(5)]
    assert [s.index for s in steps] == [1, 2, 3, 4, 5] and stepper.state == "waiting"
    assert stepper.display.box is not None and steps[-1].memory_path
    assert "--interactive" in stepper.task.request.to_arguments()
    stepper.cancel()
    assert stepper.state == "cancelled" and node_ids(scene) == before
    # Step 5 passes, then run to the end in the same child; then a Run gives the same vertebrae
    stepper = logic.stepper(volume, MR_MODEL, device="cpu", threads=2)
    for _ in range(5):
        stepper.step(timeout=300)
    pid = stepper.task.pid
    stepped = stepper.run_to_end(timeout=900)
    assert stepper.task.pid == pid and stepper.state == "done"
    run = logic.segment(volume, MR_MODEL, device="cpu", threads=2, timeout=900)
    assert [r["name"] for r in stepped.rows] == [r["name"] for r in run.rows] and len(run.rows) >= 4
    assert np.array_equal(stepped.labels.array, run.labels.array)
    assert all(isinstance(r["completeness"], float) for r in run.rows)


@pytest.mark.slow
def test_a_modality_mismatch_is_the_childs_one_error(lidc):
    scene = new_scene()
    volume = image_to_volume(scene, lidc, "LIDC-IDRI-0001")
    before = node_ids(scene)
    task = IISLogic(scene).start(volume, MR_MODEL, device="cpu", threads=2)
    assert task.wait(300) == "failed" and task.returncode == 2
    assert "MR model" in task.message or "looks like" in task.message, task.message
    assert node_ids(scene) == before
