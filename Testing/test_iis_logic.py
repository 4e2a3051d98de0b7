"""The SpineSegIIS module's logic under slicer-core on a real lumbar MR (MyoSegmenTUM case 44, held out from the
small model's training): the background runner really runs ``spineseg iis`` in a child process, its result lands
in the scene as named, coloured, coded segments and a per-vertebra table equal to the backend's records; a run
can be cancelled mid-way (the child is killed, nothing is added); stepping shows exactly the backend's patches.

The model is the smallest bundled MR model when one is in SpineSegLib/resources/models, else the small trained
model at /tmp/iis_small_mr.pt when present, else a tiny randomly initialised one whose output layers are set so
that it "sees" vertebrae everywhere (then only structure is checked, not accuracy). Runs through a network are in
the slow tier; the fast tier checks each piece without one (import of a result, evaluation, the patch display, the
child-process runner with a plain Python child).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import data_path

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images
from SpineSegLib.evaluation.measurements import measure_vertebrae
from SpineSegLib.iis.infer.preprocess import to_model_grid
from SpineSegLib.iis.infer.run import segment_vertebrae
from SpineSegLib.iis.model.catalog import list_models
from SpineSegLib.iis.model.checkpoint import save_checkpoint
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.model.network import IISNet
from SpineSegLib.slicer import iis_logic, iis_results, vertebra_evaluation
from SpineSegLib.slicer import process as background
from SpineSegLib.slicer.common import export_labelmap, export_node
from SpineSegLib.slicer.iis_display import PatchDisplay
from SpineSegLib.slicer.iis_logic import IISLogic
from SpineSegLib.slicer.markups import box_lps
from SpineSegLib.slicer.scene import new_scene
from SpineSegLib.slicer.segmentations import (INCOMPLETE_OPACITY, STATUS_TAG, TAG_COMPLETENESS,
                                              labelmap_to_segmentation, segment_labels, segment_tag,
                                              segmentation_to_image)
from SpineSegLib.slicer.storage import load_segmentation
from SpineSegLib.slicer.tables import table_rows
from SpineSegLib.slicer.volumes import image_to_volume, volume_to_image

torch.set_num_threads(2)
THREADS = 2
CASE = "44"


def tiny_net(modality="mr", seg_bias=8.0, voxel_mm=4.0, seed=0) -> IISNet:
    kw = dict(width=4, levels=2, head_width=4, patch_size=(16, 16, 16), voxel_size_mm=(voxel_mm,) * 3)
    config = IISConfig(**kw) if modality == "ct" else IISConfig.default_mr(**kw)
    torch.manual_seed(seed)
    net = IISNet(config)
    with torch.no_grad():
        net.segmentation_head.weight.zero_()
        net.segmentation_head.bias.fill_(seg_bias)
        net.label_head.dense.weight.zero_()
        net.label_head.dense.bias.fill_(20.0)           # "L1"
        net.completeness_head.dense.weight.zero_()
        net.completeness_head.dense.bias.fill_(8.0)     # complete
    return net.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    bundled = sorted((m for m in list_models() if m.modality == "mr"), key=lambda m: m.size_mb)
    if bundled:
        main, trained = str(bundled[0].path), True
    elif Path("/tmp/iis_small_mr.pt").is_file():
        main, trained = "/tmp/iis_small_mr.pt", True
    else:
        main, trained = str(save_checkpoint(folder / "tiny-mr.pt", tiny_net())), False
    return {
        "main": main, "trained": trained,
        "ct": str(save_checkpoint(folder / "tiny-ct.pt", tiny_net("ct"))),
        # sees nothing, with small patches at 2 mm: a long search of the whole volume
        "blind": str(save_checkpoint(folder / "blind-mr.pt", tiny_net(seg_bias=-8.0, voxel_mm=2.0))),
        "blind_fast": str(save_checkpoint(folder / "blind-fast.pt", tiny_net(seg_bias=-8.0))),
    }


@pytest.fixture(scope="module")
def case():
    folder = data_path("mr", "vertebral-bodies-myosegmentum")
    image = read_image(folder / f"{CASE}_img.nii.gz")
    labels = read_image(folder / f"{CASE}_vb.nii.gz")                  # 1-5 = L1-L5
    reference = labels.with_array(np.where(labels.array > 0, labels.array + 19, 0).astype(np.uint8))
    return image, reference


@pytest.fixture(scope="module")
def run(models, case):
    """The logic's background run on a volume node, and the backend run directly on the same voxels."""
    image, reference = case
    scene = new_scene()
    volume = image_to_volume(scene, image, f"MR {CASE}")
    logic = IISLogic(scene)
    before = scene.GetNumberOfNodes()
    lines = []
    started = time.monotonic()
    out = logic.segment(volume, models["main"], device="cpu", threads=THREADS,
                        on_progress=lambda fraction, phase: lines.append((fraction, phase)))
    elapsed = time.monotonic() - started
    direct = segment_vertebrae(image, models["main"], device="cpu", keep_incomplete=True, threads=THREADS)
    return dict(scene=scene, volume=volume, logic=logic, out=out, direct=direct, before=before, lines=lines,
                elapsed=elapsed)


