"""The annotation-correction panel's logic (SpineSeg/SpineSegLib/slicer/annotation_*.py) driven end to end under
slicer-core on real MR (MyoSegmenTUM cases 44-48, which the bundled MR model never saw in training): open, next
(the labels as named, coloured, coded segments), an edit through a segment's binary labelmap, save (a new version
on disk), relabel (names change in the scene and on disk), review; in the slow tier the background predictions of
the next cases, a short fine-tuning in the child process with its before/after Dice, and Cancel during
fine-tuning leaving the dataset as it was. The module's own self-test routine runs here too, and the module
folder (file, .ui, icon, CMake) is checked as source.
"""

from __future__ import annotations

import ast
import hashlib
import shutil
import struct
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import REPO, data_path
from SpineSegLib.annotation import create_dataset
from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.image import read_image
from SpineSegLib.core.labels import VERTEBRAE, by_name
from SpineSegLib.core.resources import resource_dir
from SpineSegLib.slicer import process as background
from SpineSegLib.slicer.annotation_finetune import finetune_arguments, start_finetune, undo_unfinished
from SpineSegLib.slicer.annotation_logic import AnnotationLogic, vertebra_names
from SpineSegLib.slicer.annotation_selftest import erase_part, run_self_test
from SpineSegLib.slicer.scene import new_scene

MYO = "mr/vertebral-bodies-myosegmentum"
LABELLED = ("44", "45", "46")           # imported as predictions
UNLABELLED = ("47",)                     # a new case
MODULE = REPO / "SpineSegAnnotate"
MR_MODEL = resource_dir("models") / "mr-vertebral-bodies.pt"


def reference(case: str):
    """MyoSegmenTUM labels 1-5 (L1-L5 from the top) as VerSe ids 20-24."""
    ref = read_image(data_path(MYO, f"{case}_vb.nii.gz"))
    return ref.with_array(np.where(ref.array > 0, ref.array + 19, 0).astype(np.uint8))


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """A dataset of four real MR cases: three with their reference labels imported as predictions, one new."""
    root = tmp_path_factory.mktemp("annotation-panel") / "ds"
    images = [str(data_path(MYO, f"{c}_img.nii.gz")) for c in LABELLED + UNLABELLED]
    labels = [str(data_path(MYO, f"{c}_vb.nii.gz")) for c in LABELLED]
    ds = create_dataset(root, images, labels, label_convention="top-down:L1", label_status="predicted",
                        split="1,0,0", modality="mr")
    ds.set_split("46", "validation")
    return root


