"""The IIS traversal driven by an oracle "network" that answers from real reference label maps.

The traversal runs on the reference label map itself (as its image, on the model grid), so each
image patch the oracle gets is the label patch; the oracle returns the next not-yet-memorised
vertebra in traversal direction, its VerSe id and whether it is complete (<= 2 % outside the
patch, not cut by the scan's edge). What is tested is the traversal: search, following,
convergence, averaging, sliding, stop conditions, memory, output assembly -- and its pieces (patch
boxes, search order, options). The larger VerSe label maps run in the slow tier.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import data_path
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.iis.infer.assembly import assemble_output
from SpineSegLib.iis.infer.oracle import LabelMapOracle
from SpineSegLib.iis.infer.patches import axis_positions, extract_patch, make_box
from SpineSegLib.iis.infer.preprocess import ModelGrid, to_model_grid
from SpineSegLib.iis.infer.search_order import SearchOrder
from SpineSegLib.iis.infer.traversal import IISTraversal, run_traversal
from SpineSegLib.iis.infer.traversal_options import TraversalOptions
from SpineSegLib.iis.infer.traversal_records import PHASES
from SpineSegLib.iis.model.config import IISConfig

MYO = ("mr", "vertebral-bodies-myosegmentum")


def dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def label_grid(ref: Image, config: IISConfig, image: Image | None = None):
    """(ModelGrid whose image is the reference on the model grid, int label array on that grid)."""
    if image is None:  # the label map itself stands in for the image (CT scaling: labels stay distinct)
        image = ref.with_array(ref.array.astype(np.float32))
        config = IISConfig(patch_size=config.patch_size, voxel_size_mm=config.voxel_size_mm)
    grid = to_model_grid(image, config)
    lab = grid.labels(ref)
    return ModelGrid(lab.with_array(lab.array.astype(np.float32)), ref), lab.array.astype(np.int16)


def traverse(grid: ModelGrid, labels, config, oracle=None, **options):
    direction = options.get("direction", "up")
    oracle = oracle or LabelMapOracle(labels, direction=direction)
    trav = IISTraversal(grid.image, oracle, TraversalOptions(**options), patch_size=config.patch_size,
                        pad_value=-1.0, memory_channels=config.memory_channels)
    steps = list(trav.steps())
    return trav.result, steps


@pytest.fixture(scope="module")
def myo():
    """MyoSegmenTUM case 01: T2 MR with 5 lumbar vertebral bodies (1-5 = L1-L5, here as VerSe 20-24)."""
    img = read_image(data_path(*MYO, "01_img.nii.gz"))
    vb = read_image(data_path(*MYO, "01_vb.nii.gz"))
    vb = vb.with_array(np.where(vb.array > 0, vb.array + 19, 0).astype(np.uint8))
    config = IISConfig.default_mr(width=8, patch_size=(64, 64, 64))
    grid, labels = label_grid(vb, config, img)
    return vb, config, grid, labels


@pytest.fixture(scope="module")
def myo_up(myo):
    """The plain upward traversal of ``myo``: ``(result, steps)``."""
    vb, config, grid, labels = myo
    return traverse(grid, labels, config)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_every_vertebra_found_in_order(myo, direction):
    vb, config, grid, labels = myo
    result, steps = traverse(grid, labels, config, direction=direction)
    found = [int(i.label) for i in result.instances]
    assert found == ([24, 23, 22, 21, 20] if direction == "up" else [20, 21, 22, 23, 24])
    assert all(i.complete and i.in_output and not i.averaged for i in result.instances)
    assert result.stop_reason == "end of the volume"
    assembled = assemble_output(grid, result)
    assert assembled.instance_map.shape == vb.shape
    for inst in result.instances:
        assert dice(assembled.instance_map == inst.index, vb.array == int(inst.label)) > 0.99
    # memory on the model grid holds each vertebra under its traversal index
    for inst in result.instances:
        assert dice(result.memory == inst.index, labels == int(inst.label)) > 0.99

    # the steps: one per network pass plus "done"; boxes describe the patch in LPS
    assert [s.phase for s in steps][-1] == "done" and steps[-1].box is None
    assert len(steps) == result.steps + 1
    assert all(s.phase in PHASES for s in steps)
    assert sum(s.accepted is not None for s in steps) == 5
    img = grid.image
    for s in steps[:-1]:
        assert s.fragment.shape == config.patch_size
        zyx = np.asarray(s.box.centre_voxel)
        assert ((zyx >= 0) & (zyx < np.asarray(img.shape))).all()
        start_ijk = np.asarray(s.box.start_voxel[::-1], float)
        np.testing.assert_allclose(s.box.origin_lps, img.index_to_lps(start_ijk), atol=1e-6)
        np.testing.assert_allclose(np.asarray(s.box.size_mm), np.asarray(config.patch_size[::-1]) * img.spacing)
        if s.fragment.any():
            grid_sl, mask = s.fragment_on_grid()
            assert mask.sum() == s.fragment.sum()  # fragments never reach outside the volume
    progress = [s.progress for s in steps]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_plain_call_equals_stepping(myo, myo_up):
    vb, config, grid, labels = myo
    stepped, _ = myo_up
    plain = run_traversal(grid.image, LabelMapOracle(labels, "up"), TraversalOptions(), patch_size=config.patch_size)
    assert plain.steps == stepped.steps
    assert [i.label for i in plain.instances] == [i.label for i in stepped.instances]
    assert np.array_equal(plain.memory, stepped.memory)


class OscillatingOracle:
    """Shifts every answer 3 voxels left or right along x, alternately: the fragment's centre never settles."""

    def __init__(self, oracle):
        self.oracle, self.calls = oracle, 0

    def __call__(self, image_patch, memory_patch):
        prob, label, complete = self.oracle(image_patch, memory_patch)
        self.calls += 1
        return np.roll(prob, 3 if self.calls % 2 else -3, axis=-1), label, complete