@pytest.mark.slow
def test_background_run_gives_named_coloured_coded_segments(run, models):
    out, direct, volume = run["out"], run["direct"], run["volume"]
    assert any(phase == "traversal" and 0 < fraction < 1 for fraction, phase in run["lines"]), "progress events"
    labels = segment_labels(out.segmentation)
    expected = {r.id: r for r in direct.instances if r.in_output}
    assert sorted(labels.values()) == sorted(expected)
    segmentation = out.segmentation.GetSegmentation()
    display = out.segmentation.GetDisplayNode()
    for sid, label in labels.items():
        segment = segmentation.GetSegment(sid)
        v = VERTEBRAE[label]
        assert segment.GetName() == v.name
        assert np.allclose(segment.GetColor(), v.color, atol=1e-6)
        assert f"SCT^{v.snomed_code}^" in segment.GetTerminology()
        record = expected[label]
        assert segment_tag(segment, TAG_COMPLETENESS) == ("complete" if record.complete else "incomplete")
        if not record.complete:
            assert segment_tag(segment, STATUS_TAG) == "flagged"
            assert display.GetSegmentOpacity3D(sid) == pytest.approx(INCOMPLETE_OPACITY)
            assert display.GetSegmentOpacity2DFill(sid) == pytest.approx(INCOMPLETE_OPACITY)
    ids = segmentation_to_image(out.segmentation, volume)
    assert np.array_equal(ids.array, direct.labels.array), "the child's label map is what segment_vertebrae gives"


@pytest.mark.slow
def test_table_holds_the_backends_records_and_body_heights(run, case):
    out, direct = run["out"], run["direct"]
    rows = table_rows(out.table)
    assert rows and [r["label"] for r in rows] == [r["label"] for r in out.rows]
    records = {r.id: r for r in direct.instances if r.in_output}
    heights = {m.label: m for m in measure_vertebrae(direct.labels, case[0])}
    for row in rows:
        record = records[row["label"]]
        assert row["name"] == record.name
        assert row["volume_ml"] == pytest.approx(record.volume_ml, abs=1e-3)
        assert row["completeness"] == pytest.approx(record.completeness, abs=1e-3)
        assert row["complete"] == record.complete
        assert row["regressed_label"] == pytest.approx(record.regressed_label, abs=0.01)
        assert row["traversal_index"] == record.traversal_index
        m = heights[row["label"]]
        for key in ("anterior_height_mm", "middle_height_mm", "posterior_height_mm"):
            assert row[key] == pytest.approx(getattr(m, key), abs=0.01), key
        assert row["mean_intensity"] == pytest.approx(m.mean_intensity, abs=0.05)
    assert "mean_hu" not in rows[0]                      # an MR: intensities are not Hounsfield units
    assert out.table.GetColumnUnitLabel("anterior_height_mm") == "mm"
    assert "local axis" in out.table.GetColumnDescription("middle_height_mm")