@pytest.fixture
def dataset(template, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(template, root, symlinks=True)
    return root


@pytest.fixture
def logic():
    lg = AnnotationLogic(new_scene(), user="anna")
    yield lg
    lg.stop_prefetch()


def segment_names(node):
    seg = node.GetSegmentation()
    return [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]


def tree_digest(root, parts=("dataset.json", "cases", "labels", "images")) -> dict:
    """SHA-256 of every file of the dataset that holds data (the cache and runs are not data)."""
    out = {}
    for part in parts:
        path = root / part
        for p in sorted([path] if path.is_file() else path.rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- fast: no child process, no network ----------------------------------------------------------------------
def test_open_lists_cases_with_status_split_and_version(logic, dataset):
    with pytest.raises(InputError, match="no dataset folder"):
        logic.open("")
    with pytest.raises(InputError, match="not an annotation dataset"):
        logic.open(dataset / "cases")
    logic.open(dataset)
    rows = {r["case"]: r for r in logic.cases()}
    assert list(rows) == ["44", "45", "46", "47"]
    assert [rows[c]["status"] for c in rows] == ["predicted", "predicted", "predicted", "new"]
    assert rows["46"]["split"] == "validation" and rows["44"]["split"] == "train"
    assert rows["44"]["version"] == 1 and rows["47"]["version"] == "" and rows["47"]["versions"] == 0
    assert "3 predicted" in logic.summary() and "1 new" in logic.summary()
    with pytest.raises(InputError, match="no case loaded"):
        logic.save()


def test_next_loads_the_labels_as_named_coloured_coded_segments(logic, dataset):
    scene = logic.scene
    logic.open(dataset)
    nodes_before = scene.GetNumberOfNodes()
    case = logic.next_case()
    assert case.name == "44" and case.based_on == 1 and case.status == "predicted"
    assert case.volume.GetName() == "44" and case.segmentation.GetName() == "44 labels"
    assert segment_names(case.segmentation) == ["L1", "L2", "L3", "L4", "L5"]
    seg = case.segmentation.GetSegmentation()
    for i in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(i)
        assert segment.GetColor() == pytest.approx(VERTEBRAE[by_name(segment.GetName()).label].color)
        assert segment.HasTerminology() and "vertebra" in segment.GetTerminology()
    assert not logic.has_unsaved_edits()
    np.testing.assert_array_equal(logic.edited_labels().array, reference("44").array)
    nodes_with_one_case = scene.GetNumberOfNodes()

    second = logic.next_case()
    assert second.name == "45" and case.volume.GetScene() is None and case.segmentation.GetScene() is None
    assert scene.GetNumberOfNodes() == nodes_with_one_case          # the first case's nodes are gone
    assert nodes_with_one_case > nodes_before
    new = logic.load_case("47")
    assert new.based_on is None and new.status == "new"
    assert new.segmentation.GetSegmentation().GetNumberOfSegments() == 0 and not logic.has_unsaved_edits()


def test_edit_then_save_makes_a_new_version_on_disk(logic, dataset):
    logic.open(dataset)
    case = logic.next_case()
    erased = erase_part(case.segmentation, "L3")
    assert erased > 1000 and logic.has_unsaved_edits()
    with pytest.raises(InputError, match="unsaved edits"):
        logic.next_case()
    version = logic.save(note="L3 trimmed")
    assert version == 2 and not logic.has_unsaved_edits()
    entry = logic.dataset.case("44")
    assert entry.status == "corrected" and entry.current == 2
    v = entry.current_version
    assert v["kind"] == "correction" and v["based_on"] == 1 and v["user"] == "anna" and v["note"] == "L3 trimmed"
    saved = read_image(dataset / v["file"])
    ref = reference("44")
    assert int(np.count_nonzero(saved.array == 22)) == int(np.count_nonzero(ref.array == 22)) - erased
    for vid in (20, 21, 23, 24):
        np.testing.assert_array_equal(saved.array == vid, ref.array == vid)
    assert (dataset / "labels" / "44" / "v001.nii.gz").exists()        # the prediction is kept
    assert logic.next_case().name == "45"                               # saved: Next goes on


def test_relabel_renames_in_the_scene_and_on_disk(logic, dataset):
    logic.open(dataset)
    case = logic.next_case()
    old_node = case.segmentation
    erase_part(case.segmentation, "L5", fraction=0.3)                  # unsaved: saved before renumbering
    version, result = logic.relabel("L1", "T12")
    assert version == 3 and result.mapping == {20: 19, 21: 20, 22: 21, 23: 22, 24: 23}
    assert old_node.GetScene() is None
    assert segment_names(logic.case.segmentation) == ["T12", "L1", "L2", "L3", "L4"]
    assert logic.segment_names() == ["T12", "L1", "L2", "L3", "L4"]
    kinds = [v["kind"] for v in logic.dataset.case("44").versions]
    assert kinds == ["import", "correction", "relabel"]
    on_disk = read_image(dataset / logic.dataset.case("44").current_version["file"])
    assert sorted(int(v) for v in np.unique(on_disk.array) if v) == [19, 20, 21, 22, 23]
    np.testing.assert_array_equal(logic.edited_labels().array, on_disk.array)
    assert logic.case.based_on == 3 and not logic.has_unsaved_edits()
    with pytest.raises(InputError, match="no L5"):
        logic.relabel("L5", "S1")
    assert logic.relabel("T12", "T12")[0] is None                      # nothing changes: nothing saved


def test_review_marks_or_saves_as_reviewed(logic, dataset):
    logic.open(dataset)
    logic.next_case()
    assert logic.review(user="ben") == 1
    entry = logic.dataset.case("44")
    assert entry.status == "reviewed" and entry.current_version["reviewed_by"] == "ben"
    second = logic.next_case(status=("predicted",))
    erase_part(second.segmentation, "L2", fraction=0.2)
    assert logic.review(user="ben") == 2                                # the reviewer's own edit
    assert logic.dataset.case("45").status == "reviewed"
    assert logic.dataset.case("45").current_version["kind"] == "correction"


def test_a_failed_load_leaves_the_scene_as_it_was(logic, dataset, monkeypatch):
    from SpineSegLib.slicer import annotation_logic

    logic.open(dataset)
    shown = logic.next_case()
    node_ids = [logic.scene.GetNthNode(i).GetID() for i in range(logic.scene.GetNumberOfNodes())]

    def broken(*args, **kwargs):
        raise SpineSegError("import failed")

    monkeypatch.setattr(annotation_logic, "labelmap_to_segmentation", broken)
    with pytest.raises(SpineSegError, match="import failed"):
        logic.load_case("45")
    assert [logic.scene.GetNthNode(i).GetID() for i in range(logic.scene.GetNumberOfNodes())] == node_ids
    assert logic.case is shown and shown.volume.GetScene() is logic.scene


def test_prefetch_plans_the_cases_after_the_current_one(dataset):
    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.slicer.annotation_prefetch import PrefetchProcess, plan_cases

    ds = open_dataset(dataset)
    assert plan_cases(ds, 2) == ["44", "45"]
    assert plan_cases(ds, 2, after="45") == ["46", "47"]
    assert plan_cases(ds, 3, after="46") == ["47", "44", "45"]          # wraps round, never the current case
    ds.save_correction("47", reference("44").with_array(np.zeros(reference("44").shape, np.uint8)), user="anna")
    assert plan_cases(ds, 5, after="45") == ["46", "44"]                # corrected cases are not predicted
    assert plan_cases(ds, 5, after="46", inclusive=True) == ["46", "44", "45"]
    from SpineSegLib.core.files import sha256_of
    assert plan_cases(ds, 5, model_sha=sha256_of(MR_MODEL)) == ["44", "45", "46"]   # imported: not this model's
    pf = PrefetchProcess(ds, MR_MODEL, plan_cases(ds, 2, after="45"))
    args = pf.task.command[pf.task.command.index("SpineSegLib") + 1:]
    assert args[:2] == ["dataset", "predict"] and args[args.index("--cases") + 1:][:2] == ["46", "44"]
    assert not pf.pending("46")                                          # not started: nothing pending


def test_the_classical_method_predicts_without_a_model(logic, dataset):
    """The method choice: "classical" predicts the cases ahead with `dataset predict --method classical` (no model,
    no device), recorded under classical_info's identity; back to "model" without a model predicts nothing."""
    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.predict import classical_info
    from SpineSegLib.slicer.annotation_prefetch import PrefetchProcess, plan_cases

    logic.open(dataset)
    assert not logic.predicts() and logic.start_prefetch() is None
    with pytest.raises(InputError, match="unknown prediction method 'network'"):
        logic.set_method("network")
    logic.set_method("classical")
    assert logic.predicts() and logic.method == "classical" and logic.model is None
    ds = open_dataset(dataset)
    sha = classical_info()["sha256"]
    assert plan_cases(ds, 5, model_sha=sha) == ["44", "45", "46", "47"]     # imported labels: not the method's
    pf = PrefetchProcess(ds, None, ["46", "47"], method="classical")
    args = [str(a) for a in pf.task.command[pf.task.command.index("SpineSegLib") + 1:]]
    assert args[:3] == ["dataset", "predict", str(dataset.resolve())]
    assert args[args.index("--method") + 1] == "classical" and "--model" not in args and "--device" not in args
    assert "--events" in args and args[args.index("--cases") + 1:][:2] == ["46", "47"]
    logic.set_model(MR_MODEL)                  # the model stays chosen (fine-tuning), the method decides
    assert logic.method == "classical" and logic.start_prefetch() is not None
    logic.set_method("model")
    assert logic._prefetch is None and logic.predicts()


def test_the_classical_method_refuses_mr_cases_with_the_cli_message(logic, dataset):
    """On an MR dataset the classical method's child refuses the cases with the message `spineseg dataset predict
    --method classical` gives, which the panel shows; the dataset is unchanged."""
    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.predict import predict_dataset

    before = tree_digest(dataset)
    logic.threads = 1
    logic.open(dataset)
    logic.set_method("classical")
    task = logic.start_prefetch(after="45")
    assert task.planned == ["46", "47"]
    assert task.task.wait(120) == background.FAILED, task.task.output[-5:]
    with pytest.raises(InputError) as cli:
        predict_dataset(open_dataset(dataset), method="classical", cases=["46", "47"])
    assert str(cli.value) == ("cases 46, 47: MR images; the classical method segments CT only (predict MR cases "
                              "with an IIS model, --model)")
    assert task.task.message == str(cli.value)
    assert logic.prefetch_state() == f"background prediction failed: {cli.value}"
    assert logic.prefetch_failure() == str(cli.value)              # what the panel shows in its status line
    logic.set_method("model")
    assert logic.prefetch_failure() == ""                          # told until the method changes
    assert not logic.prediction_pending("46") and tree_digest(dataset) == before


@pytest.mark.slow
def test_next_on_a_ct_dataset_loads_the_classical_prediction(logic, tmp_path):
    """A CT dataset of the bundled sample (a new case): with the classical method Next waits for the model-free
    prediction in the child, then shows one named segment per vertebra; the version records the method."""
    from SpineSegLib.annotation.predict import classical_info
    from SpineSegLib.classical import ClassicalParams
    from SpineSegLib.classical.vertebrae import label_vertebrae

    sample = resource_dir("samples") / "LIDC-IDRI-0001-2.5mm" / "image.nii.gz"
    ds = create_dataset(tmp_path / "ct-ds", [str(sample)], split="1,0,0", modality="ct")
    logic.threads = 1
    logic.open(ds.root)
    logic.set_method("classical")
    started = time.monotonic()
    case = logic.next_case(wait=300)
    print(f"\nclassical prediction of the sample from the panel's logic: {time.monotonic() - started:.1f} s")
    assert case.status == "predicted", logic.prefetch_state()
    expected = [v.name for v in label_vertebrae(read_image(sample), ClassicalParams()).vertebrae]
    assert segment_names(case.segmentation) == expected and len(expected) >= 14      # C7-L3
    version = logic.dataset.case(case.name).current_version
    assert version["model"]["method"] == "classical" and version["model"]["sha256"] == classical_info()["sha256"]
    assert not logic.prediction_pending(case.name)


def drive_annotate(root) -> dict:
    """The Annotate panel driven through its buttons under the harness (Testing/slicer_drive.py annotate-classical)."""
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "Testing" / "slicer_drive.py"), "annotate-classical",
                           "--dataset", str(root)], capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DRIVE-REPORT ")]
    assert lines, f"no report (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1].split(" ", 1)[1])
    assert not report.get("error"), report.get("traceback")
    return report


