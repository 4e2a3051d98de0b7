"""``core.grids``: how two grids relate and when one image may be put onto another's grid -- the same grid,
the same voxels in another axis order (exact), the same lattice with another extent (exact), a resampled copy
of the same scan (resampled, with a note), a crop (inside the other), unrelated scans (refused, naming the
overlap), and the overlap itself (exact for oblique boxes). Real label maps, cropped small; all fast."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path

from SpineSegLib.annotation.conformance import image_grid
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.grids import MIN_INSIDE, MIN_IOU, conform, field_of_view_overlap, relate
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.notes import collect_notes
from SpineSegLib.core.resample import resample_to_grid, resample_to_spacing
from SpineSegLib.evaluation.metrics import dice, evaluate_binary_images


@pytest.fixture(scope="module")
def lumbar() -> tuple[Image, Image]:
    """TPTBox's CT crop around L3 (73x47x73 at 1.5 mm, axes PIR) and its vertebra labels (L2-L4)."""
    folder = data_path("ct", "tptbox-l3")
    return read_image(folder / "image.nii.gz"), read_image(folder / "vertebrae.nii.gz")


def box(size, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3)) -> Image:
    """A grid without voxels (a zero-stride array): geometry is all the rule looks at."""
    return Image(np.broadcast_to(np.uint8(0), tuple(reversed(size))), spacing, origin, direction)


def rotation_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


def permuted_and_flipped(image: Image) -> Image:
    """The same voxels with the axes in another order (i <-> k) and the new k reversed."""
    array = np.flip(np.transpose(image.array, (2, 1, 0)), axis=0)
    d, sp = image.direction, image.spacing
    direction = np.stack([d[:, 2], d[:, 1], -d[:, 0]], axis=1)
    return Image(array.copy(), (sp[2], sp[1], sp[0]), image.index_to_lps([image.size[0] - 1, 0, 0]), direction)


def test_same_grid_is_used_as_it_is(lumbar):
    _, labels = lumbar
    out, note = conform(labels, labels)
    assert note is None and out.array is labels.array and relate(labels, labels).kind == "same"


def test_permuted_and_flipped_axes_are_mapped_exactly(lumbar):
    ct, labels = lumbar
    for image, label in ((labels, True), (ct, False)):          # a label map, and CT values (no interpolation)
        other = permuted_and_flipped(image)
        assert not other.same_grid(image) and other.orientation != image.orientation
        assert relate(other, image).kind == "axes"
        out, note = conform(other, image, label=label)
        assert out.same_grid(image) and out.array.dtype == image.array.dtype
        assert np.array_equal(out.array, image.array)
        assert note == (f"mapped the prediction exactly onto the reference's grid (the same voxels in another axis "
                        f"order: {other.orientation} -> {image.orientation})")


def test_the_same_lattice_with_another_extent_is_copied_exactly(lumbar):
    ct, labels = lumbar
    window = (slice(10, 60), slice(5, 40), slice(20, 70))
    corner = [window[2].start, window[1].start, window[0].start]
    crop = Image(ct.array[window].copy(), ct.spacing, ct.index_to_lps(corner), ct.direction)
    relation = relate(crop, ct)
    assert relation.kind == "lattice" and relation.inside == pytest.approx(1.0) and relation.iou < MIN_IOU
    out, note = conform(crop, ct, label=False, default=-5000)          # the crop onto the whole: padded
    assert np.array_equal(out.array[window], crop.array)
    assert (out.array == -5000).sum() == ct.array.size - crop.array.size and ct.array.min() > -5000
    assert "exactly" in note and "the prediction's lies inside the reference's" in note
    back, _ = conform(ct, crop, label=False)                           # the whole onto the crop: cut
    assert np.array_equal(back.array, crop.array)
    flipped_crop = permuted_and_flipped(crop)                          # both at once
    assert relate(flipped_crop, ct).kind == "lattice"
    assert np.array_equal(conform(flipped_crop, ct, label=False, default=-5000)[0].array, out.array)


def test_a_resampled_copy_of_the_same_scan_is_resampled_with_a_note(lumbar):
    ct, labels = lumbar
    pred = labels.with_array(np.where(labels.array == 23, 0, labels.array))     # L4 missed: Dice < 1
    original = evaluate_binary_images(pred, labels)["dsc"]
    fine = resample_to_spacing(pred, (1.0, 1.0, 1.0), label=True)       # a prediction on a 1 mm copy
    relation = relate(fine, labels)
    assert relation.kind == "resample" and relation.iou > 0.97 and relation.inside > 0.99   # sizes rounded
    with collect_notes() as notes:                                      # told as a note, never silently
        assert evaluate_binary_images(fine, labels)["dsc"] == pytest.approx(original, abs=0.01)
    assert notes == [f"resampled the prediction onto the reference's grid (nearest neighbour; spacing 1x1x1 -> "
                     f"1.5x1.5x1.5 mm; fields of view overlap {int(100 * relation.iou)} %)"]
    thick = resample_to_spacing(pred, (1.5, 1.5, 5.0), label=True)     # ... on thick slices: borders move
    with collect_notes() as notes:
        assert evaluate_binary_images(thick, labels)["dsc"] == pytest.approx(original, abs=0.06)
    assert "spacing 1.5x1.5x5 -> 1.5x1.5x1.5 mm" in notes[0]
    # a rotated copy of the same field of view (an oblique reconstruction) is resampled as well
    centre = labels.index_to_lps((np.asarray(labels.size) - 1) / 2)
    direction = rotation_z(20) @ labels.direction
    oblique = box(labels.size, labels.spacing, centre - direction @ (np.asarray(labels.spacing) *
                                                                     (np.asarray(labels.size) - 1) / 2), direction)
    assert relate(oblique, labels).accepted and relate(oblique, labels).kind == "resample"