@pytest.mark.slow
def test_evaluation_table_is_instance_metrics(run, case, models):
    scene, logic, out, volume = run["scene"], run["logic"], run["out"], run["volume"]
    reference = image_to_volume(scene, case[1], "reference", labelmap=True)
    before = scene.GetNumberOfNodes()
    table, result = logic.evaluate(out.segmentation, reference, volume)
    completeness = {r.id: r.complete for r in run["direct"].instances if r.in_output}
    expected = evaluate_instance_images(run["direct"].labels, case[1], pred_completeness=completeness)
    rows = table_rows(table)
    assert len(rows) == len(expected.to_rows())
    for row, want in zip(rows, expected.to_rows()):
        for key in ("ref_id", "pred_id", "status", "dice", "assd_mm", "hd95_mm", "pred_complete"):
            value = want[key]
            if isinstance(value, float) and np.isnan(value):
                assert np.isnan(row[key])
            elif value is None:
                assert row[key] in ("", None) or (isinstance(row[key], float) and np.isnan(row[key]))
            elif isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-9), key
            elif isinstance(value, bool) and isinstance(row[key], str):   # a flag column with gaps: text
                assert row[key] == str(value), key
            else:
                assert row[key] == value, key
    assert table.GetAttribute("SpineSeg.reference_vertebrae") == str(expected.n_ref) == "5"
    if models["trained"]:      # a trained model finds most lumbar bodies of this held-out case
        assert expected.n_detected >= 4, expected.summary()
    # the same reference given as a segmentation gives the same numbers
    seg_reference = labelmap_to_segmentation(scene, case[1], reference_volume=volume, name="reference seg")
    table2, result2 = logic.evaluate(out.segmentation, seg_reference, volume)
    assert [v.dice for v in result2.vertebrae] == pytest.approx([v.dice for v in result.vertebrae])
    assert scene.GetNumberOfNodes() > before


@pytest.mark.slow
def test_exports(run, tmp_path):
    out, direct, volume = run["out"], run["direct"], run["volume"]
    path = export_labelmap(out.segmentation, tmp_path / "vertebrae.nii.gz", volume)
    written = read_image(path)
    assert written.same_grid(direct.labels) and np.array_equal(written.array, direct.labels.array)
    seg_path = export_node(out.segmentation, tmp_path / "vertebrae.seg.nrrd")
    reloaded = load_segmentation(new_scene(), seg_path)
    assert sorted(segment_labels(reloaded).values()) == sorted(segment_labels(out.segmentation).values())
    table_path = export_node(out.table, tmp_path / "vertebrae.tsv")
    header = table_path.read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert {"label", "name", "volume_ml", "completeness", "anterior_height_mm"} <= set(header)


# -- the background runner --------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_cancel_kills_the_child_mid_run_and_adds_nothing(models, case):
    scene = new_scene()
    volume = image_to_volume(scene, case[0], "MR")
    logic = IISLogic(scene)
    before = scene.GetNumberOfNodes()
    states = []
    task = logic.start(volume, models["blind"], device="cpu", threads=1, on_state=states.append)
    work = task.work_dir
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:     # until the traversal runs and the patch is shown
        task.poll()
        boxes = scene.GetNodesByClass("vtkMRMLMarkupsROINode").GetNumberOfItems()
        if task.state != background.RUNNING or (boxes and "traversal" in task.message):
            break
        time.sleep(0.05)
    assert task.state == background.RUNNING, f"the child ended before it could be cancelled: {task.message}"
    assert scene.GetNodesByClass("vtkMRMLMarkupsROINode").GetNumberOfItems() == 1
    pid = task.pid
    assert _alive(pid)
    assert task.cancel()
    assert task.state == background.CANCELLED and states[-1] == background.CANCELLED
    assert not _alive(pid), "the child process must be gone"
    assert scene.GetNumberOfNodes() == before, "no half-made nodes (the patch box is removed too)"
    assert not work.exists(), "the temporary files are removed"
    with pytest.raises(SpineSegError, match="cancelled"):
        task.raise_for_state()
    assert task.poll() == background.CANCELLED and not task.cancel()