def test_oscillation_ends_at_the_mean_of_the_last_two_positions(myo):
    vb, config, grid, labels = myo
    result, steps = traverse(grid, labels, config, oracle=OscillatingOracle(LabelMapOracle(labels, "up")))
    assert [int(i.label) for i in result.instances] == [24, 23, 22, 21, 20]
    first = result.instances[0]
    assert first.averaged and first.moves == 10
    assert first.evaluations == 12            # detection + 10 moves + the averaged position
    # the accepted position is the mean of the last two positions before it
    until = next(k for k, s in enumerate(steps) if s.accepted is first)
    moves = [s for s in steps[:until] if s.event in ("move",)]
    last_two = np.array([moves[-1].box.centre_voxel, moves[-2].box.centre_voxel], float)
    expected = np.floor(last_two.mean(axis=0) + 0.5).astype(int)
    assert steps[until].event == "averaged"
    assert tuple(expected) == tuple(steps[until].box.centre_voxel)
    assert abs(last_two[0, 2] - last_two[1, 2]) > 2   # it really oscillated along x


def test_gap_is_bridged_by_sliding(myo):
    vb, config, grid, labels = myo
    oracle = LabelMapOracle(labels, "up", hidden=[22])     # L3 invisible to the "network"
    result, steps = traverse(grid, labels, config, oracle=oracle)
    assert [int(i.label) for i in result.instances] == [24, 23, 21, 20]
    events = [s.event for s in steps]
    miss = events.index("next-miss")
    assert steps[miss - 1].accepted is not None and int(steps[miss - 1].accepted.label) == 23
    assert "search-hit" in events[miss + 1:]
    hit = miss + 1 + events[miss + 1:].index("search-hit")
    # the sliding window moved on in traversal direction, in the column of L4
    assert steps[hit].box.centre_voxel[0] > steps[miss].box.centre_voxel[0]


class DroppingOracle:
    """Answers "nothing" on the given calls (1-based): a fragment that vanishes while followed."""

    def __init__(self, oracle, drop):
        self.oracle, self.drop, self.calls = oracle, set(drop), 0

    def __call__(self, image_patch, memory_patch):
        self.calls += 1
        prob, label, complete = self.oracle(image_patch, memory_patch)
        if self.calls in self.drop:
            return np.zeros_like(prob), 0.0, 0.0
        return prob, label, complete


def test_a_vanishing_fragment_sends_the_traversal_back_to_searching(myo, myo_up):
    vb, config, grid, labels = myo
    plain, plain_steps = myo_up
    assert [s.event for s in plain_steps[:5]] == ["search-hit", "converged", "next-hit", "move", "converged"]
    # pass 2 (following the first hit) and pass 7 (following the second vertebra's next-hit) see nothing
    oracle = DroppingOracle(LabelMapOracle(labels, "up"), drop=[2, 7])
    result, steps = traverse(grid, labels, config, oracle=oracle)
    events = [s.event for s in steps]
    assert events.count("lost") == 2
    first_lost = events.index("lost")
    assert events[first_lost + 1].startswith("search")              # back to the initial search
    assert [int(i.label) for i in result.instances] == [24, 23, 22, 21, 20]
    assert result.steps < plain.steps + 15                          # no endless re-following


