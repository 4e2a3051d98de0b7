"""``spineseg classical`` on the bundled LIDC-IDRI-0001 sample (2.5 mm): outputs, metrics, refusals.

The run that writes every output (a child process, the whole pipeline and the PNG) is in the slow tier."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from SpineSegLib.core.image import read_image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm"


def spineseg(*args):
    """The console script in a child process (what a user runs)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return subprocess.run([sys.executable, "-m", "SpineSegLib", "classical", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


def spineseg_here(capsys, *args):
    """The same command line in this process (no second interpreter start-up)."""
    from SpineSegLib.cli import main

    capsys.readouterr()
    code = main(["classical", *map(str, args)])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def assert_one_line_error(proc, words):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    progress = [line for line in lines if line.startswith("[")]      # "[ 40%] step" lines
    others = [line for line in lines if not line.startswith("[")]
    assert len(others) == 1 and lines[-1] == others[0], proc.stderr
    assert others[0].startswith("spineseg: error:") and words in others[0], proc.stderr
    assert len(progress) == len(lines) - 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("classical")
    proc = spineseg(SAMPLE / "image.nii.gz", "-o", out / "spine.nii.gz", "--png", out / "spine.png",
                    "--intermediates", out / "steps", "--reference", SAMPLE / "vertebrae.nii.gz")
    return out, proc


@pytest.mark.slow
def test_cli_writes_every_output_and_prints_metrics(run):
    out, proc = run
    assert proc.returncode == 0, proc.stderr
    assert "IoU" in proc.stdout and "DSC" in proc.stdout and "HD95" in proc.stdout and "ASSD" in proc.stdout
    iou = float(proc.stdout.split("IoU")[1].split()[0])
    assert iou >= 0.59
    assert "[" in proc.stderr and "spine centerline" in proc.stderr      # progress on stderr
    mask = read_image(out / "spine.nii.gz")
    assert mask.same_grid(read_image(SAMPLE / "image.nii.gz"))
    assert (out / "spine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("spine_mask.nii.gz", "bone_mask.nii.gz", "aorta_mask.nii.gz", "intermediates.json"):
        assert (out / "steps" / name).is_file()
    data = json.loads((out / "steps" / "intermediates.json").read_text(encoding="utf-8"))
    assert data["coordinates"].startswith("LPS") and data["parabolas"]


def test_cli_refuses_to_overwrite_any_output(tmp_path, capsys):
    out = tmp_path / "old"
    for name in ("spine.nii.gz", "spine.png", "steps/intermediates.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"an earlier result")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = spineseg_here(capsys, SAMPLE / "image.nii.gz", "-o", out / "spine.nii.gz", "--png", out / "spine.png", "--quiet")
    assert_one_line_error(proc, "spine.nii.gz exists")
    # a new mask path, but the PNG exists: still refused, before any work (the mask is not written)
    proc = spineseg_here(capsys, SAMPLE / "image.nii.gz", "-o", tmp_path / "new.nii.gz", "--png", out / "spine.png")
    assert_one_line_error(proc, "spine.png exists")
    assert not (tmp_path / "new.nii.gz").exists()
    proc = spineseg_here(capsys, SAMPLE / "image.nii.gz", "-o", tmp_path / "new.nii.gz", "--intermediates", out / "steps")
    assert_one_line_error(proc, "intermediates.json exists")
    assert not (tmp_path / "new.nii.gz").exists()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_cli_force_overwrites(tmp_path, capsys):
    target = tmp_path / "spine.nii.gz"
    target.write_bytes(b"not an image")
    proc = spineseg_here(capsys, SAMPLE / "image.nii.gz", "-o", target, "--force", "--quiet", "--no-parabola")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert read_image(target).same_grid(read_image(SAMPLE / "image.nii.gz"))


def test_cli_bad_inputs_give_one_line(tmp_path, capsys):
    mr = data_path("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz")
    assert_one_line_error(spineseg(mr, "-o", tmp_path / "a.nii.gz"), "Hounsfield")      # the real console script
    here = lambda *a: spineseg_here(capsys, *a)  # noqa: E731
    assert_one_line_error(here(tmp_path / "missing.nii.gz", "-o", tmp_path / "b.nii.gz"), "no such file")
    assert_one_line_error(here(SAMPLE / "image.nii.gz", "-o", tmp_path / "c.png"), "unsupported output format")
    assert_one_line_error(here(SAMPLE / "image.nii.gz", "-o", tmp_path / "d.nii.gz", "--png", tmp_path / "d.jpg"), ".png")
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"no_such_parameter": 3}))
    assert_one_line_error(here(SAMPLE / "image.nii.gz", "-o", tmp_path / "e.nii.gz", "--params", params), "no_such_parameter")
    crop = tmp_path / "front.nii.gz"
    from SpineSegLib.core.image import Image, write_image
    from SpineSegLib.core.orientation import to_canonical
    can = to_canonical(read_image(SAMPLE / "image.nii.gz")).image
    write_image(Image(can.array[:, :55].copy(), can.spacing, can.origin, can.direction), crop)   # no vertebra in it
    assert_one_line_error(here(crop, "-o", tmp_path / "f.nii.gz", "--quiet"), "no spine found")
    assert not any(tmp_path.glob("[a-f].nii.gz"))


def test_cli_help_names_every_option(capsys):
    from SpineSegLib.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["classical", "--help"])
    assert exit_info.value.code == 0
    proc = subprocess.CompletedProcess([], 0, capsys.readouterr().out, "")
    for option in ("--output", "--reference", "--intermediates", "--png", "--force", "--quiet", "--bone-threshold",
                   "--no-aorta", "--no-parabola", "--no-fill", "--params", "--vertebrae", "--report"):
        assert option in proc.stdout