@pytest.mark.slow
def test_child_failure_is_one_clear_message_and_adds_nothing(models):
    image = read_image(data_path("mr", "tptbox-c6", "image.nii.gz"))
    scene = new_scene()
    volume = image_to_volume(scene, image, "C-spine crop")
    logic = IISLogic(scene)
    before = scene.GetNumberOfNodes()
    task = logic.start(volume, models["blind_fast"], device="cpu", threads=THREADS)
    assert task.wait(300) == background.FAILED
    assert task.message.startswith("no vertebra found") and "\n" not in task.message
    assert task.returncode == 2
    assert scene.GetNumberOfNodes() == before
    with pytest.raises(background.BackgroundError, match="no vertebra found"):
        task.raise_for_state()


def test_child_environment_and_command():
    env = background.child_environment(threads=3)
    assert env["PYTHONUTF8"] == "1" and env["NO_COLOR"] == "1" and env["OMP_NUM_THREADS"] == "3"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == background.LIB_PARENT
    assert background.spineseg_command("iis", "--help", python="py") == ["py", "-m", "SpineSegLib", "iis", "--help"]


CHILD = """
import sys, time
from SpineSegLib.core.events import ErrorEvent, NoteEvent, ProgressEvent, ReportEvent
def say(event):
    sys.stdout.write(event.to_line()); sys.stdout.flush()
say(ProgressEvent(0.1, "reading"))
say(ProgressEvent(0.5, "half way"))
say(NoteEvent("a note"))
print("a log line", file=sys.stderr, flush=True)
if sys.argv[1] == "fail":
    say(ErrorEvent("the image is 2-D"))
    sys.exit(2)
if sys.argv[1] == "bad":
    print("[ 60%] not an event", flush=True)
    time.sleep(60)
if sys.argv[1] == "hang":
    import subprocess
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(f"grandchild {grandchild.pid}", file=sys.stderr, flush=True)
    time.sleep(60)
say(ReportEvent("test", {"answer": 42}))
say(ProgressEvent(1.0, "done"))
"""


def child_task(mode: str, **kwargs) -> background.BackgroundProcess:
    return background.BackgroundProcess([sys.executable, "-c", CHILD, mode], name="test child",
                                        env=background.child_environment(), **kwargs)


def test_background_process_reports_progress_result_failure_and_cancel():
    """The child-process runner with a plain Python child (no torch) writing events: progress, a note, the report
    ``finish`` reads, the child's one-line error event, a line that is no event, and a cancel that ends the child
    and what it started."""
    progress, states = [], []
    task = child_task("ok", finish=lambda t: t.report.data["answer"], on_progress=lambda f, m: progress.append((f, m)),
                      on_state=states.append).start()
    assert task.wait(60) == background.DONE and task.result == 42
    assert progress == [(0.1, "reading"), (0.5, "half way"), (1.0, "done")] and task.notes == ["a note"]
    assert states == [background.RUNNING, background.IMPORTING, background.DONE] and task.output == ["a log line"]

    bad = child_task("bad").start()
    assert bad.wait(60) == background.FAILED
    assert bad.message.startswith("test child: the child process sent a malformed event line")
    assert bad.message.endswith("'[ 60%] not an event'") and "\n" not in bad.message
    assert bad.returncode is not None and bad.returncode != 0         # killed at once, not left running

    failed = child_task("fail").start()
    assert failed.wait(60) == background.FAILED and failed.returncode == 2
    assert failed.message == "the image is 2-D"
    with pytest.raises(background.BackgroundError, match="the image is 2-D"):
        failed.raise_for_state()

    hanging = child_task("hang", cleanup=[Path(__import__("tempfile").mkdtemp())]).start()
    deadline = time.monotonic() + 60
    while not any(line.startswith("grandchild") for line in hanging.output) and time.monotonic() < deadline:
        hanging.poll()
        time.sleep(0.02)
    grandchild = int(next(line for line in hanging.output if line.startswith("grandchild")).split()[1])
    pid = hanging.pid
    assert hanging.cancel() and hanging.state == background.CANCELLED
    assert not _alive(pid) and not _alive_soon(grandchild), "cancel ends the whole process tree"
    assert not hanging.cleanup_paths[0].exists()
    with pytest.raises(SpineSegError, match="cancelled"):
        hanging.raise_for_state()


