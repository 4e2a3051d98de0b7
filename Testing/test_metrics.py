"""Binary metrics (SpineSegLib.evaluation.metrics) against values derived by hand from real VerSe masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import data_path

from SpineSegLib.core.image import Image, read_image
from SpineSegLib.evaluation.metrics import binary_metrics, dice, evaluate_binary_images, iou, surface_distances


@pytest.fixture(scope="module")
def verse004() -> Image:
    return read_image(data_path("masks", "verse", "sub-verse004_seg-vert_msk.nii.gz"))


def flipped_i(image: Image) -> Image:
    """The same voxels on a grid whose i axis runs the other way (same physical positions)."""
    direction = image.direction.copy()
    direction[:, 0] *= -1
    origin = image.index_to_lps((image.size[0] - 1, 0, 0))
    return Image(image.array[:, :, ::-1].copy(), image.spacing, origin, direction)


def test_iou_and_dice_match_voxel_counts(verse004):
    a = verse004.array
    n20, n21, n22 = (np.count_nonzero(a == i) for i in (20, 21, 22))
    pred, ref = np.isin(a, [20, 21]), np.isin(a, [21, 22])  # overlap: exactly vertebra 21
    m = binary_metrics(pred, ref, verse004.spacing)
    assert m["dsc"] == pytest.approx(2 * n21 / ((n20 + n21) + (n21 + n22)))
    assert m["iou"] == pytest.approx(n21 / (n20 + n21 + n22))
    voxel_ml = 1.0 * 1.0 * 2.000296115875244 / 1000
    assert m["pred_volume_ml"] == pytest.approx((n20 + n21) * voxel_ml, rel=1e-6)
    assert m["ref_volume_ml"] == pytest.approx((n21 + n22) * voxel_ml, rel=1e-6)
    assert dice(pred, ref) == m["dsc"] and iou(pred, ref) == m["iou"]


@pytest.mark.parametrize("axis, k", [(0, 3), (1, 1), (2, 2)])
def test_plate_shifted_along_its_normal_is_k_spacings_away(verse004, axis, k):
    # A one-voxel-thick plate cut from vertebra L3 (its largest section normal to `axis`) and the same
    # plate k voxels further along `axis`: every voxel of either plate is a surface voxel whose nearest
    # voxel of the other plate lies straight across, k * spacing away, so ASSD = HD95 = k * spacing.
    spacing = (0.8, 0.6, 2.5)  # (i, j, k) order: numpy axis 0 -> 2.5 mm, 1 -> 0.6 mm, 2 -> 0.8 mm
    vert = verse004.array == 22
    other_axes = tuple(x for x in range(3) if x != axis)
    at = int(np.argmax(vert.sum(axis=other_axes)))
    src = [slice(None)] * 3
    src[axis] = at
    dst = list(src)
    dst[axis] = at + k
    plate, moved = np.zeros_like(vert), np.zeros_like(vert)
    plate[tuple(src)] = vert[tuple(src)]
    moved[tuple(dst)] = vert[tuple(src)]
    expected = k * spacing[2 - axis]
    m = binary_metrics(moved, plate, spacing)
    assert m["assd_mm"] == pytest.approx(expected)
    assert m["hd95_mm"] == pytest.approx(expected)
    assert m["dsc"] == 0.0 and m["iou"] == 0.0


def test_vertebra_shifted_by_k_slices(verse004):
    # Shifting a solid vertebra by k slices: every surface voxel a has a + k on the other surface, so no
    # distance exceeds k * sz, and the lowest surface voxel is exactly k * sz from the shifted copy.
    k, sz = 3, verse004.spacing[2]
    vert = verse004.array == 22
    moved = np.zeros_like(vert)
    moved[k:] = vert[:-k]
    da, db = surface_distances(moved, vert, (sz, 1.0, 1.0))
    assert da.max() == pytest.approx(k * sz) and db.max() == pytest.approx(k * sz)
    m = binary_metrics(moved, vert, verse004.spacing)
    overlap = np.count_nonzero(moved & vert)
    assert m["dsc"] == pytest.approx(2 * overlap / (2 * np.count_nonzero(vert)))
    assert 0.0 < m["assd_mm"] < k * sz
    assert 0.0 < m["hd95_mm"] <= k * sz + 1e-9


def test_empty_mask_conventions(verse004):
    empty = np.zeros(verse004.shape, bool)
    vert = verse004.array == 20
    both = binary_metrics(empty, empty, verse004.spacing)
    assert (both["iou"], both["dsc"], both["hd95_mm"], both["assd_mm"]) == (1.0, 1.0, 0.0, 0.0)
    for pred, ref in ((empty, vert), (vert, empty)):
        m = binary_metrics(pred, ref, verse004.spacing)
        assert m["iou"] == 0.0 and m["dsc"] == 0.0
        assert math.isnan(m["hd95_mm"]) and math.isnan(m["assd_mm"])


def test_evaluate_binary_images_on_a_flipped_grid(verse004):
    pred = flipped_i(verse004)
    assert not pred.same_grid(verse004)
    m = evaluate_binary_images(pred, verse004)
    assert m["dsc"] == 1.0 and m["hd95_mm"] == 0.0 and m["assd_mm"] == 0.0
    # restricting the reference to one vertebra: the prediction (all vertebrae) covers it and 8 more
    only = evaluate_binary_images(pred, verse004, ref_labels=[22])
    n22, total = np.count_nonzero(verse004.array == 22), np.count_nonzero(verse004.array)
    assert only["dsc"] == pytest.approx(2 * n22 / (n22 + total))


def test_shape_mismatch_is_an_input_error(verse004):
    from SpineSegLib.core.errors import InputError

    with pytest.raises(InputError, match="differ in shape"):
        binary_metrics(verse004.array[1:] > 0, verse004.array > 0)