@pytest.mark.slow
def test_incomplete_vertebra_at_the_field_of_view_edge(data_dir):
    """VerSe sub-verse010 (L1-L5) cropped through L1 (top third gone): L1 goes to the memory only, or flagged with the option."""
    ref = to_canonical(read_image(data_path("masks", "verse", "sub-verse010_seg-vert_msk.nii.gz"))).image
    z_l1 = np.nonzero((ref.array == 20).any(axis=(1, 2)))[0]
    top = int(z_l1.min() + 0.7 * (z_l1.max() - z_l1.min()))   # about 2/3 of L1 stays; L2 is untouched
    cropped = Image(ref.array[:top], ref.spacing, ref.origin, ref.direction)
    config = IISConfig(width=8, patch_size=(128, 128, 128))
    grid, labels = label_grid(cropped, config)

    result, _ = traverse(grid, labels, config)
    assert [int(i.label) for i in result.instances] == [24, 23, 22, 21, 20]
    assert [i.complete for i in result.instances] == [True, True, True, True, False]
    assert [i.in_output for i in result.instances] == [True, True, True, True, False]
    l1 = result.instances[-1]
    assert (result.memory == l1.index).sum() > 1000          # in the memory ...
    assembled = assemble_output(grid, result)
    assert not (assembled.instance_map == l1.index).any()   # ... not in the output
    assert dice(assembled.instance_map > 0, np.isin(cropped.array, [21, 22, 23, 24])) > 0.99

    kept, _ = traverse(grid, labels, config, keep_incomplete=True)
    assert [i.in_output for i in kept.instances] == [True] * 5
    assert not kept.instances[-1].complete
    assembled = assemble_output(grid, kept)
    assert dice(assembled.instance_map == kept.instances[-1].index, cropped.array == 20) > 0.99


def test_incomplete_vertebra_at_the_edge_of_a_crop(myo):
    """MyoSegmenTUM 01 cut through L1 (its top third gone): L1 goes to the memory only, or flagged with the option."""
    vb, config, grid, labels = myo
    ref = to_canonical(vb).image
    z_l1 = np.nonzero((ref.array == 20).any(axis=(1, 2)))[0]
    top = int(z_l1.min() + 0.7 * (z_l1.max() - z_l1.min()))   # L2 is untouched
    cropped = Image(ref.array[:top], ref.spacing, ref.origin, ref.direction)
    grid, labels = label_grid(cropped, config)

    result, _ = traverse(grid, labels, config)
    assert [int(i.label) for i in result.instances] == [24, 23, 22, 21, 20]
    assert [i.complete for i in result.instances] == [True, True, True, True, False]
    assert [i.in_output for i in result.instances] == [True, True, True, True, False]
    l1 = result.instances[-1]
    assert (result.memory == l1.index).sum() > 1000          # in the memory ...
    assembled = assemble_output(grid, result)
    assert not (assembled.instance_map == l1.index).any()   # ... not in the output

    kept, _ = traverse(grid, labels, config, keep_incomplete=True)
    assert [i.in_output for i in kept.instances] == [True] * 5 and not kept.instances[-1].complete
    assembled = assemble_output(grid, kept)
    assert dice(assembled.instance_map == kept.instances[-1].index, cropped.array == 20) > 0.99


def test_start_point_on_the_first_vertebra(myo, myo_up):
    """A start point on L5 (MyoSegmenTUM 01): the first pass is there, and the same vertebrae follow."""
    vb, config, grid, labels = myo
    plain, _ = myo_up
    start = grid.image.index_to_lps(plain.instances[0].centroid_voxel()[::-1])
    started, steps = traverse(grid, labels, config, start_lps=tuple(start))
    assert steps[0].found_by == "start" and steps[0].event in ("start-hit", "converged")
    assert not any(s.event.startswith("search") for s in steps[:3])
    assert [i.label for i in started.instances] == [i.label for i in plain.instances]
    with pytest.raises(InputError, match="outside the image"):
        traverse(grid, labels, config, start_lps=(5000.0, 0.0, 0.0))