def _alive_soon(pid: int, wait_s: float = 5.0) -> bool:
    deadline = time.monotonic() + wait_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pid)


@pytest.mark.slow
def test_device_probe_times_passes_in_a_child_and_feeds_the_estimate(models, case, tmp_path):
    scene = new_scene()
    volume = image_to_volume(scene, case[0], "MR")
    logic = IISLogic(scene, cache_path=tmp_path / "times.json")
    model = models["main"]
    if not Path(model).with_suffix(".json").exists():
        with pytest.raises(InputError, match="does not give its configuration"):
            logic.estimate(volume, model)             # no card, no probe: torch is not loaded to read the weights
    task = logic.start_probe(model, devices=("cpu",))
    assert task.wait(300) == background.DONE, task.message
    info = task.result
    assert info["torch"] == torch.__version__ and info["cpu_cores"] >= 1
    assert info["per_pass_seconds"]["cpu"] > 0 and info["config"]["modality"] == "mr"
    estimate = logic.estimate(volume, model, probe=info)
    assert estimate.sources["cpu"] == "measured"
    assert estimate.per_pass_s["cpu"] == pytest.approx(info["per_pass_seconds"]["cpu"])
    assert estimate.passes[0] < estimate.passes[1] < estimate.passes[2]


# -- stepping -------------------------------------------------------------------------------------------------------
def _temporary(scene) -> list:
    out = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetAttribute("SpineSeg.Temporary"):
            out.append(node.GetName())
    return out


@pytest.mark.slow
def test_stepping_shows_the_backends_patches_and_ends_like_a_run(run, models, case):
    scene, logic, volume, direct = run["scene"], run["logic"], run["volume"], run["direct"]
    before = scene.GetNumberOfNodes()
    stepper = logic.stepper(volume, models["main"], device="cpu", threads=THREADS)
    grid = to_model_grid(case[0], direct.config).image
    fragments = 0
    for n in range(8):
        step = stepper.step(timeout=300)
        assert step is not None and step.index == n + 1 and stepper.state == "waiting"
        centre, size, axes = box_lps(stepper.display.box)
        assert np.allclose(centre, step.box.centre_lps, atol=1e-4)
        assert np.allclose(size, step.box.size_mm, atol=1e-4)
        assert np.allclose(axes, np.asarray(step.box.axes_lps).T, atol=1e-6)
        logged = direct.steps[n]["box"]           # the same pass of the backend's own run
        assert np.allclose(centre, logged["centre_lps"], atol=2e-3) and np.allclose(size, logged["size_mm"])
        memory = volume_to_image(stepper.display.memory)
        assert memory.same_grid(grid) and int(memory.array.sum()) == int(np.load(step.memory_path).sum())
        if step.fragment_path:        # the child's arrays exist while it waits for the next command
            shown = segmentation_to_image(stepper.display.fragment)
            assert int((shown.array > 0).sum()) == int((read_image(step.fragment_path).array > 0).sum())
            fragments += 1
    assert fragments >= 1
    assert len(stepper.found) == sum(1 for s in stepper.steps if s.accepted is not None)
    assert set(_temporary(scene)) >= {"IIS patch", "IIS memory"}
    out = stepper.run_to_end(timeout=600)
    assert stepper.state == "done" and _temporary(scene) == []
    assert np.array_equal(segmentation_to_image(out.segmentation, volume).array, direct.labels.array)
    assert [r["label"] for r in out.rows] == [r["label"] for r in run["out"].rows]
    assert len(stepper.steps) == len(direct.steps)
    assert scene.GetNumberOfNodes() > before


