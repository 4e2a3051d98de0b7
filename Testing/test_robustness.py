"""Robustness corpus and suite (issue 13): every command on damaged, re-encoded and re-gridded variants of
LIDC-IDRI-0001 and MyoSegmenTUM 01 gives the original's answer or a clear one-line refusal.

The slow test builds the corpus once (``Testing/robustness/corpus.py``), runs the real ``spineseg`` command
line on every variant (``Testing/robustness/run_corpus.py``, two runs at a time) and prints the table
(visible with ``-s`` or ``-rA``); one test per command fails with the cells that are DIFFERENT, SILENT,
REFUSED, WRONG REASON or CRASHED. The fast tests check the corpus itself (its exact variants hold exactly
the original's voxels) and the verdict rules on hand-made runs.

Console use::

    pytest -m slow -s Testing/test_robustness.py            # ~1.5-3 min on 2 cores
    python Testing/robustness/run_corpus.py --markdown table.md
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import data_path

from robustness.corpus import REFUSE, SAME, SAME_OR_REFUSE, Variant, build_corpus
from robustness.run_corpus import COMMANDS, run_suite
from robustness.verdicts import Cell, dice_per_id, judge, onto


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    data_path("mr", "vertebral-bodies-myosegmentum")
    data_path("ct", "lidc-idri-0001", "vertebrae.nii.gz")
    root = tmp_path_factory.mktemp("robustness") / "corpus"
    return root, {v.key: v for v in build_corpus(root)}


@pytest.fixture(scope="module")
def report(corpus):
    root, _ = corpus
    result = run_suite(root, root.parent / "runs", jobs=2, progress=None)
    print("\n" + result.text())
    return result


# -- slow: the suite ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_variant_gives_the_same_answer_or_a_clear_refusal(report, command):
    cells = [c for c in report.cells if c.command == command]
    assert cells, f"no variant ran {command}"
    failing = report.failures(command)
    if failing:
        pytest.fail(f"{len(failing)} of {len(cells)} cells fail:\n" + "\n".join(
            f"{c.key}: {c.outcome} -- {c.detail}" for c in failing), pytrace=False)


# -- fast: the corpus is what it claims ------------------------------------------------------------------------
def _image(root: Path, rel: str) -> sitk.Image:
    path = root / rel
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        ids = reader.GetGDCMSeriesIDs(str(path))
        reader.SetFileNames(max((reader.GetGDCMSeriesFileNames(str(path), i) for i in ids), key=len))
        return reader.Execute()
    return sitk.ReadImage(str(path))


@pytest.mark.parametrize("key", ["ct/permuted", "ct/flipped", "ct/rescaled-uint16", "ct/dicom", "ct/dicom-two-series",
                                 "mr/permuted", "mr/flipped"])
def test_exact_variants_hold_the_originals_voxels(corpus, key):
    root, variants = corpus
    v = variants[key]
    original = variants[f"{v.group}/original"]
    want, got = _image(root, original.image), _image(root, v.image)
    mapped = onto(sitk.Cast(got, sitk.sitkFloat32), want, False, np.nan)
    np.testing.assert_array_equal(mapped, sitk.GetArrayFromImage(want).astype(np.float32))
    labels = onto(_image(root, v.labels), _image(root, original.labels), False)
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(_image(root, original.labels)))


def test_broken_and_cropped_variants_are_what_they_say(corpus):
    root, variants = corpus
    with pytest.raises(EOFError):      # a gzip stream cut short (SimpleITK itself reads it without complaint)
        gzip.decompress((root / variants["ct/truncated"].image).read_bytes())
    assert (root / variants["ct/truncated"].image).stat().st_size == 100_000
    assert sitk.ReadImage(str(root / variants["ct/tiny"].image)).GetSize() == (8, 8, 8)
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(root / variants["ct/no-spine"].labels))).any()
    raw = gzip.decompress((root / variants["ct/nans"].image).read_bytes())   # the NaNs are in the file ...
    assert np.isnan(np.frombuffer(raw[352:], dtype="<f4")).sum() == 3 * 144 * 116
    nan_inf = sitk.GetArrayFromImage(sitk.ReadImage(str(root / variants["ct/nan-inf-nrrd"].image)))
    assert np.isnan(nan_inf).any() and np.isinf(nan_inf).any()                # ... and NRRD keeps them
    missing = root / variants["ct/dicom-missing-slice"].image
    assert len(list(missing.iterdir())) == 132
    thick = sitk.ReadImage(str(root / variants["ct/thick-5mm"].image))
    assert thick.GetSpacing()[2] == pytest.approx(5.0)
    oblique = sitk.ReadImage(str(root / variants["ct/oblique"].image))
    assert abs(oblique.GetDirection()[4]) == pytest.approx(np.cos(np.radians(15)), abs=1e-6)


# -- fast: the verdict rules -----------------------------------------------------------------------------------
def _cell(tmp_path, expect=SAME, rc=0, stderr="", name="nans", geometry="exact", command="classical") -> Cell:
    v = Variant(name, "ct", "test", geometry, expect, "x.nii.gz", "y.nii.gz")
    return Cell(v, command, tmp_path, tmp_path, rc=rc, stderr=stderr)


def test_a_clear_refusal_is_one_error_line_after_any_progress(tmp_path):
    cell = judge(_cell(tmp_path, REFUSE, 2, "[  0%] case nans (1/1)\nspineseg: error: the image holds NaN values\n"),
                 None)
    assert (cell.outcome, cell.ok) == ("refused", True)
    cell = judge(_cell(tmp_path, REFUSE, 2, "WARNING: In itkFoo.hxx\nspineseg: error: holds NaN\n"), None)
    assert (cell.outcome, cell.ok) == ("UNCLEAR", False)


def test_refusals_must_name_the_cause_and_handled_variants_must_not_be_refused(tmp_path):
    assert judge(_cell(tmp_path, REFUSE, 2, "spineseg: error: no spine found\n"), None).outcome == "WRONG REASON"
    assert judge(_cell(tmp_path, SAME, 2, "spineseg: error: oblique\n", "permuted"), None).outcome == "REFUSED"
    assert judge(_cell(tmp_path, SAME_OR_REFUSE, 2, "spineseg: error: too small\n", "tiny"), None).outcome == "refused"


def test_tracebacks_and_accepted_must_refuse_variants_fail(tmp_path):
    crash = judge(_cell(tmp_path, SAME, 1, "Traceback (most recent call last):\n  ...\nValueError: boom\n"), None)
    assert (crash.outcome, crash.detail) == ("CRASHED", "traceback: ValueError: boom")
    base = _cell(tmp_path / "base", name="original")
    for folder in (tmp_path, base.folder):          # the same (empty) mask from both runs
        folder.mkdir(exist_ok=True)
        sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(folder / "mask.nii.gz"))
    silent = judge(_cell(tmp_path, REFUSE), base)
    assert (silent.outcome, silent.ok) == ("SILENT", False)


def test_dice_per_id_counts_each_label():
    a = np.array([0, 1, 1, 2, 2, 2])
    b = np.array([0, 1, 2, 2, 2, 0])
    assert dice_per_id(a, b) == {1: pytest.approx(2 / 3), 2: pytest.approx(4 / 6)}