@pytest.fixture(scope="module")
def verse004():
    """VerSe sub-verse004: T9-L5 (ids 16-24), 1 x 1 x 2 mm, on a 1 mm model grid."""
    ref = read_image(data_path("masks", "verse", "sub-verse004_seg-vert_msk.nii.gz"))
    config = IISConfig(width=8, patch_size=(128, 128, 128))
    grid, labels = label_grid(ref, config)
    return ref, config, grid, labels


@pytest.mark.slow
def test_thoracolumbar_ct_labels_all_found_and_mapped_back(verse004):
    ref, config, grid, labels = verse004
    result, _ = traverse(grid, labels, config)
    assert [int(i.label) for i in result.instances] == list(range(24, 15, -1))
    assert result.stop_reason == "end of the volume"
    assembled = assemble_output(grid, result)
    # a 1 x 1 x 2 mm label map resampled to 1 mm and back: Dice a little below 1
    scores = [dice(assembled.instance_map == i.index, ref.array == int(i.label)) for i in result.instances]
    assert min(scores) > 0.97, scores


def test_instance_cap_stops_the_traversal(myo):
    vb, config, grid, labels = myo
    assert TraversalOptions().max_instances == 25
    result, steps = traverse(grid, labels, config, max_instances=3)
    assert [int(i.label) for i in result.instances] == [24, 23, 22]
    assert "maximum" in result.stop_reason
    assert steps[-1].phase == "done" and steps[-2].accepted is not None


@pytest.mark.slow
def test_start_point_skips_the_search():
    """Zukic MR case 04: 7 vertebral bodies in a 381 mm field of view whose lower part holds no
    vertebra, so an upward search needs many patches; a start point on the lowest body needs none."""
    ref = read_image(data_path("mr", "vertebral-bodies-zukic", "04_vb.nii.gz"))
    config = IISConfig.default_mr(width=8, patch_size=(64, 64, 64))
    grid, labels = label_grid(ref, config)

    def oracle():
        return LabelMapOracle(labels, "up", min_visible_voxels=1000)

    plain, plain_steps = traverse(grid, labels, config, oracle=oracle())
    searched = next(k for k, s in enumerate(plain_steps) if s.event != "search-miss")
    assert searched >= 10
    lowest = plain.instances[0]
    start = grid.image.index_to_lps(lowest.centroid_voxel()[::-1])     # a point on the lowest body, LPS mm
    started, started_steps = traverse(grid, labels, config, oracle=oracle(), start_lps=tuple(start))
    assert started_steps[0].found_by == "start" and started_steps[0].event in ("start-hit", "converged")
    assert not any(s.event.startswith("search") for s in started_steps[:3])
    assert started.steps <= plain.steps - searched
    assert len(started.instances) == len(plain.instances) == 7
    assert [i.label for i in started.instances] == [i.label for i in plain.instances]

    with pytest.raises(InputError, match="outside the image"):
        traverse(grid, labels, config, oracle=oracle(), start_lps=(5000.0, 0.0, 0.0))


def test_spider_variant_discs_and_canal():
    """TPTBox cervical MR (C5-C7, discs 105-106, canal): two memory channels, three outputs."""
    folder = ("mr", "tptbox-c6")
    image = read_image(data_path(*folder, "image.nii.gz"))
    vert = read_image(data_path(*folder, "vertebrae.nii.gz")).array
    sub = read_image(data_path(*folder, "subregions.nii.gz")).array
    combined = np.where(vert >= 200, vert - 200, vert)              # endplates belong to their vertebra
    combined = np.where((combined == 0) & np.isin(sub, [60, 61]), 61, combined).astype(np.uint8)
    ref = image.with_array(combined)
    config = IISConfig.default_mr(variant="spider", width=8, patch_size=(48, 48, 48), voxel_size_mm=(1.5, 1.5, 1.5))
    grid, labels = label_grid(ref, config, image)
    oracle = LabelMapOracle(labels, "up", vertebra_ids=[5, 6, 7], disc_of={5: 105, 6: 106}, canal_id=61)
    result, _ = traverse(grid, labels, config, oracle=oracle, keep_incomplete=True,
                         start_min_label=None, accept_min_label=None)
    assert [int(i.label) for i in result.instances] == [7, 6, 5]
    by_label = {int(i.label): i for i in result.instances}
    assert by_label[7].disc_mask is None
    assembled = assemble_output(grid, result)
    for v, disc in ((6, 106), (5, 105)):
        inst = by_label[v]
        assert inst.disc_mask is not None
        assert dice(assembled.disc_map == inst.index, combined == disc) > 0.99
        assert dice(result.disc_memory == inst.index, labels == disc) > 0.99
    canal_ref = combined == 61
    assert dice(assembled.canal, canal_ref) > 0.9