@pytest.mark.slow
def test_cancelled_stepping_leaves_the_scene_as_it_was(models, case):
    scene = new_scene()
    volume = image_to_volume(scene, case[0], "MR")
    logic = IISLogic(scene)
    before = scene.GetNumberOfNodes()
    stepper = logic.stepper(volume, models["main"], device="cpu", threads=THREADS)
    assert stepper.step(timeout=300) is not None
    assert stepper.step(timeout=300) is not None
    assert _temporary(scene)
    stepper.cancel()
    assert stepper.state == "cancelled" and stepper.outputs is None
    assert _temporary(scene) == [] and scene.GetNumberOfNodes() == before
    assert stepper.step() is None


# -- bad input ----------------------------------------------------------------------------------------------------
def _refused(scene, call, match):
    before = scene.GetNumberOfNodes()
    with pytest.raises(SpineSegError, match=match) as info:
        call()
    assert scene.GetNumberOfNodes() == before
    return info.value


def test_bad_input_is_refused_with_a_clear_message(models, case, tmp_path):
    image, reference = case
    scene = new_scene()
    logic = IISLogic(scene)
    volume = image_to_volume(scene, image, "MR")
    labels = image_to_volume(scene, reference, "vertebrae", labelmap=True)
    flat = image_to_volume(scene, Image(image.array[100:101].copy(), image.spacing, image.origin, image.direction),
                           "one slice")
    for call in (logic.start, logic.stepper):
        assert isinstance(_refused(scene, lambda: call(None, models["main"]), "no input volume selected"), InputError)
        _refused(scene, lambda: call(labels, models["main"]), "'vertebrae' is a label map")
        _refused(scene, lambda: call(flat, models["main"]), r"'one slice' is a 2-D image \(77 x 224 x 1 voxels\)")
        # the modality is checked once, in the child (test_engine_contract: its error event is the message)
        _refused(scene, lambda: call(volume, ""), "no model selected")
        _refused(scene, lambda: call(volume, tmp_path / "missing.pt"), "model weights not found")
    with pytest.raises(InputError, match="unknown device"):
        logic.start(volume, models["main"], device="tpu")
    # a result that does not lie on the input's grid is refused before any node is made
    shifted = Image(np.zeros((10, 10, 10), np.uint8), (1.0, 1.0, 1.0))
    _refused(scene, lambda: logic.import_result(volume, image, shifted, [], "mr"), "does not lie on the input's grid")


# -- the pieces, without a child process or a network (fast) ---------------------------------------------------
@pytest.fixture(scope="module")
def lumbar(case):
    """The MR case cropped to its five vertebral bodies and a margin (a tenth of the voxels)."""
    image, reference = case
    nonzero = np.nonzero(reference.array)
    lo = [max(int(a.min()) - 6, 0) for a in nonzero]
    hi = [int(a.max()) + 7 for a in nonzero]
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    origin = tuple(image.index_to_lps(lo[::-1]))
    return tuple(Image(x.array[window].copy(), x.spacing, origin, x.direction) for x in (image, reference))


def fake_records(reference: Image, incomplete=(24,)) -> list[dict]:
    """IIS table rows for the vertebrae of ``reference`` as ``spineseg iis --table`` writes them (text)."""
    ids = sorted(int(v) for v in np.unique(reference.array) if v)
    return [{"id": str(v), "complete": str(v not in incomplete), "completeness": "0.2" if v in incomplete else "0.97",
             "regressed_label": f"{v - 19 + 0.1:.2f}", "traversal_index": str(i)} for i, v in enumerate(ids)]