@pytest.mark.slow
def test_the_panel_predicts_with_the_classical_method_or_refuses_mr(dataset, tmp_path):
    """The panel's "Predict with: Classical" under the harness: on a CT dataset of the bundled sample Next waits for
    the child's model-free prediction and shows the named vertebrae; on the MR dataset the child's refusal (the
    command line's message) is in the status line and a dialog, and Next shows the case unpredicted."""
    sample = resource_dir("samples") / "LIDC-IDRI-0001-2.5mm" / "image.nii.gz"
    ct = create_dataset(tmp_path / "ct-ds", [str(sample)], split="1,0,0", modality="ct")
    report = drive_annotate(ct.root)
    opened, method, shown = report["steps"]
    assert "1 new" in opened["status"] and method["method"] == "classical" and "Classical" in method["choice"]
    assert shown["waiting"].startswith("Waiting for the prediction of case LIDC-IDRI-0001-2.5mm"), shown
    assert shown["case_status"] == "predicted" and shown["status"].endswith("predicted, version 1"), shown
    assert shown["segments"][0] in ("C6", "C7", "T1") and len(shown["segments"]) >= 14 and report["errors"] == []

    report = drive_annotate(dataset)                                     # MR: refused by the child
    refusal = ("cases 44, 45: MR images; the classical method segments CT only (predict MR cases with an IIS "
               "model, --model)")
    shown = report["steps"][-1]
    assert report["errors"] == [refusal], report                          # one dialog: the first refusal
    assert shown["case"] == "44" and shown["failure"].startswith("case"), shown
    assert shown["failure"].endswith("the classical method segments CT only (predict MR cases with an IIS model, "
                                     "--model)"), shown                   # the next cases: refused in the same words
    assert shown["status"] == f"Background prediction failed: {shown['failure']}", shown
    assert shown["case_status"] == "predicted" and shown["segments"] == ["L1", "L2", "L3", "L4", "L5"]