def test_axis_positions_cover_the_axis():
    assert axis_positions(300, 128, 64) == [64, 128, 192, 236]
    assert axis_positions(100, 128, 64) == [50]
    for n in (129, 200, 333):
        pos = axis_positions(n, 128, 64)
        covered = np.zeros(n, bool)
        for c in pos:
            covered[max(c - 64, 0):c + 64] = True
        assert covered.all() and pos[0] - 64 == 0 and pos[-1] + 64 == n


# -- the pieces: patch boxes, search order, options ------------------------------------------------
def test_patch_box_and_padding(myo):
    """A patch at the corner of the MyoSegmenTUM model grid: geometry in LPS, padding outside the volume."""
    vb, config, grid, labels = myo
    image = grid.image
    box = make_box(image, (0, 10, 20), config.patch_size)
    assert box.start_voxel == (-32, -22, -12) and box.size_voxels == config.patch_size
    patch = extract_patch(image.array, box, -7.0)
    grid_sl, patch_sl = box.clipped(image.shape)
    assert np.array_equal(patch[patch_sl], image.array[grid_sl])
    outside = np.ones(patch.shape, bool)
    outside[patch_sl] = False
    assert outside.any() and (patch[outside] == -7.0).all()
    # the patch's own grid: its first voxel and its axes are those of the model grid
    as_image = box.image(patch)
    np.testing.assert_allclose(as_image.index_to_lps([0, 0, 0]), image.index_to_lps(box.start_voxel[::-1]), atol=1e-6)
    np.testing.assert_allclose(as_image.index_to_lps([5, 6, 7]), image.index_to_lps(np.add(box.start_voxel[::-1], [5, 6, 7])),
                               atol=1e-6)
    assert box.to_dict()["size_voxels_zyx"] == list(config.patch_size)


def test_search_order(myo):
    """Initial search: bottom level first (up), middle columns first, every voxel under some patch; sliding
    after a vertebra: only levels beyond it, in its 3 x 3 column neighbourhood."""
    vb, config, grid, labels = myo
    shape, p = grid.image.shape, config.patch_size
    step = tuple(n // 2 for n in p)
    up = SearchOrder(shape, grid.image.spacing, p, step, "up")
    positions = list(up.initial())
    covered = np.zeros(shape, bool)
    for z, y, x in positions:
        covered[max(z - p[0] // 2, 0):z + p[0] // 2, max(y - p[1] // 2, 0):y + p[1] // 2,
                max(x - p[2] // 2, 0):x + p[2] // 2] = True
    assert covered.all() and len(set(positions)) == len(positions)
    zs = [z for z, _, _ in positions]
    assert zs == sorted(zs) and zs[0] == p[0] // 2
    centre = np.array(shape[1:]) / 2.0
    first_level = [np.hypot(*(np.array(c[1:]) - centre)) for c in positions if c[0] == zs[0]]
    assert first_level == sorted(first_level)
    down = SearchOrder(shape, grid.image.spacing, p, step, "down")
    assert [z for z, _, _ in down.initial()] == sorted(zs, reverse=True)

    after = list(up.after((100, 100, 40)))
    assert all(z > 100 for z, _, _ in after) and after[0][1:] == (100, 40)
    assert len({c[1:] for c in after}) <= 9
    assert all(z < 100 for z, _, _ in down.after((100, 100, 40)))
    started = SearchOrder(shape, grid.image.spacing, p, step, "up", start=(120, 100, 40))
    assert min(z for z, _, _ in started.initial()) >= 120 - step[0] // 2


def test_options_from_a_config():
    spider = TraversalOptions.from_config(IISConfig.default_mr(variant="spider"))
    assert spider.start_min_label is None and spider.accept_min_label is None and spider.direction == "up"
    ct = TraversalOptions.from_config(IISConfig(), max_moves=None, start_min_label=None, keep_incomplete=True)
    assert ct.max_moves == 10                                # None: not given
    assert ct.start_min_label is None                        # None: off
    assert ct.accept_min_label == 0.75 and ct.keep_incomplete
    assert ct.follow_mm3 == ct.component_mm3 == IISConfig().min_fragment_mm3 / 2
    with pytest.raises(InputError, match="unknown traversal option"):
        TraversalOptions.from_config(IISConfig(), max_move=3)
    with pytest.raises(InputError, match="unknown traversal direction"):
        TraversalOptions(direction="sideways")