def test_unrelated_scans_are_refused_naming_the_overlap():
    """The issue's case: LIDC-IDRI-0001 (chest CT) against a MyoSegmenTUM lumbar MR stored at the origin."""
    lidc = image_grid(data_path("ct", "lidc-idri-0001", "vertebrae.nii.gz"))
    myo = image_grid(data_path("mr", "vertebral-bodies-myosegmentum", "01_vb.nii.gz"))
    relation = relate(lidc, myo)
    assert relation.kind == "resample" and not relation.accepted
    assert relation.iou == pytest.approx(0.071, abs=0.001) and relation.inside == pytest.approx(0.807, abs=0.001)
    with pytest.raises(InputError) as info:
        conform(lidc, myo)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the prediction and the reference do not share a grid and their fields of view overlap "
                              "by only 7 % (resampling needs 50 %, or one lying inside the other: 80 % of the smaller "
                              "lies inside the larger): are they the same scan? (the prediction: 512x512x133 voxels "
                              "of 0.703x0.703x2.5 mm")
    far = box(myo.size, myo.spacing, np.add(myo.origin, 1000.0), myo.direction)
    with pytest.raises(InputError, match="the label map and the image do not share a grid and do not overlap in space "
                                         "at all: are they the same scan"):
        conform(far, myo, what="the label map", onto="the image")


@pytest.mark.parametrize("shift, accepted", [(3, True), (4, False)])
def test_partial_overlap_on_either_side_of_the_threshold(shift, accepted):
    reference = box((10, 10, 10))
    moving = box((10, 10, 10), spacing=(1.0, 1.0, 1.01), origin=(shift, 0.0, 0.0))   # not on the lattice
    relation = relate(moving, reference)
    shared = (10 - shift) * 10 * 10
    assert relation.iou == pytest.approx(shared / (1000 + 1010 - shared), rel=1e-9)   # 0.53 / 0.43
    assert relation.accepted is accepted
    if accepted:
        assert conform(moving, reference)[0].same_grid(reference)
    else:
        with pytest.raises(InputError, match=r"overlap by only 42 %"):
            conform(moving, reference)


def test_a_crop_is_accepted_but_a_box_mostly_inside_is_not():
    whole = box((100, 100, 100))
    crop = box((20, 20, 20), spacing=(1.1, 1.1, 1.1), origin=(40, 40, 40))            # inside, 1 % of the volume
    relation = relate(crop, whole)
    assert relation.iou < 0.02 and relation.inside == pytest.approx(1.0) and relation.accepted
    assert relation.inside >= MIN_INSIDE
    sticking_out = box((20, 20, 20), spacing=(1.1, 1.1, 1.1), origin=(88, 40, 40))    # x from 87.45 to 109.45
    assert relate(sticking_out, whole).inside == pytest.approx((99.5 - 87.45) / 22, rel=1e-9)
    assert not relate(sticking_out, whole).accepted


def test_field_of_view_overlap_is_exact_for_oblique_boxes():
    cube = box((10, 10, 10), origin=(-4.5, -4.5, -4.5))                   # centred on 0, 10 mm wide
    turned = Image(cube.array, cube.spacing, rotation_z(45) @ np.asarray(cube.origin), rotation_z(45))
    iou, inside = field_of_view_overlap(turned, cube)
    # a square and itself turned by 45 degrees share a regular octagon: IoU = 1 / sqrt(2)
    assert iou == pytest.approx(1 / np.sqrt(2), rel=1e-9) and inside == pytest.approx(2 * (np.sqrt(2) - 1), rel=1e-9)
    tilted = Image(cube.array, (1.0, 1.2, 0.9), (3.0, -2.0, 1.0), rotation_z(30) @ np.array(
        [[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]]))
    rng = np.random.default_rng(0)
    points = cube.index_to_lps(rng.random((200_000, 3)) * 10 - 0.5)       # Monte Carlo over the cube
    index = tilted.lps_to_index(points)
    fraction = ((index >= -0.5) & (index <= np.asarray(tilted.size) - 0.5)).all(axis=1).mean()
    _, inside = field_of_view_overlap(tilted, cube)
    assert inside * min(1000, 1000 * 1.2 * 0.9) / 1000 == pytest.approx(fraction, abs=0.005)
    assert field_of_view_overlap(box((5, 5, 5), origin=(100, 0, 0)), cube) == (0.0, 0.0)


def test_resample_to_grid_needs_only_the_reference_geometry(lumbar):
    _, labels = lumbar
    size = np.round(np.asarray(labels.size) * 1.5).astype(int)
    grid = box(size, (1.0, 1.0, 1.0), labels.index_to_lps((-1 / 6, -1 / 6, -1 / 6)), labels.direction)  # no voxels
    out = resample_to_grid(labels, grid, label=True)
    assert out.same_grid(grid) and set(np.unique(out.array)) <= set(np.unique(labels.array))
    back = resample_to_grid(out, labels, label=True)
    assert dice(back.array > 0, labels.array > 0) > 0.9
    assert MIN_IOU == 0.5 and MIN_INSIDE == 0.95             # the documented thresholds