def test_finetune_arguments_and_refusals(dataset, tmp_path):
    from SpineSegLib.annotation import open_dataset

    args = [str(a) for a in finetune_arguments(dataset, MR_MODEL, tmp_path / "new.pt", tmp_path / "r.json",
                                               tmp_path / "run", iterations=7, threads=1,
                                               validation_cases=["46"], evaluate=False, user="anna")]
    assert args[:3] == ["dataset", "finetune", str(dataset.resolve())]
    for flag, value in (("--iterations", "7"), ("--json", str(tmp_path / "r.json")), ("--threads", "1"),
                        ("--validation-cases", "46"), ("--user", "anna"), ("--run-dir", str(tmp_path / "run"))):
        assert args[args.index(flag) + 1] == value
    assert "--no-evaluation" in args
    ds = open_dataset(dataset)
    (tmp_path / "exists.pt").write_bytes(b"x")
    with pytest.raises(SpineSegError, match="exists"):
        start_finetune(ds, MR_MODEL, tmp_path / "exists.pt")
    with pytest.raises(InputError, match="not found"):
        start_finetune(ds, tmp_path / "missing.pt", tmp_path / "new.pt")
    with pytest.raises(InputError, match=r"\.pt"):
        start_finetune(ds, MR_MODEL, tmp_path / "new.weights")
    assert not (dataset / "runs").exists()


