"""``spineseg evaluate``: modes, tables, files, batches and errors, on real label maps."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, data_path

from SpineSegLib.cli import main
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.resample import resample_to_spacing


@pytest.fixture(scope="module")
def verse004_path():
    return data_path("masks", "verse", "sub-verse004_seg-vert_msk.nii.gz")


@pytest.fixture(scope="module")
def verse004(verse004_path) -> Image:
    return read_image(verse004_path)


@pytest.fixture(scope="module")
def missing_l1(verse004, tmp_path_factory):
    """verse004 with L1 (id 20) deleted, on the reference grid."""
    path = tmp_path_factory.mktemp("pred") / "pred_missing_l1.nii.gz"
    write_image(verse004.with_array(np.where(verse004.array == 20, 0, verse004.array)), path)
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_cli(*args):
    """The real console entry point in a subprocess: exit status, stdout, stderr."""
    proc = subprocess.run([sys.executable, "-m", "SpineSegLib", "evaluate", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_instance_mode_prints_a_table_and_writes_files(tmp_path, capsys):
    folder = data_path("mr", "panoptica-labels")
    pred, ref = folder / "unmatched_instance_pred.nii.gz", folder / "matched_instance_ref.nii.gz"
    out = tmp_path / "out"
    rc = main(["evaluate", str(pred), str(ref), "--labels", "1-99", "--csv", str(out / "v.csv"),
               "--summary-csv", str(out / "s.csv"), "--json", str(out / "r.json")])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.count("wrong id") == 8  # every id shifted by one
    assert "C2       C3" in text and "identification accuracy 0.000 (0/8)" in text
    assert "detected 8/8" in text
    rows = read_csv(out / "v.csv")
    assert [r["ref_name"] for r in rows] == ["C2", "C3", "C4", "C5", "C6", "C7", "T1", "S1"]
    assert all(r["status"] == "wrong id" and float(r["dice"]) > 0.94 for r in rows)
    summary = read_csv(out / "s.csv")
    assert [r["case"] for r in summary] == ["matched_instance_ref", "ALL"]
    assert float(summary[-1]["id_accuracy"]) == 0.0 and summary[-1]["reference_vertebrae"] == "8"
    data = json.loads((out / "r.json").read_text(encoding="utf-8"))
    assert data["mode"] == "instance" and len(data["cases"][0]["vertebrae"]) == 8


def test_auto_mode_is_binary_when_one_map_is_a_mask(verse004, verse004_path, tmp_path, capsys):
    mask = tmp_path / "mask.nii.gz"
    write_image(verse004.with_array((verse004.array > 0).astype(np.uint8)), mask)
    rc = main(["evaluate", str(mask), str(verse004_path), "--json", str(tmp_path / "m.json")])
    text = capsys.readouterr().out
    assert rc == 0 and text.startswith("IoU 1.0000  DSC 1.0000  HD95 0.00 mm")
    m = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert (m["mode"], m["dsc"], m["iou"], m["hd95_mm"]) == ("binary", 1.0, 1.0, 0.0)


@pytest.mark.slow
def test_instance_mode_on_a_mask_matches_one_instance_to_every_vertebra(verse004, verse004_path, tmp_path, capsys):
    # one predicted instance (id 1 = "C1") matched to all nine vertebrae (nine distance maps of the whole
    # spine: a few seconds), a constant prediction, so kappa = 0 (observed = expected disagreement)
    mask = tmp_path / "mask.nii.gz"
    write_image(verse004.with_array((verse004.array > 0).astype(np.uint8)), mask)
    rc = main(["evaluate", str(mask), str(verse004_path), "--mode", "instance"])
    text = capsys.readouterr().out
    matched = [line.split()[1] for line in text.splitlines()[2:11]]
    assert rc == 0 and matched == ["C1"] * 9
    assert "identification accuracy 0.000 (0/9), linear kappa 0.000" in text


def test_flipped_grid_matches_exactly_and_completeness(tmp_path, capsys):
    ref_path = data_path("ct", "totalseg-example-dicom", "vertebrae.nii.gz")
    ref = read_image(ref_path)
    d = ref.direction.copy()
    d[:, 0] *= -1
    flipped = Image(ref.array[:, :, ::-1].copy(), ref.spacing, ref.index_to_lps((ref.size[0] - 1, 0, 0)), d)
    pred_path = write_image(flipped, tmp_path / "flipped.nii.gz")
    assert read_image(pred_path).orientation != ref.orientation
    # both vertebrae are cut by the 20-slice field of view: T12 starts on slice 0, T11 ends on slice 19
    arr = ref.array
    assert arr[0][arr[0] > 0].min() == 19 and 18 in arr[-1]
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"T11": True, "T12": False}))
    rc = main(["evaluate", str(pred_path), str(ref_path), "--completeness", str(flags)])
    text = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line[:3] in ("T11", "T12")}
    assert lines["T11"][1:] == ["T11", "1.000", "0.00", "0.00", "ok"]
    assert lines["T12"][1:] == ["T12", "1.000", "0.00", "0.00", "ok"]
    # T11 is incomplete in the reference but called complete: one false positive, accuracy 1/2
    assert "completeness accuracy 0.500 (2 scored), FP/scan 1.00, FN/scan 0.00" in text


def test_unrelated_label_maps_are_refused_naming_the_overlap(verse004_path, tmp_path, capsys):
    """Issue 13: LIDC-IDRI-0001's vertebrae against a lumbar MR's bodies (another patient, another grid) gave a
    full table with Dice 0.04-0.09; now one line says that the two barely overlap in space."""
    pred = data_path("ct", "lidc-idri-0001", "vertebrae.nii.gz")
    ref = data_path("mr", "vertebral-bodies-myosegmentum", "01_vb.nii.gz")
    rc = main(["evaluate", str(pred), str(ref), "--csv", str(tmp_path / "v.csv")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1 and not (tmp_path / "v.csv").exists()
    assert err.startswith("spineseg: error: the prediction and the reference do not share a grid and their fields "
                          "of view overlap by only 7 % (resampling needs 50 %")
    assert "are they the same scan?" in err
    # in a batch, the message names the case
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"{verse004_path},{verse004_path},fine\n{pred},{ref},mixed-up\n")
    rc = main(["evaluate", "--pairs", str(pairs)])
    out, err = capsys.readouterr()
    assert rc == 2 and err.startswith("spineseg: error: mixed-up: the prediction and the reference do not share")


def test_a_prediction_on_another_grid_of_the_same_scan_is_resampled_with_a_note(verse004, verse004_path,
                                                                                  tmp_path, capsys):
    fine = write_image(resample_to_spacing(verse004, (1.0, 1.0, 1.0), label=True), tmp_path / "fine.nii.gz")
    rc = main(["evaluate", str(fine), str(verse004_path)])
    out, err = capsys.readouterr()
    assert rc == 0 and err.count("\n") == 1
    assert err.startswith("spineseg: note: resampled the prediction onto the reference's grid (nearest neighbour; "
                          "spacing 1x1x1 -> 1x1x2 mm; fields of view overlap ")
    assert "detected 9/9" in out and "Dice 1.000 ± 0.000" in out     # back on the 2 mm slices: the same voxels
    rc = main(["evaluate", str(fine), str(verse004_path), "--mode", "binary"])
    out, err = capsys.readouterr()
    assert rc == 0 and out.startswith("IoU 1.0000  DSC 1.0000") and "spineseg: note: resampled" in err


def test_batch_pairs_write_per_vertebra_and_summary_tables(verse004_path, missing_l1, tmp_path, capsys):
    (tmp_path / "preds").mkdir()
    (tmp_path / "preds" / "pred.nii.gz").write_bytes(missing_l1.read_bytes())
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "flags.json").write_text(json.dumps({str(i): True for i in range(16, 25)}))
    pairs = lists / "pairs.csv"  # relative paths resolve against the list's folder, not the working one
    pairs.write_text(f"# prediction, reference, case, completeness\n"
                     f"../preds/pred.nii.gz,{verse004_path},missing\n\n"
                     f"{verse004_path},{verse004_path},same,flags.json\n")
    rc = main(["evaluate", "--pairs", str(pairs), "--csv", str(tmp_path / "v.csv"),
               "--summary-csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "all.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "missing: Dice 0.889, detected 8/9, missed 1" in out and "same: Dice 1.000, detected 9/9" in out
    rows = read_csv(tmp_path / "v.csv")
    assert len(rows) == 18 and {r["case"] for r in rows} == {"missing", "same"}
    assert [r["status"] for r in rows if r["case"] == "missing" and r["ref_name"] == "L1"] == ["missed"]
    summary = read_csv(tmp_path / "s.csv")
    assert [r["case"] for r in summary] == ["missing", "same", "ALL"]
    total = summary[-1]
    assert (total["cases"], total["reference_vertebrae"], total["detected"], total["missed"]) == ("2", "18", "17", "1")
    assert float(total["dice_mean"]) == pytest.approx(17 / 18, abs=1e-6)
    # completeness only for the "same" case: none of the reference vertebrae touches the border
    assert total["completeness_scored"] == "9" and float(total["completeness_accuracy"]) == 1.0
    data = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert [c["case"] for c in data["cases"]] == ["missing", "same"] and data["summary"]["missed"] == 1


def test_outputs_are_not_overwritten_without_force(missing_l1, verse004_path, tmp_path, capsys):
    target = tmp_path / "v.csv"
    target.write_text("keep me\n")
    rc = main(["evaluate", str(missing_l1), str(verse004_path), "--csv", str(target)])
    err = capsys.readouterr().err
    assert rc == 2 and "exists" in err and "--force" in err
    assert target.read_text(encoding="utf-8") == "keep me\n"
    rc = main(["evaluate", str(missing_l1), str(verse004_path), "--csv", str(target), "--force"])
    assert rc == 0 and len(read_csv(target)) == 9


def test_bad_input_gives_one_line_and_exit_status_2(verse004_path, missing_l1, tmp_path):
    bad = tmp_path / "notes.nii.gz"
    bad.write_text("not an image")
    rc, out, err = run_cli(bad, verse004_path)
    assert rc == 2 and err.strip().count("\n") == 0
    assert err.startswith("spineseg: error: ") and "notes.nii.gz" in err and "not a readable image" in err
    assert "Traceback" not in err

    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"pred,ref\n{missing_l1},{verse004_path}\n{tmp_path / 'gone.nii.gz'},{verse004_path}\n")
    rc, _, err = run_cli("--pairs", pairs)
    assert rc == 2 and "pairs.csv line 3" in err and "gone.nii.gz" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    ([], "give PRED and REF"),
    (["{pred}", "{ref}", "--pairs", "{ref}"], "not both"),
    (["{pred}", "{ref}", "--labels", "L1"], "--labels 'L1'"),
    (["{pred}", "{ref}", "--csv", "{ref}", "--force"], "is one of the inputs"),
    (["{pred}", "{ref}", "--mode", "binary", "--completeness", "{ref}"], "need instance mode"),
])
def test_usage_errors(args, message, missing_l1, verse004_path, capsys):
    rc = main(["evaluate", *(a.format(pred=missing_l1, ref=verse004_path) for a in args)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