# -- --vertebrae: the model-free vertebrae (classical.vertebrae.label_vertebrae) ------------------------------------
def test_vertebrae_outputs_are_checked_before_any_work(tmp_path, capsys):
    from SpineSegLib.cli.classical import REPORT_FILES
    from SpineSegLib.evaluation.vertebra_report import FILE_NAMES

    assert REPORT_FILES == (*FILE_NAMES, "vertebrae_names.json")      # what --report DIR is checked for
    here = lambda *a: spineseg_here(capsys, SAMPLE / "image.nii.gz", "-o", tmp_path / "spine.nii.gz", *a)  # noqa: E731
    assert_one_line_error(here("--report", tmp_path / "r"), "--report writes the per-vertebra report: it needs "
                                                            "--vertebrae")
    (tmp_path / "labels.nii.gz").write_bytes(b"an earlier label map")
    assert_one_line_error(here("--vertebrae", tmp_path / "labels.nii.gz"), "labels.nii.gz exists")
    for name in REPORT_FILES:
        (tmp_path / "report").mkdir(exist_ok=True)
        (tmp_path / "report" / name).write_bytes(b"an earlier report")
        assert_one_line_error(here("--vertebrae", tmp_path / "new.nii.gz", "--report", tmp_path / "report"),
                              f"{name} exists")
        (tmp_path / "report" / name).unlink()
    (tmp_path / "file").write_text("not a folder")
    assert_one_line_error(here("--vertebrae", tmp_path / "new.nii.gz", "--report", tmp_path / "file"), "is a file")
    assert_one_line_error(here("--vertebrae", tmp_path / "spine.nii.gz"), "would be the same file")
    assert_one_line_error(here("--vertebrae", tmp_path / "new.png"), "unsupported output format")
    assert not (tmp_path / "spine.nii.gz").exists() and not (tmp_path / "new.nii.gz").exists()
    assert (tmp_path / "labels.nii.gz").read_bytes() == b"an earlier label map"


@pytest.fixture(scope="module")
def vertebrae_cli(tmp_path_factory):
    """``spineseg classical --vertebrae --report --reference`` on the sample, in this process."""
    from SpineSegLib.cli import main

    out = tmp_path_factory.mktemp("vertebrae")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["classical", str(SAMPLE / "image.nii.gz"), "-o", str(out / "spine.nii.gz"), "--vertebrae",
                     str(out / "vertebrae.nii.gz"), "--report", str(out / "report"),
                     "--reference", str(SAMPLE / "vertebrae.nii.gz")])
    return out, subprocess.CompletedProcess([], code, stdout.getvalue(), stderr.getvalue())