def test_undo_after_a_killed_child_removes_only_its_own_leftovers(dataset, tmp_path):
    from SpineSegLib.annotation import open_dataset

    ds = open_dataset(dataset)
    before = tree_digest(dataset)
    run_dir = dataset / "runs" / "20260101T000000_new"
    (run_dir / "snapshots").mkdir(parents=True)
    output, older = tmp_path / "new.pt", tmp_path / ".new.pt.older.pt"
    older.write_bytes(b"someone else's")
    output.write_bytes(b"half")
    (tmp_path / ".new.pt.abc123.pt").write_bytes(b"tmp")
    undo_unfinished(ds, output.resolve(), run_dir, {older}, output_existed=False)
    assert not run_dir.exists() and not output.exists() and not (tmp_path / ".new.pt.abc123.pt").exists()
    assert older.exists() and tree_digest(dataset) == before
    output.write_bytes(b"the user's own weights")
    undo_unfinished(ds, output.resolve(), run_dir, set(), output_existed=True)
    assert output.read_bytes() == b"the user's own weights"


def test_module_self_test_routine(tmp_path):
    """What SpineSegAnnotateTest runs in Slicer (fine-tuning left to the slow tier)."""
    lines = []
    out = run_self_test(new_scene(), tmp_path, log=lines.append, finetune_iterations=0)
    assert out["segments"][0] == "C5" and out["segments"][-1] == "L3" and out["erased"] > 0
    assert out["relabelled"][0] == "C4" and out["relabelled"][-1] == "L2" and out["reviewed"] == 3
    assert lines[0].startswith("loaded case lidc")


