"""Image I/O and canonical orientation on the real scans in ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import data_path
from SpineSegLib.core.errors import InputError, OutputExistsError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.resample import resample_to_grid, resample_to_spacing
from SpineSegLib.core.orientation import to_canonical

CASES = [
    ("ct", "lidc-idri-0001", "image.nii.gz"),          # LAS: flipped y axis
    ("ct", "totalseg-example-3mm", "image.nii.gz"),    # RAS
    ("ct", "tptbox-l3", "image.nii.gz"),               # PIR: permuted axes
    ("mr", "tptbox-c6", "image.nii.gz"),               # PIR, MR
    ("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz"),  # LPI
]


@pytest.mark.parametrize("parts", CASES, ids=lambda p: p[1])
def test_read_matches_simpleitk(parts):
    path = data_path(*parts)
    ours = read_image(path)
    ref = sitk.ReadImage(str(path))
    assert ours.size == ref.GetSize()
    assert np.allclose(ours.spacing, ref.GetSpacing())
    assert np.allclose(ours.origin, ref.GetOrigin())
    assert np.allclose(ours.direction.ravel(), ref.GetDirection())
    assert np.array_equal(ours.array, sitk.GetArrayFromImage(ref))
    # index -> LPS agrees with ITK
    ijk = (3, 5, 7)
    assert np.allclose(ours.index_to_lps(ijk), ref.TransformIndexToPhysicalPoint(ijk), atol=1e-4)
    assert np.allclose(ours.lps_to_index(ours.index_to_lps(ijk)), ijk)


@pytest.mark.parametrize("parts", CASES, ids=lambda p: p[1])
def test_canonical_is_lps_and_restores_exactly(parts):
    image = read_image(data_path(*parts))
    can = to_canonical(image)
    assert can.image.orientation == "LPS"
    assert np.array_equal(can.restore(can.image.array), image.array)
    # the same physical point holds the same value in both layouts
    rng = np.random.default_rng(0)
    for _ in range(20):
        kji = tuple(int(rng.integers(0, s)) for s in can.image.shape)
        lps = can.image.index_to_lps(kji[::-1])
        i, j, k = np.round(image.lps_to_index(lps)).astype(int)
        assert can.image.array[kji] == image.array[k, j, i]


def test_canonical_axes_follow_anatomy(lidc_dir):
    """In the canonical layout z grows superior, y posterior: the spine is posterior to the sternum."""
    ct = read_image(lidc_dir / "image.nii.gz")
    labels = read_image(lidc_dir / "vertebrae.nii.gz")
    can_labels = to_canonical(labels).image.array
    z_c5 = np.nonzero(can_labels == 5)[0].mean()
    z_l3 = np.nonzero(can_labels == 22)[0].mean()
    assert z_c5 > z_l3  # C5 above L3
    body = to_canonical(ct).image.array > -300
    _, y_body, _ = np.nonzero(body)
    _, y_spine, _ = np.nonzero(can_labels > 0)
    assert y_spine.mean() > y_body.mean()  # spine lies posterior of the body's centre


def test_dicom_series_folder_reads_and_aligns_with_its_labels():
    ct = read_image(data_path("ct", "totalseg-example-dicom", "dicom"))
    assert ct.shape == (20, 512, 512)
    assert np.allclose(ct.spacing, (0.9765625, 0.9765625, 2.0))
    labels = read_image(data_path("ct", "totalseg-example-dicom", "vertebrae.nii.gz"))
    assert not labels.same_grid(ct)  # stored with a flipped y axis
    aligned = resample_to_grid(labels, ct, label=True)
    assert np.count_nonzero(aligned.array) == np.count_nonzero(labels.array)  # exact, no interpolation
    assert ct.array[aligned.array > 0].mean() > 150  # vertebrae are bone in the CT
    assert ct.array[np.flip(aligned.array, 1) > 0].mean() < 0  # the unaligned mask is not


def test_write_roundtrip_and_no_silent_overwrite(tmp_path, lidc_dir):
    labels = read_image(lidc_dir / "vertebrae.nii.gz")
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        out = tmp_path / f"labels{suffix}"
        write_image(labels, out)
        back = read_image(out)
        assert back.same_grid(labels) and np.array_equal(back.array, labels.array)
        before = out.read_bytes()
        with pytest.raises(OutputExistsError):
            write_image(labels.with_array(np.zeros_like(labels.array)), out)
        assert out.read_bytes() == before
        write_image(labels.with_array(np.zeros_like(labels.array)), out, force=True)
        assert read_image(out).array.max() == 0
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("content, message", [
    (b"this is not an image", "not a readable image"),
    (b"", "not a readable image"),
])
def test_bad_files_name_the_problem(tmp_path, content, message):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_image(bad)


def test_missing_and_2d_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nothing.nii.gz")
    slice_2d = sitk.GetImageFromArray(np.zeros((32, 32), np.int16))
    sitk.WriteImage(slice_2d, str(tmp_path / "slice.nii.gz"))
    with pytest.raises(InputError, match="2-D"):
        read_image(tmp_path / "slice.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM"):
        read_image(tmp_path / "empty")
    with pytest.raises(InputError, match="unsupported output format"):
        write_image(Image(np.zeros((2, 2, 2))), tmp_path / "x.png")


def test_resample_to_spacing_keeps_the_anatomy_in_place(lidc_dir):
    labels = read_image(lidc_dir / "vertebrae.nii.gz")
    coarse = resample_to_spacing(labels, (2.0, 2.0, 2.5), label=True)
    for label in (10, 19):
        fine_centre = labels.index_to_lps(np.argwhere(labels.array == label).mean(0)[::-1])
        coarse_centre = coarse.index_to_lps(np.argwhere(coarse.array == label).mean(0)[::-1])
        assert np.linalg.norm(fine_centre - coarse_centre) < 1.5  # mm