def test_vertebrae_writes_the_label_map_report_and_names(vertebrae_cli):
    out, proc = vertebrae_cli
    assert proc.returncode == 0, proc.stderr
    image = read_image(SAMPLE / "image.nii.gz")
    labels, mask = read_image(out / "vertebrae.nii.gz"), read_image(out / "spine.nii.gz")
    assert labels.same_grid(image) and mask.same_grid(image)
    names = json.loads((out / "report" / "vertebrae_names.json").read_text(encoding="utf-8"))
    found = names["vertebrae"]
    ids = sorted(int(v) for v in np.unique(labels.array) if v)
    assert ids == sorted(v["label"] for v in found) and len(ids) >= 8
    assert not np.any((labels.array > 0) & (mask.array == 0))             # vertebrae only inside the spine mask
    for name in ("vertebrae.csv", "vertebrae.json", "vertebrae.png"):
        assert (out / "report" / name).stat().st_size > 100
    csv_lines = (out / "report" / "vertebrae.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == len(found) + 1
    lines = proc.stderr.splitlines()
    for v in found:                 # one line per vertebra: name, complete or cut, evidence
        line = next(line for line in lines if line.split()[:1] == [v["name"]])
        assert ("complete" if v["complete"] else "cut by the field of view") in line
        assert "; ".join(v["evidence"]) in line
    assert names["naming_note"] in proc.stderr
    assert ("UNCERTAIN" in proc.stderr) == (not names["names_certain"])
    # the reference: the spine metrics as before, then per-vertebra Dice, detection and identification
    assert "IoU" in proc.stdout and "instance metrics" in proc.stdout
    assert "identification accuracy" in proc.stdout and "detected" in proc.stdout
    accuracy = float(proc.stdout.split("identification accuracy ")[1].split()[0])
    dice = float(proc.stdout.split("\nDice ")[1].split()[0])
    assert accuracy >= 0.75 and dice >= 0.5         # measured on this sample: 0.889 (16/18) and 0.588


def test_uncertain_names_are_said_clearly_even_when_quiet():
    from SpineSegLib.classical.instances import VertebraeResult, VertebraInstance
    from SpineSegLib.cli.classical import describe_vertebrae

    labels = read_image(SAMPLE / "vertebrae.nii.gz")
    found = [VertebraInstance(20, "L1", True, (0.0, 0.0, 0.0), 900, ["counted from the sacrum"])]
    certain = VertebraeResult(labels, found, True, "named from the sacrum", np.zeros((0, 3)), np.zeros((0, 3)))
    text = describe_vertebrae(certain, "v.nii.gz")
    assert "L1" in text and "complete" in text and "counted from the sacrum" in text and "UNCERTAIN" not in text
    assert describe_vertebrae(certain, "v.nii.gz", quiet=True) == ""
    unsure = VertebraeResult(labels, found, False, "no rib or sacrum in view", np.zeros((0, 3)), np.zeros((0, 3)))
    assert describe_vertebrae(unsure, "v.nii.gz", quiet=True) == \
        "WARNING: the vertebra names are UNCERTAIN: no rib or sacrum in view"


def test_a_scan_without_the_lowest_rib_says_its_names_are_uncertain(tmp_path, capsys):
    """The upper half of the sample (about C3-T4): only the first rib anchors the names; said as a warning, also
    with --quiet, and in vertebrae_names.json."""
    from SpineSegLib.core.image import Image, write_image
    from SpineSegLib.core.orientation import to_canonical

    can = to_canonical(read_image(SAMPLE / "image.nii.gz")).image
    half = can.array.shape[0] // 2
    write_image(Image(can.array[half:].copy(), can.spacing, tuple(can.index_to_lps([0, 0, half])), can.direction),
                tmp_path / "upper.nii.gz")
    proc = spineseg_here(capsys, tmp_path / "upper.nii.gz", "-o", tmp_path / "spine.nii.gz", "--vertebrae",
                         tmp_path / "vertebrae.nii.gz", "--report", tmp_path / "report", "--quiet")
    assert proc.returncode == 0, proc.stderr
    names = json.loads((tmp_path / "report" / "vertebrae_names.json").read_text(encoding="utf-8"))
    assert names["names_certain"] is False and names["vertebrae"]
    assert proc.stderr.strip() == f"WARNING: the vertebra names are UNCERTAIN: {names['naming_note']}"