def test_module_folder():
    """The module file is thin, imports no SpineSegLib at load and builds the Lib's widget; the .ui has every
    widget the widget class uses; the icon is 128 x 128; CMake installs both."""
    source = (MODULE / "SpineSegAnnotate.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 120
    tree = ast.parse(source)
    top = {n.module if isinstance(n, ast.ImportFrom) else a.name for n in tree.body
           if isinstance(n, (ast.Import, ast.ImportFrom)) for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert not any(t.startswith("SpineSegLib") for t in top) and "slicer.i18n" in top
    assert 'self.parent.title = _("SpineSeg Annotate")' in source and '"Segmentation")]' in source
    assert 'dependencies = ["SpineSeg"]' in source and "import SpineSeg\n" not in source
    ui = ET.parse(MODULE / "Resources" / "UI" / "SpineSegAnnotate.ui").getroot()
    widgets = {w.get("name"): w.get("class") for w in ui.iter("widget")}
    assert widgets["SpineSegAnnotate"] == "qMRMLWidget" and widgets["datasetPathLineEdit"] == "ctkPathLineEdit"
    widget_source = (REPO / "SpineSeg" / "SpineSegLib" / "slicer" / "annotation_widget.py").read_text(encoding="utf-8")
    used = set(__import__("re").findall(r"self\.ui\.(\w+)", widget_source))
    used |= set(__import__("re").findall(r'\("(\w+(?:Button))", self\.on', widget_source))
    assert used and used <= set(widgets), sorted(used - set(widgets))
    for name in ("caseTable", "nextButton", "saveButton", "relabelButton", "reviewButton", "finetuneButton",
                 "cancelButton", "progressBar", "statusLabel", "modelComboBox"):
        assert name in widgets
    png = (MODULE / "Resources" / "Icons" / "SpineSegAnnotate.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (128, 128)
    cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "set(MODULE_NAME SpineSegAnnotate)" in cmake and "Resources/UI/${MODULE_NAME}.ui" in cmake
    assert vertebra_names()[:2] == ["C1", "C2"] and vertebra_names()[-1] in ("S1", "sacrum")


# -- slow: the model, the child process -------------------------------------------------------------------------
def correct_with_reference(logic, case: str) -> int:
    """The annotator's work, stood in for by the reference labels: the segments replaced, then Save."""
    from SpineSegLib.slicer.segmentations import labelmap_to_segmentation
    from SpineSegLib.slicer.scene import remove_nodes

    shown = logic.case
    assert shown.name == case
    remove_nodes(shown.segmentation)
    shown.segmentation = labelmap_to_segmentation(logic.scene, reference(case), reference_volume=shown.volume,
                                                  name=f"{case} labels")
    return logic.save()


@pytest.mark.slow
def test_end_to_end_predict_correct_relabel_review_finetune(logic, tmp_path):
    """New cases predicted in the background by the bundled MR model, corrected, relabelled, reviewed; then a
    short fine-tuning in the child process with its before/after Dice."""
    images = [str(data_path(MYO, f"{c}_img.nii.gz")) for c in ("44", "45", "46", "47", "48")]
    ds = create_dataset(tmp_path / "ds", images, split="1,0,0", modality="mr")
    ds.set_split("47", "validation")
    ds.set_split("48", "test")
    logic.threads, logic.device = 1, "cpu"
    logic.open(ds.root)
    logic.set_model(MR_MODEL)
    logic.start_prefetch()
    for case in ("44", "45", "46", "47"):
        shown = logic.next_case(wait=180)
        assert shown.name == case and shown.status == "predicted", (case, shown.status, logic.prefetch_state())
        names = segment_names(shown.segmentation)
        assert len(names) >= 3 and all(n in vertebra_names() for n in names), names
        assert correct_with_reference(logic, case) == 2
    assert logic.relabel("L1", "T12")[0] == 3 and logic.segment_names()[0] == "T12"
    assert logic.relabel("T12", "L1")[0] == 4 and logic.segment_names() == ["L1", "L2", "L3", "L4", "L5"]
    assert logic.review(user="ben") == 4
    counts = logic.counts()
    assert counts["corrected"] == 3 and counts["reviewed"] == 1
    logic.stop_prefetch()

    progress = []
    task = logic.start_finetune(MR_MODEL, tmp_path / "mr-ft.pt", iterations=8, lr=1e-4, device="cpu", threads=1,
                                on_progress=lambda f, m: progress.append((f, m)))
    assert task.wait(900) == background.DONE, task.message
    outcome = task.result
    print(f"\nfine-tuning from the panel (8 iterations, child process, {task.elapsed_s:.0f} s): "
          f"{outcome.describe()}")
    assert outcome.before_dice is not None and outcome.after_dice is not None
    assert 0.5 < outcome.before_dice <= 1.0 and 0.5 < outcome.after_dice <= 1.0
    assert outcome.report["validation_cases"] == [["47", 4]]
    assert [c for c, _ in outcome.report["train_cases"]] == ["44", "45", "46"]
    assert any("fine-tuning: iteration" in m for _, m in progress) and progress[-1][0] == pytest.approx(1.0)
    assert outcome.output.is_file()
    assert logic.dataset.info["models"][-1]["path"] == str(outcome.output)
    from SpineSegLib.iis.model.catalog import describe_model
    assert describe_model(outcome.output).modality == "mr"       # the IIS module's selector takes it


@pytest.mark.slow
def test_cancel_during_finetuning_leaves_the_dataset_unchanged(logic, dataset, tmp_path):
    logic.open(dataset)
    for case in ("44", "45"):
        logic.load_case(case)
        correct_with_reference(logic, case)
    before = tree_digest(dataset)
    task = logic.start_finetune(MR_MODEL, tmp_path / "cancelled.pt", iterations=5000, device="cpu", threads=1,
                                evaluate=False)
    deadline = time.monotonic() + 300
    while task.poll() == background.RUNNING and "fine-tuning: iteration" not in task.message:
        assert time.monotonic() < deadline, task.output[-5:]
        time.sleep(0.1)
    assert task.state == background.RUNNING, task.message
    assert task.run_dir.exists()
    assert task.cancel() and task.state == background.CANCELLED
    assert tree_digest(dataset) == before
    assert not task.run_dir.exists() and not list((dataset / "runs").iterdir())
    assert not (tmp_path / "cancelled.pt").exists() and not list(tmp_path.glob(".cancelled.pt.*"))
    assert "models" not in logic.dataset.info or not logic.dataset.info["models"]
