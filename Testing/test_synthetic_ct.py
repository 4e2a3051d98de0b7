"""Synthetic CT painted around a real VerSe mask (sub-verse010, L1-L5; the fast tests use its L4-L5
crop): the labels are the mask's, bone has bone HU, the body soft-tissue HU, air outside; the
dataset kind makes each image once."""

import shutil

import numpy as np
import pytest

from conftest import data_path
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.iis.train.readers import read_dataset
from SpineSegLib.iis.train.synthetic_ct import synthesize_ct

MASK = data_path("masks", "verse", "sub-verse010_seg-vert_msk.nii.gz")


@pytest.fixture(scope="session")
def l4_l5_mask():
    """L4 and L5 of the mask, cropped to them with a 3-voxel margin (geometry kept)."""
    mask = read_image(MASK)
    keep = np.isin(mask.array, [23, 24])
    axes = [np.nonzero(keep.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    lo = [max(int(z.min()) - 3, 0) for z in axes]
    hi = [int(z.max()) + 4 for z in axes]
    array = np.where(keep, mask.array, 0)[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return Image(array, mask.spacing, tuple(mask.index_to_lps(lo[::-1])), mask.direction)


def test_crop_gets_bone_hu_around_its_labels_and_the_seed_decides(l4_l5_mask):
    ct, labels = synthesize_ct(l4_l5_mask, seed=4, margin_mm=30)
    assert ct.same_grid(labels) and ct.array.dtype == np.int16
    assert sorted(np.unique(labels.array))[1:] == [23, 24]
    for v in (23, 24):      # 1 mm resampling of a 1 mm mask: the same volumes
        src = (l4_l5_mask.array == v).sum()
        assert abs((labels.array == v).sum() - src) < 0.05 * src
    hu = ct.array.astype(float)
    bone = labels.array > 0
    assert 120 < np.median(hu[bone]) < 900
    assert ((np.abs(hu) < 100) & ~bone).sum() > bone.sum() and (hu < -900).mean() > 0.02
    again, _ = synthesize_ct(l4_l5_mask, seed=4, margin_mm=30)
    other, _ = synthesize_ct(l4_l5_mask, seed=5, margin_mm=30)
    np.testing.assert_array_equal(again.array, ct.array)
    assert not np.array_equal(other.array, ct.array)


def test_dataset_kind_makes_a_crop_once(tmp_path, monkeypatch, l4_l5_mask):
    monkeypatch.setenv("SPINESEG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "masks").mkdir()
    write_image(l4_l5_mask, tmp_path / "masks" / "crop_seg-vert_msk.nii.gz")
    (case,) = read_dataset("synthetic-ct", tmp_path / "masks", variants=1, seed=2)
    assert case.case_id == "synthetic/crop-v0" and case.modality == "ct" and case.convention == "verse"
    stamp = case.image.stat().st_mtime_ns
    (again,) = read_dataset("synthetic-ct", tmp_path / "masks", variants=1, seed=2)
    assert again.image == case.image and again.image.stat().st_mtime_ns == stamp
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no label maps"):
        read_dataset("synthetic-ct", empty)
    with pytest.raises(InputError, match="holds no vertebra"):
        synthesize_ct(Image(np.zeros((8, 8, 8), np.uint8)))


@pytest.fixture(scope="module")
def synthetic():
    return synthesize_ct(read_image(MASK), seed=4)


@pytest.mark.slow
def test_labels_are_the_mask_and_bone_looks_like_bone(synthetic):
    ct, labels = synthetic
    assert ct.same_grid(labels) and ct.spacing == (1.0, 1.0, 1.0) and ct.array.dtype == np.int16
    assert sorted(np.unique(labels.array))[1:] == [20, 21, 22, 23, 24]
    mask = read_image(MASK)
    # same vertebrae, same volumes (1 mm resampling of a 1 mm mask)
    for v in (20, 22, 24):
        assert abs((labels.array == v).sum() - (mask.array == v).sum()) < 0.05 * (mask.array == v).sum()
    hu = ct.array.astype(float)
    bone = labels.array > 0
    assert 120 < np.median(hu[bone]) < 900
    near = (np.abs(hu) < 100) & ~bone
    assert near.sum() > bone.sum()                  # soft tissue around the spine
    assert (hu < -900).mean() > 0.02                # air outside the body
    # the body surrounds the spine: the voxels around the vertebral bodies are not air
    from scipy import ndimage
    ring = ndimage.binary_dilation(bone, iterations=5) & ~bone
    assert (hu[ring] > -500).mean() > 0.95


@pytest.mark.slow
def test_seed_decides_the_image(synthetic):
    again, _ = synthesize_ct(read_image(MASK), seed=4)
    other, _ = synthesize_ct(read_image(MASK), seed=5)
    np.testing.assert_array_equal(again.array, synthetic[0].array)
    assert not np.array_equal(other.array, synthetic[0].array)


@pytest.mark.slow
def test_dataset_kind_makes_each_case_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINESEG_CACHE", str(tmp_path / "cache"))
    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copyfile(MASK, masks / MASK.name)
    cases = read_dataset("synthetic-ct", masks, variants=2, seed=1)
    assert [c.case_id for c in cases] == ["synthetic/sub-verse010-v0", "synthetic/sub-verse010-v1"]
    assert all(c.modality == "ct" and c.image.is_file() for c in cases)
    stamp = cases[0].image.stat().st_mtime_ns
    again = read_dataset("synthetic-ct", masks, variants=2, seed=1)
    assert again[0].image == cases[0].image and again[0].image.stat().st_mtime_ns == stamp
    assert all(cases[0].vertebra_map()[v] == v for v in (20, 21, 22, 23, 24))