def test_import_result_gives_coded_segments_and_the_vertebra_table(lumbar):
    image, reference = lumbar
    scene = new_scene()
    volume = image_to_volume(scene, image, "MR")
    records = fake_records(reference)
    out = iis_results.import_result(scene, volume, image, reference, records, "mr")
    assert sorted(segment_labels(out.segmentation).values()) == [20, 21, 22, 23, 24]
    segmentation = out.segmentation.GetSegmentation()
    l5 = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("L5"))
    assert segment_tag(l5, TAG_COMPLETENESS) == "incomplete" and segment_tag(l5, STATUS_TAG) == "flagged"
    assert float(segment_tag(l5, "SpineSeg.RegressedLabel")) == pytest.approx(5.1)
    rows = table_rows(out.table)
    assert [r["label"] for r in rows] == [r["label"] for r in out.rows] == [20, 21, 22, 23, 24]
    assert out.rows == iis_results.vertebra_rows(reference, image, records, "mr")
    by_label = {r["label"]: r for r in out.rows}
    assert by_label[24]["complete"] is False and by_label[20]["complete"] is True
    assert by_label[22]["traversal_index"] == 2 and by_label[21]["regressed_label"] == pytest.approx(2.1)
    heights = {m.label: m for m in measure_vertebrae(reference, image)}
    assert by_label[22]["middle_height_mm"] == pytest.approx(heights[22].middle_height_mm, abs=0.01)
    assert "mean_intensity" in rows[0] and "mean_hu" not in rows[0]
    # a record the label map does not hold is left out; a broken one adds nothing to the scene
    before = scene.GetNumberOfNodes()
    with pytest.raises(KeyError):
        iis_results.import_result(scene, volume, image, reference, [{"id": "20"}], "mr")
    assert scene.GetNumberOfNodes() == before


def test_evaluate_is_instance_metrics_of_the_segmentation(lumbar):
    image, reference = lumbar
    scene = new_scene()
    volume = image_to_volume(scene, image, "MR")
    predicted = reference.with_array(np.where(reference.array == 24, 0, reference.array))     # L5 missed
    out = iis_results.import_result(scene, volume, image, predicted, fake_records(predicted, incomplete=(23,)), "mr")
    reference_node = image_to_volume(scene, reference, "reference", labelmap=True)
    table, result = vertebra_evaluation.evaluate(scene, out.segmentation, reference_node, volume)
    expected = evaluate_instance_images(predicted, reference, pred_completeness={20: True, 21: True, 22: True,
                                                                                 23: False})
    assert result.summary() == pytest.approx(expected.summary(), nan_ok=True)
    assert result.summary()["missed"] == 1 and result.summary()["detected"] == 4
    assert [r["ref_id"] for r in table_rows(table)] == [r["ref_id"] for r in expected.to_rows()]
    assert table.GetAttribute("SpineSeg.missed") == "1"
    with pytest.raises(InputError, match="no segmentation to evaluate"):
        vertebra_evaluation.evaluate(scene, None, reference_node, volume)


