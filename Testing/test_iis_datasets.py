"""IIS training data: readers, label conventions, model-grid preparation, patches, augmentation,
losses -- on the real scans and label maps in ../shared/data."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from conftest import data_path
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import read_image
from SpineSegLib.iis.train.augment import Augmenter, AugmentOptions
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.train.conventions import label_values, resolve_convention
from SpineSegLib.iis.train.discovery import find_pairs
from SpineSegLib.iis.train.prepared import prepare_case
from SpineSegLib.iis.train.readers import read_dataset, read_verse, read_verse_centroids
from SpineSegLib.iis.train.losses import fp_weight, segmentation_error, surface_distance_mm, surface_weights
from SpineSegLib.iis.train.sampling import PatchSampler, SamplingOptions, regression_target, to_example
from SpineSegLib.core.orientation import to_canonical


def mr_config(**kw):
    base = dict(voxel_size_mm=(2.0, 2.0, 2.0), patch_size=(48, 48, 32), width=8, head_width=8, pad_value=-1.5)
    base.update(kw)
    return IISConfig.default_mr(**base)


@pytest.fixture(scope="module")
def myo_cases():
    return read_dataset("myosegmentum", data_path("mr", "vertebral-bodies-myosegmentum"))


@pytest.fixture(scope="module")
def myo_prepared(myo_cases):
    return prepare_case(myo_cases[0], mr_config())


# -- readers and conventions ---------------------------------------------------------------------
def test_myosegmentum_reader_maps_1_to_5_onto_L1_to_L5(myo_cases):
    assert len(myo_cases) == 50
    case = myo_cases[0]
    assert case.case_id == "myosegmentum/01" and case.modality == "mr"
    assert case.image.name == "01_img.nii.gz" and case.label.name == "01_vb.nii.gz"
    assert case.vertebra_map() == {1: 20, 2: 21, 3: 22, 4: 23, 5: 24}


def test_prepared_myosegmentum_case_is_ordered_top_down_and_cropped_above_L1(myo_cases, myo_prepared):
    p = myo_prepared
    assert [v.name for v in p.vertebrae] == ["L1", "L2", "L3", "L4", "L5"]
    assert all(v.identified for v in p.vertebrae)
    # canonical grid: z grows superiorly, so L1 lies highest
    heights = [np.argwhere(p.instances == v.index)[:, 0].mean() for v in p.vertebrae]
    assert heights == sorted(heights, reverse=True)
    # the unlabelled T12 above L1 is padding now: in every column of L1 the scan is padding from a
    # little above L1's upper surface (a plane fitted to it + half a disc) to the top
    l1 = p.instances == 1
    gaps = []
    for y, x in zip(*np.nonzero(l1.any(axis=0))):
        top = np.nonzero(l1[:, y, x])[0].max()
        column = p.image[:, y, x]
        first = top + 1 + int(np.argmax(column[top + 1:] == -1.5))
        assert np.all(column[first:] == -1.5)
        gaps.append(first - top)
    assert min(gaps) >= 2 and np.median(gaps) <= 5          # voxels of 2 mm
    assert np.all(p.image[p.instances > 0] > -1.5)
    assert p.vertebrae[0].complete
    # same voxels as the label file on the model grid: volumes agree with the source within 15 %
    src = read_image(myo_cases[0].label).array
    for v in p.vertebrae:
        src_mm3 = np.count_nonzero(src == v.key - 19)           # 1 mm voxels
        assert abs(v.voxels * 8.0 - src_mm3) / src_mm3 < 0.15


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_zukic_ids_are_sorted_by_height_lowest_is_L5(index):
    cases = read_dataset("zukic", data_path("mr", "vertebral-bodies-zukic"))
    assert len(cases) == 17
    case = cases[index]
    lab = to_canonical(read_image(case.label)).image.array
    mapping = case.vertebra_map(lab)
    assert sorted(mapping.values()) == list(range(18, 25))          # T11 ... L5
    heights = dict(zip(mapping, (c[0] for c in ndimage.center_of_mass(lab > 0, lab, list(mapping)))))
    by_height = sorted(mapping, key=lambda v: heights[v], reverse=True)  # top first
    assert [mapping[v] for v in by_height] == list(range(18, 25))
    if index == 0:      # case 02 has its ids out of anatomical order
        assert case.case_id == "zukic/02"
        assert case.vertebra_map() == {2: 24, 1: 23, 3: 22, 4: 21, 5: 20, 6: 19, 7: 18}


def test_discs_and_tptbox_conventions():
    discs = read_dataset("discs", data_path("mr", "discs"))
    assert len(discs) == 5 and discs[0].label.name.endswith("_ivd.nii.gz")
    m = resolve_convention("discs-bottom-up:L5", [1, 2, 3, 4, 5])
    assert m.discs == {1: 24, 2: 23, 3: 22, 4: 21, 5: 20} and not m.vertebrae

    (case,) = read_dataset("tptbox", data_path("mr", "tptbox-c6"))
    p = prepare_case(case, mr_config(voxel_size_mm=(1.5, 1.5, 1.5), patch_size=(32, 32, 32), variant="spider"))
    assert [v.name for v in p.vertebrae] == ["C5", "C6", "C7"]
    # discs 105 / 106 lie below C5 / C6; endplates 205-207 count as vertebra voxels
    assert set(np.unique(p.discs)) == {0, 1, 2}
    src = read_image(case.label).array
    assert p.vertebrae[1].voxels * 1.5 ** 3 == pytest.approx(np.isin(src, [6, 206]).sum() * 1.5 ** 3, rel=0.05)
    assert not p.vertebrae[0].complete and p.vertebrae[1].complete   # C5 / C7 touch the crop's edge


VERSE_CASES = ["verse/sub-gl003_dir-ax", "verse/sub-gl017", "verse/sub-verse004", "verse/sub-verse010"]


@pytest.mark.parametrize("case_id", [pytest.param(c, marks=pytest.mark.slow) if "gl0" in c else c for c in VERSE_CASES])
def test_verse_masks_and_centroids(case_id):
    """Each centroid lies at its own vertebra (the 512 x 512 gl masks take seconds each: slow tier)."""
    cases = read_verse(data_path("masks", "verse"), require_images=False)
    assert sorted(c.case_id for c in cases) == VERSE_CASES
    for case in [c for c in cases if c.case_id == case_id]:
        mask = read_image(case.label)
        ids = label_values(mask.array)
        assert case.vertebra_map(mask.array) == {i: i for i in ids}
        assert set(case.load_centroids(mask)) == set(ids)
        centres = ndimage.center_of_mass(mask.array > 0, mask.array, ids)
        com = {i: mask.index_to_lps(np.asarray(c)[::-1]) for i, c in zip(ids, centres)}
        for label, lps in case.centroids.items():
            # each centroid (of the vertebral body; for the ring-shaped C1 its centre) is nearest to
            # its own vertebra's centre of mass, within 20 mm of it (spinous processes pull the latter back)
            dist = {i: np.linalg.norm(np.asarray(lps) - c) for i, c in com.items()}
            assert min(dist, key=dist.get) == label and dist[label] < 20.0, (case.case_id, label, dist[label])
        # anatomical order: centroids descend (LPS z) from the first to the last vertebra
        z = [case.centroids[i][2] for i in ids]
        assert z == sorted(z, reverse=True)


def test_verse_centroids_in_another_axis_order_are_reoriented(tmp_path):
    mask_path = data_path("masks", "verse", "sub-verse010_seg-vert_msk.nii.gz")
    mask = read_image(mask_path)            # PIR
    original = json.loads(data_path("masks", "verse", "sub-verse010_seg-subreg_ctd.json").read_text(encoding="utf-8"))
    # the same centroids written in (A, S, R) axes: flip the first two axes
    flipped = [{"direction": ["A", "S", "R"]}] + [
        {"label": e["label"], "X": mask.size[0] - 1 - e["X"], "Y": mask.size[1] - 1 - e["Y"], "Z": e["Z"]}
        for e in original[1:]]
    p = tmp_path / "ctd.json"
    p.write_text(json.dumps(flipped))
    a = read_verse_centroids(data_path("masks", "verse", "sub-verse010_seg-subreg_ctd.json"), mask)
    b = read_verse_centroids(p, mask)
    for label in a:
        np.testing.assert_allclose(a[label], b[label], atol=1e-6)


def test_verse_without_images_is_a_clear_error():
    with pytest.raises(InputError, match="without \\*_ct.nii.gz images"):
        read_verse(data_path("masks", "verse"))


def test_regression_target_mapping():
    assert regression_target(1) == 1.0 and regression_target(19) == 19.0 and regression_target(24) == 24.0
    assert regression_target(28) == 19.5       # T13 between T12 and L1
    assert regression_target(25) == 24.5       # L6 below L5
    with pytest.raises(ValueError):
        regression_target(26)                  # the sacrum is not a target


# -- folder layouts (links to the real files) ------------------------------------------------------
def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def test_generic_folder_pairing_rules(tmp_path):
    myo = data_path("mr", "vertebral-bodies-myosegmentum")
    # nnU-Net
    nn = tmp_path / "nnunet"
    for n in ("01", "02"):
        _link(myo / f"{n}_img.nii.gz", nn / "imagesTr" / f"spine_{n}_0000.nii.gz")
        _link(myo / f"{n}_vb.nii.gz", nn / "labelsTr" / f"spine_{n}.nii.gz")
    _link(myo / "03_img.nii.gz", nn / "imagesTs" / "spine_03_0000.nii.gz")   # no label: not a pair
    assert [(n, i.name, l.name) for n, i, l in find_pairs(nn)] == [
        ("spine_01", "spine_01_0000.nii.gz", "spine_01.nii.gz"), ("spine_02", "spine_02_0000.nii.gz", "spine_02.nii.gz")]
    # images/ + labels/
    il = tmp_path / "il"
    _link(myo / "01_img.nii.gz", il / "images" / "a.nii.gz")
    _link(myo / "01_vb.nii.gz", il / "labels" / "a.nii.gz")
    assert [n for n, _, _ in find_pairs(il)] == ["a"]
    # flat X_img + X_label / X_seg
    flat = tmp_path / "flat"
    _link(myo / "01_img.nii.gz", flat / "x_img.nii.gz")
    _link(myo / "01_vb.nii.gz", flat / "x_label.nii.gz")
    _link(myo / "02_img.nii.gz", flat / "y.nii.gz")
    _link(myo / "02_vb.nii.gz", flat / "y_seg.nii.gz")
    assert [(n, i.name, l.name) for n, i, l in find_pairs(flat)] == [("x", "x_img.nii.gz", "x_label.nii.gz"),
                                                                    ("y", "y.nii.gz", "y_seg.nii.gz")]
    # one folder per case (the shared CT layout)
    names = [n for n, _, _ in find_pairs(data_path("ct"))]
    assert {"lidc-idri-0001", "totalseg-example-3mm", "tptbox-l3"} <= set(names)
    cases = read_dataset("folder", flat, convention="top-down:L1", modality="mr")
    assert cases[0].case_id == "flat/x" and cases[0].vertebra_map(np.arange(6).reshape(6, 1, 1))[5] == 24


def test_ctspine1k_layout(tmp_path):
    lidc = data_path("ct", "lidc-idri-0001")
    _link(lidc / "image.nii.gz", tmp_path / "data" / "colon" / "1.3.6.1.4.1.9328.50.4.0001.nii.gz")
    _link(lidc / "vertebrae.nii.gz", tmp_path / "label" / "conlon" / "1.3.6.1.4.1.9328.50.4.0001_seg.nii.gz")
    _link(lidc / "image.nii.gz", tmp_path / "data" / "liver" / "liver_0.nii.gz")     # no label
    (case,) = read_dataset("ctspine1k", tmp_path)
    assert case.case_id == "ctspine1k/1.3.6.1.4.1.9328.50.4.0001" and case.convention == "verse"
    assert case.note == "subset colon" and case.modality == "ct"
    assert resolve_convention("verse", [20, 25, 26]).vertebrae == {20: 20, 25: 25}   # 25 = L6; sacrum is background


def test_spider_layout_numbered_bottom_up(tmp_path, myo_cases):
    """MyoSegmenTUM case 01 rewritten in SPIDER's numbering (1 = L5 ... 5 = L1, canal 100, discs 200 + k)
    comes back with the same vertebrae."""
    src = sitk.ReadImage(str(myo_cases[0].label))
    arr = sitk.GetArrayFromImage(src)
    spider = np.zeros_like(arr)
    for k in range(1, 6):
        spider[arr == k] = 6 - k
    out = sitk.GetImageFromArray(spider)
    out.CopyInformation(src)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    sitk.WriteImage(sitk.ReadImage(str(myo_cases[0].image)), str(tmp_path / "images" / "1_t2.mha"))
    sitk.WriteImage(out, str(tmp_path / "masks" / "1_t2.mha"))
    (case,) = read_dataset("spider", tmp_path)
    assert case.case_id == "spider/1_t2" and case.convention == "spider:L5"
    p = prepare_case(case, mr_config())
    assert [v.name for v in p.vertebrae] == ["L1", "L2", "L3", "L4", "L5"]
    (relative,) = read_dataset("spider", tmp_path, lowest=None)
    q = prepare_case(relative, mr_config())
    assert not any(v.identified for v in q.vertebrae)
    assert [v.voxels for v in q.vertebrae] == [v.voxels for v in p.vertebrae]   # same order, top down
    m = resolve_convention("spider:L5", [1, 2, 100, 201, 202])
    assert m.vertebrae == {1: 24, 2: 23} and m.discs == {201: 24, 202: 23} and m.canal == (100,)


def test_bad_folders_give_one_clear_error(tmp_path, myo_cases):
    with pytest.raises(InputError, match="dataset folder not found"):
        read_dataset("myosegmentum", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image/label pairs found"):
        read_dataset("folder", tmp_path / "empty")
    with pytest.raises(InputError, match="unknown dataset kind"):
        read_dataset("kaggle", tmp_path)
    with pytest.raises(InputError, match="unknown label convention"):
        read_dataset("folder", data_path("mr", "discs"), convention="random")
    amb = tmp_path / "ambiguous"
    myo = data_path("mr", "vertebral-bodies-myosegmentum")
    _link(myo / "01_img.nii.gz", amb / "a_img.nii.gz")
    _link(myo / "01_vb.nii.gz", amb / "a_seg.nii.gz")
    _link(myo / "01_vb.nii.gz", amb / "a_mask.nii.gz")
    with pytest.raises(InputError, match="several label files"):
        find_pairs(amb)
    # a label map on another grid than its image
    mismatch = tmp_path / "mismatch"
    _link(myo / "01_img.nii.gz", mismatch / "a_img.nii.gz")
    _link(data_path("mr", "discs", "11_ivd.nii.gz"), mismatch / "a_label.nii.gz")
    (case,) = read_dataset("folder", mismatch, convention="top-down:L1", modality="mr")
    with pytest.raises(InputError, match="label grid .* does not match the image grid"):
        prepare_case(case, mr_config())


def test_prepared_cases_are_cached_and_memory_mapped(tmp_path, myo_cases, myo_prepared):
    a = prepare_case(myo_cases[0], mr_config(), cache_dir=tmp_path)
    b = prepare_case(myo_cases[0], mr_config(), cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    assert isinstance(b.instances, np.memmap)
    np.testing.assert_array_equal(b.instances, myo_prepared.instances)
    np.testing.assert_allclose(b.image, myo_prepared.image, atol=2e-3)      # float16 on disk
    assert [v.bbox for v in a.vertebrae] == [v.bbox for v in myo_prepared.vertebrae]


# -- patches -----------------------------------------------------------------------------------
def _weights(config):
    return lambda m: surface_weights(m, config.voxel_size_mm)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_patch_memory_holds_the_vertebrae_before_the_target(myo_prepared, direction):
    config = mr_config(direction=direction)
    sampler = PatchSampler([myo_prepared], config, SamplingOptions(empty_fraction=0.0, centre_margin_mm=16))
    seen = set()
    for seed in range(40):
        s = sampler.sample(np.random.default_rng(seed))
        t = s.target_index
        seen.add(t)
        assert t > 0
        present = set(int(i) for i in np.unique(s.instances) if i)
        before = {i for i in present if (i > t if direction == "up" else i < t)}
        assert set(s.memory_indices) == before
        need = min(1000 / 8.0, 0.5 * myo_prepared.vertebrae[t - 1].voxels)
        assert np.count_nonzero(s.instances == t) >= need
        assert s.label_target == 19 + t                  # L1 = 20 ...
        ex = to_example(s, config, sampler.options, _weights(config))
        np.testing.assert_array_equal(ex.inputs[1] > 0, np.isin(s.instances, list(before)))
        np.testing.assert_array_equal(ex.targets[0] > 0, s.instances == t)
        inside = s.target_voxels_before / myo_prepared.vertebrae[t - 1].voxels
        assert ex.complete == float(inside >= 0.98)
        assert ex.weights[0].max() == pytest.approx(1 + 8 * np.exp(-4 / 36)) and ex.weights[0].min() >= 1.0
    assert seen == {1, 2, 3, 4, 5}


def test_empty_patches_remember_everything_and_pad_outside(myo_prepared):
    config = mr_config()
    sampler = PatchSampler([myo_prepared], config, SamplingOptions(empty_fraction=1.0))
    s = sampler.patch_at(myo_prepared, (0, 0, 0), 0)            # a corner: 7/8 of the patch is outside
    assert s.target_index == 0 and s.label_target == 0.0
    assert np.all(s.image[:24, :24, :16] == config.pad_value)
    ex = to_example(sampler.sample(np.random.default_rng(3)), config, sampler.options, _weights(config))
    assert ex.targets.sum() == 0 and ex.label == 0.0 and ex.complete == 0.0 and np.all(ex.weights == 1.0)


def test_spider_variant_patches_carry_discs():
    """TPTBox C5-C7 (discs 105 / 106 below C5 / C6): the disc below the target is a target, the discs
    of the vertebrae in memory are in the disc memory."""
    (case,) = read_dataset("tptbox", data_path("mr", "tptbox-c6"))
    config = mr_config(voxel_size_mm=(1.5, 1.5, 1.5), patch_size=(32, 32, 32), variant="spider")
    p = prepare_case(case, config)
    sampler = PatchSampler([p], config, SamplingOptions(empty_fraction=0.0))
    centre = tuple(int(c) for c in np.argwhere(p.instances == 2).mean(axis=0))     # at C6, target C5
    s = sampler.patch_at(p, centre, 1)
    assert 2 in s.memory_indices and set(s.memory_indices) <= {2, 3}
    ex = to_example(s, config, sampler.options, _weights(config))
    assert ex.inputs.shape == (3, 32, 32, 32) and ex.targets.shape == (3, 32, 32, 32)
    np.testing.assert_array_equal(ex.targets[1] > 0, s.discs == 1)                     # C5/C6 disc
    np.testing.assert_array_equal(ex.inputs[2] > 0, np.isin(s.discs, s.memory_indices))  # C6/C7 disc
    assert ex.targets[1].sum() > 0 and ex.inputs[2].sum() > 0
    assert ex.targets[2].sum() == 0        # no spinal canal labelled in this case


# -- augmentation --------------------------------------------------------------------------------
def test_crop_cuts_the_target_and_makes_it_incomplete(myo_prepared):
    config = mr_config()
    sampler = PatchSampler([myo_prepared], config, SamplingOptions(empty_fraction=0.0))
    aug = Augmenter(config, AugmentOptions(noise=0, blur=0, elastic=0, crop=1.0, crop_max_fraction=0.5))
    cut = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        s = sampler.target_patch(myo_prepared, 3, rng)           # L3, complete in the scan
        before = s.target_voxels_before
        aug(s, rng)
        top = s.augmentations[-1] == "crop-top"
        rows = np.nonzero(np.all(s.image == config.pad_value, axis=(1, 2)))[0]
        assert rows.size and (rows.max() == 47 if top else rows.min() == 0)
        after = np.count_nonzero(s.instances == 3)
        assert s.crop_retained == pytest.approx(after / before)
        ex = to_example(s, config, sampler.options, _weights(config))
        if after < 0.98 * before:
            cut += 1
            assert ex.complete == 0.0
    assert cut >= 5


def test_elastic_moves_image_and_labels_together(myo_prepared):
    config = mr_config()
    sampler = PatchSampler([myo_prepared], config, SamplingOptions(empty_fraction=0.0))
    aug = Augmenter(config, AugmentOptions(elastic_rms_mm=(2.0, 2.0), elastic_sigma_mm=(12.0, 12.0)))
    rng = np.random.default_rng(0)
    field = aug.displacement((48, 48, 32), rng)
    rms_mm = np.sqrt(np.mean((field * 2.0) ** 2))
    assert rms_mm == pytest.approx(2.0, rel=1e-3)
    s = sampler.target_patch(myo_prepared, 2, np.random.default_rng(1))
    image_before = s.image.copy()
    inst_before = s.instances.copy()
    aug.elastic(s, np.random.default_rng(2))
    assert not np.array_equal(s.image, image_before)
    # the vertebral bodies stay where the (warped) bright-and-dark pattern says: warped labels agree
    # with the labels before far better than a shifted copy would
    overlap = np.count_nonzero((s.instances == 2) & (inst_before == 2)) / np.count_nonzero(inst_before == 2)
    assert 0.6 < overlap < 1.0
    assert set(np.unique(s.instances)) <= set(np.unique(inst_before))


def test_noise_and_blur_leave_padding_alone(myo_prepared):
    config = mr_config()
    sampler = PatchSampler([myo_prepared], config, SamplingOptions(empty_fraction=1.0))
    s = sampler.patch_at(myo_prepared, (100, 56, 19), 0)     # reaches above the cropped top
    pad = s.image == config.pad_value
    assert pad.any() and not pad.all()
    aug = Augmenter(config, AugmentOptions())
    aug.noise(s, np.random.default_rng(0))
    assert np.all(s.image[pad] == config.pad_value)
    aug.options.blur_sigma_voxels = 3.0
    aug.blur(s, np.random.default_rng(1))
    assert np.all(s.image[pad] == config.pad_value)
    assert aug.noise_std == pytest.approx(0.068, abs=0.001)


# -- losses --------------------------------------------------------------------------------------
def test_fp_weight_schedule():
    assert fp_weight(0, 1000) == pytest.approx(0.1 + 0.9 / (1 + np.exp(5)))
    assert fp_weight(500, 1000) == pytest.approx(0.55)
    assert fp_weight(1000, 1000) > 0.99
    assert fp_weight(500, 1000, lambda_min=1.0) == 1.0


def test_surface_weights_on_a_real_vertebra(myo_prepared):
    mask = myo_prepared.instances == 3
    d = surface_distance_mm(mask, (2.0, 2.0, 2.0))
    w = surface_weights(mask, (2.0, 2.0, 2.0))
    boundary = mask & ~np.pad(mask, 1)[2:, 1:-1, 1:-1]        # voxels whose upper neighbour is outside
    assert np.all(d[boundary] == 2.0)                           # one voxel (2 mm) to the background
    assert w[boundary] == pytest.approx(1 + 8 * np.exp(-4 / 36), abs=1e-5)
    far = d > 30
    assert np.allclose(w[far], 1.0, atol=1e-6)
    assert np.all(surface_weights(np.zeros((4, 4, 4), bool), (1, 1, 1)) == 1.0)


def test_segmentation_error_counts_weighted_cm3():
    import torch

    t = torch.zeros(1, 1, 10, 10, 10)
    t[0, 0, 2:6, 2:6, 2:6] = 1
    w = torch.ones_like(t)
    perfect = (t * 2 - 1) * 50                  # logits: sigmoid = 1 inside, 0 outside
    assert float(segmentation_error(perfect, t, w, 1.0, 8.0)) == pytest.approx(0.0, abs=1e-9)
    empty = torch.full_like(t, -50.0)
    # 64 missed voxels of 8 mm^3 = 0.512 cm^3
    assert float(segmentation_error(empty, t, w, 1.0, 8.0)) == pytest.approx(0.512, rel=1e-6)
    everything = torch.full_like(t, 50.0)
    # 936 false positives weighted by lambda 0.5
    assert float(segmentation_error(everything, t, w, 0.5, 8.0)) == pytest.approx(0.5 * 936 * 8 / 1000, rel=1e-6)
