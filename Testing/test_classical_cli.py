"""``spineseg classical`` on the bundled LIDC-IDRI-0001 sample (2.5 mm): outputs, metrics, refusals.

The run that writes every output (a child process, the whole pipeline and the PNG) is in the slow tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
                   "--no-aorta", "--no-parabola", "--no-fill", "--params"):
        assert option in proc.stdout