def test_evaluate_checks_that_reference_and_prediction_share_a_grid(lumbar):
    from SpineSegLib.core.resample import resample_to_spacing

    image, reference = lumbar
    scene = new_scene()
    volume = image_to_volume(scene, image, "MR")
    out = iis_results.import_result(scene, volume, image, reference, fake_records(reference), "mr")
    # a reference label map on a coarser grid of the same scan: evaluated there, and the table says so
    coarse = resample_to_spacing(reference, (1.5, 1.5, 1.5), label=True)
    table, result = vertebra_evaluation.evaluate(scene, out.segmentation,
                                         image_to_volume(scene, coarse, "coarse", labelmap=True), volume)
    assert result.n_detected == 5 and result.summary()["dice_mean"] > 0.9
    assert table.GetAttribute("SpineSeg.grid_note").startswith(
        "resampled the prediction onto the reference's grid (nearest neighbour; spacing 1x1x1 -> 1.5x1.5x1.5 mm")
    # a segmentation drawn on the volume: on its grid, no note, the numbers of the label map
    same = labelmap_to_segmentation(scene, reference, reference_volume=volume, name="reference seg")
    table, result = vertebra_evaluation.evaluate(scene, out.segmentation, same, volume)
    assert result.summary()["dice_mean"] == 1.0 and table.GetAttribute("SpineSeg.grid_note") is None
    # a label map or a segmentation elsewhere in space (another scan): refused, nothing added
    away = Image(reference.array, reference.spacing, np.add(reference.origin, 400.0), reference.direction)
    away_labels = image_to_volume(scene, away, "elsewhere", labelmap=True)
    away_segments = labelmap_to_segmentation(scene, away, name="elsewhere seg")
    for node, what in ((away_labels, "the prediction and the reference"),
                       (away_segments, "reference 'elsewhere seg' and the volume")):
        before = scene.GetNumberOfNodes()
        with pytest.raises(InputError, match=f"{what} do not share a grid and do not overlap in space at all"):
            vertebra_evaluation.evaluate(scene, out.segmentation, node, volume)
        assert scene.GetNumberOfNodes() == before


def test_patch_display_shows_the_traversal_and_removes_every_temporary_node(lumbar):
    image, _ = lumbar
    scene = new_scene()
    volume = image_to_volume(scene, image, "MR")
    before = scene.GetNumberOfNodes()
    display = PatchDisplay(scene, volume)
    axes = np.eye(3)[[1, 0, 2]]                       # one axis per row, as PatchBox keeps them
    display.show_record({"box": {"centre_lps": [1.0, 2.0, 3.0], "size_mm": [64.0, 48.0, 32.0], "axes_lps": axes}})
    centre, size, got_axes = box_lps(display.box)
    assert np.allclose(centre, [1, 2, 3]) and np.allclose(size, [64, 48, 32])
    assert np.allclose(np.abs(got_axes), np.abs(axes.T))
    display.show_box([5.0, 2.0, 3.0], [64.0, 48.0, 32.0], axes)      # moved, not added again
    assert np.allclose(box_lps(display.box)[0], [5, 2, 3])
    fragment = image.with_array((image.array > np.percentile(image.array, 99)).astype(np.uint8))
    display.show_fragment(fragment, "fragment (pass 3)")
    shown = segmentation_to_image(display.fragment)
    assert int((shown.array > 0).sum()) == int(fragment.array.sum())
    grid = Image(np.zeros((1, 1, 1), np.uint8), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    memory = np.zeros((8, 9, 10), np.uint8)
    memory[2:4, 3:5, 4:7] = 1
    display.show_memory(memory, grid)
    assert int(volume_to_image(display.memory).array.sum()) == 12
    display.show_found([{"traversal_index": 1, "nearest_name": "L1", "complete": True}])
    assert table_rows(display.found)[0]["nearest_name"] == "L1"
    assert len(display.nodes()) == 5 and all(n.GetAttribute("SpineSeg.Temporary") for n in display.nodes())
    display.remove()
    assert scene.GetNumberOfNodes() == before and display.nodes() == []


def test_the_request_is_the_one_place_that_builds_the_childs_arguments(tmp_path):
    from SpineSegLib.cli import build_parser
    from SpineSegLib.core.events import EngineRequest

    request = EngineRequest("iis", tmp_path / "in.nii", tmp_path, model="m.pt", keep_incomplete=True,
                            start_point_lps=(1, -2.5, 3.25), threads=4, check_modality=False, interactive=True)
    args = request.to_arguments()
    assert args[:5] == ["engine", "iis", str(tmp_path / "in.nii"), "--work", str(tmp_path)]
    assert EngineRequest.from_arguments(build_parser().parse_args(args)) == request
