"""``spineseg dataset ...`` on real MR cases: init, status, save, relabel, review, split, export, check,
and the one-line errors (exit status 2) that leave the dataset as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, data_path
from SpineSegLib.annotation import open_dataset
from SpineSegLib.cli import main
from SpineSegLib.core.image import read_image, write_image
from SpineSegLib.core.resample import resample_to_spacing

MYO = "mr/vertebral-bodies-myosegmentum"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def ds_dir(tmp_path, capsys):
    folder = data_path(MYO)
    code, out, err = run(capsys, "dataset", "init", tmp_path / "ds", "--images", f"{folder}/1[0-4]_img.nii.gz",
                         "--labels", f"{folder}/1[01]_vb.nii.gz", "--label-convention", "top-down:L1",
                         "--split", "0.6,0.2,0.2", "--seed", "2", "--user", "importer")
    assert code == 0, err
    assert "created" in out and "5 case(s) (mr)" in out and "3 new, 2 corrected" in out
    return tmp_path / "ds"


def test_init_status_save_relabel_review(ds_dir, tmp_path, capsys):
    code, out, _ = run(capsys, "dataset", "status", ds_dir)
    assert code == 0
    lines = out.splitlines()
    assert "new: 3  predicted: 0  corrected: 2  reviewed: 0" in lines[1]
    header = lines[2].split()
    assert header == ["case", "status", "version", "model", "saved", "by", "date", "split"]
    rows = {line.split()[0]: line.split() for line in lines[4:9]}
    assert sorted(rows) == ["10", "11", "12", "13", "14"]
    assert rows["10"][1:4] == ["corrected", "1", "importer"] and rows["12"][1] == "new"

    # an annotator corrects case 12 (here: the reference labels, saved from a file)
    ref = read_image(data_path(MYO, "12_vb.nii.gz"))
    verse = ref.with_array(np.where(ref.array > 0, ref.array + 19, 0).astype(np.uint8))   # 1-5 -> L1-L5
    write_image(verse, tmp_path / "corr12.nii.gz")
    code, out, _ = run(capsys, "dataset", "save", ds_dir, "12", tmp_path / "corr12.nii.gz", "--user", "anna")
    assert code == 0 and "saved version 1 (corrected, by anna)" in out

    # "this is T12": the sequence follows
    code, out, _ = run(capsys, "dataset", "relabel", ds_dir, "12", "--vertebra", "L1", "--as", "T12", "--user", "anna")
    assert code == 0 and "L1 -> T12" in out and "L5 -> L4" in out and "version 2" in out
    ds = open_dataset(ds_dir)
    assert sorted(np.unique(ds.load_case("12").labels.array).tolist()) == [0, 19, 20, 21, 22, 23]
    code, out, _ = run(capsys, "dataset", "relabel", ds_dir, "12", "--vertebra", "T12", "--as", "T12")
    assert code == 0 and "nothing saved" in out

    code, out, _ = run(capsys, "dataset", "review", ds_dir, "12", "10", "--user", "ben")
    assert code == 0 and "case 12: version 2 marked reviewed" in out
    code, out, _ = run(capsys, "dataset", "split", ds_dir, "12", "--to", "validation")
    assert code == 0
    code, out, _ = run(capsys, "dataset", "status", ds_dir, "--status", "reviewed", "--csv", tmp_path / "s.csv")
    rows = [line.split() for line in out.splitlines()[4:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("10", "reviewed", "1"), ("12", "reviewed", "2")]
    assert rows[1][-1] == "validation"
    assert (tmp_path / "s.csv").read_text(encoding="utf-8").splitlines()[0] == "case,status,version,model,saved_by,date,split"


def test_export_and_check(ds_dir, tmp_path, capsys):
    code, out, _ = run(capsys, "dataset", "export", ds_dir, "--format", "nnunet", "-o", tmp_path / "nn")
    assert code == 0 and "exported 2 case(s) as nnunet" in out
    dj = json.loads((tmp_path / "nn" / "dataset.json").read_text(encoding="utf-8"))
    assert dj["labels"]["L5"] == 24 and dj["channel_names"]["0"] == "MR"
    # exporting again into the same folder is refused, and nothing there changes
    before = snapshot(tmp_path / "nn")
    code, out, err = run(capsys, "dataset", "export", ds_dir, "--format", "nnunet", "-o", tmp_path / "nn")
    assert code == 2 and err.count("\n") == 1 and "exists" in err and "--force" in err
    assert snapshot(tmp_path / "nn") == before
    code, out, _ = run(capsys, "dataset", "export", ds_dir, "--format", "verse", "-o", tmp_path / "vs",
                       "--split", "train")
    assert code == 0
    assert list((tmp_path / "vs" / "derivatives").glob("sub-*/sub-*_seg-vert_ctd.json"))

    code, out, _ = run(capsys, "dataset", "check", ds_dir)
    assert code == 0 and "no problems found" in out
    (ds_dir / "cases" / "11.json").write_text("{ broken")
    code, out, _ = run(capsys, "dataset", "status", ds_dir)
    assert code == 0 and "BROKEN" in out and "not valid JSON (line 1, column 3" in out
    code, out, _ = run(capsys, "dataset", "check", ds_dir)
    assert code == 1 and "broken-manifest" not in out and "11.json: case manifest is not valid JSON" in out
    code, out, _ = run(capsys, "dataset", "check", ds_dir, "--repair")
    assert code == 0 and out.startswith("repaired:")
    assert open_dataset(ds_dir).case("11").status == "corrected"


def test_errors_are_one_line_and_change_nothing(ds_dir, tmp_path, capsys):
    before = snapshot(ds_dir)
    coarse = resample_to_spacing(read_image(data_path(MYO, "10_vb.nii.gz")), (2.0, 2.0, 2.0), label=True)
    coarse.origin = tuple(np.add(coarse.origin, 500.0))      # elsewhere in space: refused, not resampled
    write_image(coarse, tmp_path / "coarse.nii.gz")
    cases = [
        (("dataset", "save", ds_dir, "10", tmp_path / "coarse.nii.gz"), "do not share a grid"),
        (("dataset", "save", ds_dir, "99", tmp_path / "coarse.nii.gz"), "no case '99'"),
        (("dataset", "save", ds_dir, "10", tmp_path / "missing.nii.gz"), "no such file"),
        (("dataset", "relabel", ds_dir, "10", "--vertebra", "T3", "--as", "L1"), "has no T3"),
        (("dataset", "relabel", ds_dir, "10", "--vertebra", "L5", "--as", "C2"), "above C1"),
        (("dataset", "relabel", ds_dir, "10", "--vertebra", "L1", "--as", "X9"), "unknown vertebra name"),
        (("dataset", "relabel", ds_dir, "12", "--vertebra", "L1", "--as", "T12"), "no labels to renumber"),
        (("dataset", "review", ds_dir, "12"), "no labels to review"),
        (("dataset", "status", tmp_path), "not an annotation dataset"),
        (("dataset", "init", ds_dir, "--images", data_path(MYO, "01_img.nii.gz")), "not empty"),
        (("dataset", "export", ds_dir, "--format", "verse", "-o", tmp_path / "v", "--status", "reviewed"),
         "nothing to export"),
        (("dataset", "predict", ds_dir, "--model", tmp_path / "none.pt"), "model weights not found"),
        (("dataset", "finetune", ds_dir, "--model", tmp_path / "none.pt", "-o", tmp_path / "n.pt"),
         "model weights not found"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert err.startswith("spineseg: error: ") and err.count("\n") == 1 and message in err, (argv, err)
    assert snapshot(ds_dir) == before


def test_console_script_exit_status(ds_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "SpineSeg")}
    (ds_dir / "cases" / "10.json").write_text('{"format": "spineseg-annotation-case"')
    res = subprocess.run([sys.executable, "-m", "SpineSegLib", "dataset", "save", str(ds_dir), "10",
                          str(data_path(MYO, "10_vb.nii.gz"))], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "10.json: case manifest is not valid JSON" in res.stderr
    assert "Traceback" not in res.stderr


def test_add_cases_later(ds_dir, capsys):
    folder = data_path(MYO)
    code, out, err = run(capsys, "dataset", "add", ds_dir, "--images", f"{folder}/1[56]_img.nii.gz",
                         "--labels", f"{folder}/15_vb.nii.gz", "--label-convention", "top-down:L1")
    assert code == 0, err
    assert out.startswith("added 2 case(s): 15 (") and "16 (" in out
    ds = open_dataset(ds_dir)
    assert ds.case("15").status == "corrected" and ds.case("16").status == "new"
    assert ds.split["15"] in ("train", "validation", "test") and len(ds.split) == 7
    code, out, err = run(capsys, "dataset", "add", ds_dir, "--images", f"{folder}/15_img.nii.gz")
    assert code == 2 and "already has case(s) 15" in err


def test_progress_lines_name_each_step_once(tmp_path, capsys):
    from SpineSegLib.core.progress import console_progress

    folder = data_path(MYO)
    code, out, err = run(capsys, "dataset", "init", tmp_path / "ds", "--images", f"{folder}/1[01]_img.nii.gz",
                         "--modality", "mr")
    assert code == 0 and err.splitlines() == ["[  0%] case 10 (1/2)", "[ 50%] case 11 (2/2)", "[100%] done"]
    # inference reports its traversal step after every network pass: printed once
    progress = console_progress(skip_repeats=True)
    for fraction in (0.1, 0.2, 0.3):
        progress.step("case 10 (1/2): traversal", fraction)
    progress.step("done", 1.0)
    assert capsys.readouterr().err.splitlines() == ["[ 10%] case 10 (1/2): traversal", "[100%] done"]


# -- predict --method classical: model-free vertebrae of CT cases ------------------------------------------------
SAMPLE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm"
SAMPLE_CASE = "LIDC-IDRI-0001-2.5mm"          # the case name of SAMPLE/image.nii.gz (its folder's name)


@pytest.fixture
def ct_ds(tmp_path, capsys):
    """A dataset of one real CT (the bundled 2.5 mm LIDC-IDRI-0001), not yet predicted."""
    code, out, err = run(capsys, "dataset", "init", tmp_path / "ct", "--images", SAMPLE / "image.nii.gz",
                         "--modality", "ct", "--split", "1,0,0")
    assert code == 0 and "1 case(s) (ct)" in out, (out, err)
    return tmp_path / "ct"


def test_predict_classical_records_the_method_and_follows_the_re_prediction_rules(ct_ds, tmp_path, capsys):
    from SpineSegLib.annotation.predict import classical_info
    from SpineSegLib.classical.params import ClassicalParams

    code, out, err = run(capsys, "dataset", "predict", ct_ds, "--method", "classical")
    assert code == 0, err
    assert f"{SAMPLE_CASE}: version 1 (new)" in out and "predicted 1 case(s) with classical" in out
    case = open_dataset(ct_ds).case(SAMPLE_CASE)
    version = case.current_version
    assert case.status == "predicted" and version["model"] == classical_info()
    assert version["model"]["method"] == "classical" and version["model"]["params"] == ClassicalParams().to_dict()
    labels = open_dataset(ct_ds).load_case(SAMPLE_CASE).labels
    ids = sorted(int(v) for v in np.unique(labels.array) if v)
    assert ids == sorted(i["id"] for i in version["instances"]) and len(ids) >= 8
    assert all(i["evidence"] and i["name"] for i in version["instances"])
    assert version["settings"]["method"] == "classical" and "naming_note" in version["settings"]
    # the same method and parameters: nothing to do; other parameters are "another model"; --all repeats
    code, out, _ = run(capsys, "dataset", "predict", ct_ds, "--method", "classical")
    assert code == 0 and "predicted 0 case(s)" in out and "skipped 1" in out
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"bone_threshold_hu": 170.0}))
    code, out, err = run(capsys, "dataset", "predict", ct_ds, "--method", "classical", "--params", params)
    assert code == 0 and "version 2 (predicted by another model (classical" in out, (out, err)
    assert open_dataset(ct_ds).case(SAMPLE_CASE).current_version["model"]["params"]["bone_threshold_hu"] == 170.0
    code, out, _ = run(capsys, "dataset", "predict", ct_ds, "--method", "classical", "--params", params, "--all")
    assert code == 0 and "version 3 (again (--all))" in out
    code, out, _ = run(capsys, "dataset", "status", ct_ds)
    assert f"classical {classical_info({'bone_threshold_hu': 170.0})['sha256'][:8]}" in out


def test_predict_classical_refuses_mr_cases_by_name_and_bad_options(ds_dir, ct_ds, tmp_path, capsys):
    before = snapshot(ds_dir)
    code, out, err = run(capsys, "dataset", "predict", ds_dir, "--method", "classical")
    assert code == 2 and err.count("\n") == 1, err
    assert "cases 12, 13, 14: MR images; the classical method segments CT only" in err    # the 3 new cases, by name
    code, out, err = run(capsys, "dataset", "predict", ds_dir, "--method", "classical", "--cases", "13")
    assert code == 2 and "case 13: MR image;" in err
    assert snapshot(ds_dir) == before
    (tmp_path / "p.json").write_text("{}")
    for argv, message in [
        (("--method", "classical", "--model", tmp_path / "m.pt"), "uses no model"),
        ((), "no model given"),
        (("--model", tmp_path / "m.pt", "--params", tmp_path / "p.json"), "--params sets the classical method"),
        (("--method", "classical", "--params", tmp_path / "missing.json"), "missing.json: not a readable JSON"),
    ]:
        code, out, err = run(capsys, "dataset", "predict", ct_ds, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
