"""IIS inference end to end on real scans (crops; the whole scan in the slow tier) with tiny torch
models, the CLI (``spineseg iis``, ``spineseg speed``), and bad input.

The tiny models have random weights except their output layers, which are set so that the
network's answers are known: ``seg_bias > 0`` marks every voxel of every patch as the next
vertebra (the traversal then tiles the volume with patch-sized "vertebrae"), ``seg_bias < 0``
sees nothing. That exercises the real torch path (autocast, channels-last, devices), the
traversal, the mapping back onto the input grid and the labelling without a trained model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, data_path
from SpineSegLib.cli import main
from SpineSegLib.core.errors import InputError, NoSpineFoundError, OutputExistsError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.iis.infer.assembly import CANAL_LABEL, peel_dark_surface, probability_on_source
from SpineSegLib.iis.infer.checks import check_extent, guess_modality, start_point_from_centerline
from SpineSegLib.iis.infer.predictor import FallbackPredictor, TorchPredictor, default_precision
from SpineSegLib.iis.infer.run import IISRun, segment_vertebrae
from SpineSegLib.iis.model.checkpoint import save_checkpoint
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.model.device import cpu_has_bf16, resolve_device
from SpineSegLib.iis.model.network import IISNet

torch.set_num_threads(2)


def tiny_net(modality="ct", seg_bias=8.0, label=20.0, completeness=8.0, seed=0, patch=16, voxel_mm=4.0) -> IISNet:
    kw = dict(width=4, levels=2, head_width=4, patch_size=(patch,) * 3, voxel_size_mm=(voxel_mm,) * 3)
    config = IISConfig(**kw) if modality == "ct" else IISConfig.default_mr(**kw)
    torch.manual_seed(seed)
    net = IISNet(config)
    with torch.no_grad():
        if seg_bias is not None:
            net.segmentation_head.weight.zero_()
            net.segmentation_head.bias.fill_(seg_bias)
        net.label_head.dense.weight.zero_()
        net.label_head.dense.bias.fill_(label)
        net.completeness_head.dense.weight.zero_()
        net.completeness_head.dense.bias.fill_(completeness)
    return net.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    # "blind" searches the whole volume in vain: large patches keep that search to a few passes
    for name, kw in {"ct": {}, "mr": {"modality": "mr"},
                     "blind": {"seg_bias": -8.0, "patch": 32, "voxel_mm": 8.0}}.items():
        paths[name] = save_checkpoint(folder / f"{name}.pt", tiny_net(**kw), {"purpose": "test"})
    return paths


def crop(image: Image, k, j, i) -> Image:
    """``image[k0:k1, j0:j1, i0:i1]`` with its geometry."""
    return Image(image.array[k[0]:k[1], j[0]:j[1], i[0]:i[1]], image.spacing, image.index_to_lps([i[0], j[0], k[0]]),
                 image.direction)


@pytest.fixture(scope="module")
def abdomen():
    """TotalSegmentator's abdominal example CT at 3 mm (RAS-oriented file)."""
    return read_image(data_path("ct", "totalseg-example-3mm", "image.nii.gz"))


@pytest.fixture(scope="session")
def abdomen_crop():
    """180 mm cube of the abdominal example CT around the spine (T10-L1), a fifth of the scan."""
    return crop(read_image(data_path("ct", "totalseg-example-3mm", "image.nii.gz")), (40, 100), (5, 65), (30, 90))


@pytest.fixture(scope="session")
def abdomen_crop_file(abdomen_crop, tmp_path_factory):
    return write_image(abdomen_crop, tmp_path_factory.mktemp("abdomen") / "crop.nii.gz")


@pytest.fixture(scope="module", params=["crop", pytest.param("full", marks=pytest.mark.slow)])
def ct_run(request, models):
    """``(image, result, steps)`` of the all-positive tiny model on the abdomen crop (fast) or the whole scan (slow)."""
    image = request.getfixturevalue("abdomen_crop" if request.param == "crop" else "abdomen")
    steps = []
    result = segment_vertebrae(image, models["ct"], device="cpu", steps_callback=steps.append)
    return image, result, steps


def test_end_to_end_geometry_and_records(ct_run):
    abdomen, result, steps = ct_run
    assert result.labels.same_grid(abdomen) and result.labels.array.dtype == np.uint8
    out = [r for r in result.instances if r.in_output]
    assert out, "the all-positive model must produce vertebrae"
    ids = set(np.unique(result.labels.array)) - {0}
    assert ids == {r.id for r in out}
    for r in out:
        count = int((result.labels.array == r.id).sum())
        assert r.volume_ml == pytest.approx(count * abdomen.voxel_volume_mm3 / 1000.0)
        i0, j0, k0, i1, j1, k1 = r.bbox_ijk
        ijk = abdomen.lps_to_index(r.centre_lps)
        assert i0 - 0.5 <= ijk[0] <= i1 + 0.5 and j0 - 0.5 <= ijk[1] <= j1 + 0.5 and k0 - 0.5 <= ijk[2] <= k1 + 0.5
    assert len({r.id for r in result.instances}) == len(result.instances)   # one id per vertebra
    # the steps: live objects to the callback, plain dicts in the log; every patch overlaps the volume
    assert len(steps) == len(result.steps) == result.network_passes + 1
    extent_lo = np.min(abdomen.index_to_lps(np.array([[0, 0, 0], np.array(abdomen.size) - 1])), axis=0) - 1
    extent_hi = np.max(abdomen.index_to_lps(np.array([[0, 0, 0], np.array(abdomen.size) - 1])), axis=0) + 1
    for s in steps[:-1]:
        centre = np.asarray(s.box.centre_lps)
        assert (centre >= extent_lo).all() and (centre <= extent_hi).all()
        assert s.memory.shape == steps[0].memory.shape
    assert steps[-1].phase == "done"
    for key in ("preprocess", "traversal", "network", "assemble", "total"):
        assert result.timings[key] >= 0
    assert result.timings["network"] <= result.timings["traversal"] <= result.timings["total"]
    assert result.device.startswith("cpu")


def test_stepping_a_run_then_finishing_equals_one_call(models, ct_run):
    abdomen, reference, _ = ct_run
    run = IISRun(abdomen, models["ct"], device="cpu")
    steps = run.steps()
    first = [next(steps) for _ in range(3)]
    assert [s.index for s in first] == [1, 2, 3] and first[0].box is not None
    result = run.finish()
    assert run.finish() is result
    assert np.array_equal(result.labels.array, reference.labels.array)
    assert result.network_passes == reference.network_passes


def test_table_files(ct_run, tmp_path):
    """The per-vertebra table: tabs for .tsv, commas for .csv, one row per vertebra found; no silent overwrite."""
    _, result, _ = ct_run
    tsv, csv_path = result.write_table(tmp_path / "v.tsv"), result.write_table(tmp_path / "sub" / "v.csv")
    rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()]
    assert rows[0][:3] == ["id", "name", "complete"] and len(rows) == len(result.instances) + 1
    assert [r[1] for r in rows[1:]] == [r.name for r in result.instances]
    assert csv_path.read_text(encoding="utf-8").splitlines()[0].startswith("id,name,complete,")
    with pytest.raises(OutputExistsError, match="exists"):
        result.write_table(tsv)
    before = tsv.read_text(encoding="utf-8")
    result.write_table(tsv, force=True)
    assert tsv.read_text(encoding="utf-8") == before and sorted(p.name for p in tmp_path.iterdir()) == ["sub", "v.tsv"]


def test_precision_and_layout_agree():
    net = tiny_net(seg_bias=None, seed=1)                      # random segmentation layers
    rng = np.random.default_rng(0)
    image = rng.normal(size=(16, 16, 16)).astype(np.float32)
    memory = (rng.random((1, 16, 16, 16)) > 0.8).astype(np.float32)
    fp32 = TorchPredictor(net, net.config, "cpu", "fp32", channels_last=False)(image, memory)
    for precision, cl in (("fp32", True), ("bf16", False), ("bf16", True)):
        prob, label, completeness = TorchPredictor(net, net.config, "cpu", precision, channels_last=cl)(image, memory)
        assert prob.shape == (1, 16, 16, 16) and prob.dtype == np.float32
        assert np.abs(prob - fp32[0]).max() < (1e-5 if precision == "fp32" else 0.03)
        assert label == pytest.approx(fp32[1], abs=0.2) and completeness == pytest.approx(fp32[2], abs=0.02)
    assert default_precision(torch.device("cpu")) == ("bf16" if cpu_has_bf16() else "fp32")
    with pytest.raises(InputError, match="fp16"):
        TorchPredictor(net, net.config, "cpu", "fp16")


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")


def test_out_of_memory_falls_back_to_the_cpu(ct_run):
    abdomen, reference, _ = ct_run
    net = tiny_net()
    calls = {"n": 0}

    def gpu_that_runs_out(image_patch, memory_patch):
        calls["n"] += 1
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    messages = []
    predict = FallbackPredictor(gpu_that_runs_out, lambda: TorchPredictor(net, net.config, "cpu"), messages.append)
    result = segment_vertebrae(abdomen, (net, net.config), predict=predict)
    assert calls["n"] == 1 and predict.fell_back
    assert len(messages) == 1 and "out of memory" in messages[0] and "CPU" in messages[0]
    assert np.array_equal(result.labels.array, reference.labels.array)
    assert result.network_passes == reference.network_passes


def test_cancel_through_progress(abdomen_crop, models):
    progress = Progress()
    seen = []

    def cancel_after_three(step):
        seen.append(step)
        if len(seen) == 3:
            progress.cancel()

    with pytest.raises(Cancelled):
        segment_vertebrae(abdomen_crop, models["ct"], device="cpu", progress=progress, steps_callback=cancel_after_three)
    assert len(seen) == 3


def test_modality_guess_on_real_scans():
    for path in (("ct", "lidc-idri-0001", "image.nii.gz"), ("ct", "tptbox-l3", "image.nii.gz"),
                 ("ct", "totalseg-example-3mm", "image.nii.gz")):
        assert guess_modality(read_image(data_path(*path)))[0] == "ct", path
    for path in (("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz"), ("mr", "tptbox-c6", "image.nii.gz"),
                 ("mr", "vertebral-bodies-zukic", "02_img.nii.gz")):
        assert guess_modality(read_image(data_path(*path)))[0] == "mr", path


def test_wrong_modality_and_override(abdomen_crop, models):
    with pytest.raises(InputError, match="MR model, but the input is CT.*no-modality-check"):
        segment_vertebrae(abdomen_crop, models["mr"], device="cpu")
    # the lumbar part of a sagittal T2 scan (MyoSegmenTUM 01: 224 x 224 x 77 mm)
    mr = crop(read_image(data_path("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz")), (60, 160), (60, 160), (0, 77))
    with pytest.raises(InputError, match="CT model, but the input is MR"):
        segment_vertebrae(mr, models["ct"], device="cpu")
    result = segment_vertebrae(mr, models["ct"], device="cpu", check_modality=False)
    assert result.labels.same_grid(mr)


def test_bad_model_files(abdomen_crop, tmp_path):
    with pytest.raises(InputError, match="not found"):
        segment_vertebrae(abdomen_crop, tmp_path / "missing.pt")
    nifti = data_path("ct", "totalseg-example-3mm", "vertebrae.nii.gz")
    with pytest.raises(InputError, match="not a SpineSeg IIS weights file"):
        segment_vertebrae(abdomen_crop, nifti)


def test_too_small_image(abdomen):
    thin = Image(abdomen.array[:, :, :5], abdomen.spacing, abdomen.origin, abdomen.direction)   # 5 x 3 mm
    with pytest.raises(InputError, match=r"15\.0 x 303\.0 x 336\.0 mm.*at least 30 mm"):
        check_extent(thin)
    with pytest.raises(InputError, match="too small"):
        segment_vertebrae(thin, (tiny_net(), tiny_net().config))


def test_small_image_is_padded(models):
    """A CT crop (L3 region, 110 x 70 x 110 mm) is smaller than the tiny model's grid needs on one
    axis after resampling: patches are padded and the output still lands on the input grid."""
    crop = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    net = tiny_net()
    net.config.patch_size = (32, 32, 32)                        # 128 mm: larger than the crop
    result = segment_vertebrae(crop, (net, net.config), device="cpu")
    assert result.labels.same_grid(crop)
    first = result.steps[0]["box"]
    assert first["start_voxel_zyx"][1] < 0                       # the patch reaches beyond the scan


def bone_predictor(image_patch, memory_patch):
    """Everything above 200 HU (normalised CT: HU / 1000) is 'the next vertebra'."""
    prob = ((image_patch > 0.2) & (memory_patch[0] == 0)).astype(np.float32)
    return prob, 20.0, 1.0


def test_no_spine_in_an_air_crop(models):
    ct = read_image(data_path("ct", "lidc-idri-0001", "image.nii.gz"))
    air = Image(ct.array[30:110, 0:45, 180:330], ct.spacing, ct.index_to_lps([180, 0, 30]), ct.direction)
    assert air.array.max() < -700
    with pytest.raises(NoSpineFoundError, match="no vertebra found"):
        segment_vertebrae(air, models["ct"], predict=bone_predictor)
    # the same predictor does find bone in a real CT crop
    bone = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    assert segment_vertebrae(bone, models["ct"], predict=bone_predictor).instances


def test_peeling_dark_surface_voxels():
    """TPTBox L3 crop: the reference L3 grown by 2 voxels picks up soft tissue and disc; peeling
    voxels below 200 HU from its surface brings it back towards the reference."""
    from scipy import ndimage

    ct = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    ref = read_image(data_path("ct", "tptbox-l3", "vertebrae.nii.gz")).array == 22
    grown = ndimage.binary_dilation(ref, iterations=2)
    spacing = tuple(reversed(ct.spacing))
    peeled = peel_dark_surface(grown, ct.array, spacing, 200.0, depth_mm=2.0 * max(spacing))

    def dsc(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    assert dsc(peeled, ref) > dsc(grown, ref) + 0.05
    assert not (grown & ~peeled & (ct.array >= 200)).any()        # bright voxels are never peeled
    assert (peeled <= grown).all()
    assert np.array_equal(peel_dark_surface(ref, np.full(ref.shape, 500.0), spacing), ref)


def test_probability_maps_back_onto_the_source_grid():
    """TPTBox L3 crop (1.5 mm): L3 resampled to a 2 mm model grid, cropped there as a probability map and
    mapped back lands on the reference (linear interpolation, 0.5) inside the slices it returns."""
    from SpineSegLib.iis.infer.preprocess import to_model_grid

    ct = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    ref = read_image(data_path("ct", "tptbox-l3", "vertebrae.nii.gz")).array == 22
    grid = to_model_grid(ct, IISConfig(voxel_size_mm=(2.0, 2.0, 2.0))).image
    on_grid = to_model_grid(ct.with_array(ref.astype(np.float32)), IISConfig(
        voxel_size_mm=(2.0, 2.0, 2.0), intensity={"kind": "ct", "low": 0.0, "high": 1.0, "scale": 1.0})).image.array
    idx = np.nonzero(on_grid >= 0.5)
    lo = [int(i.min()) - 2 for i in idx]
    box = tuple(slice(max(a, 0), int(i.max()) + 3) for a, i in zip(lo, idx))
    slices, mask = probability_on_source(grid, [b.start for b in box], on_grid[box], ct)
    mapped = np.zeros(ct.shape, bool)
    mapped[slices] = mask
    assert 2 * (mapped & ref).sum() / (mapped.sum() + ref.sum()) > 0.9
    assert mask.shape == mapped[slices].shape and ref[slices].sum() == ref.sum()   # the slices hold all of L3
    # a crop wholly outside the source maps onto nothing
    far = probability_on_source(grid, (500, 500, 500), on_grid[box], ct)
    assert far[1].size == 0


def test_start_point_from_centerline():
    pts = [(0, 0, -400.0), (1, 2, -300.0), (2, 1, -350.0)]
    assert start_point_from_centerline(pts, "up") == (0.0, 0.0, -400.0)
    assert start_point_from_centerline(pts, "down") == (1.0, 2.0, -300.0)


def test_centerline_start_falls_back_to_searching(models):
    """Where the classical pipeline finds no spine (a CT crop whose bone was blanked), IIS says so and searches."""
    crop = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    blanked = crop.with_array(np.where(crop.array > 150, 40, crop.array).astype(crop.array.dtype))
    result = segment_vertebrae(blanked, models["ct"], device="cpu", start_point_lps="centerline")
    assert any("classical centerline" in w and "searching instead" in w for w in result.warnings)
    assert not result.steps or result.steps[0]["found_by"] != "start"
    mr = read_image(data_path("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz"))
    with pytest.raises(InputError, match="needs a CT"):
        segment_vertebrae(mr, models["mr"], start_point_lps="centerline")


def test_direction_must_match_the_model(abdomen_crop, models):
    with pytest.raises(InputError, match="trained to traverse the spine upwards"):
        segment_vertebrae(abdomen_crop, models["ct"], direction="down")


class ScaledLabelOracle:
    """The label-map oracle behind ``segment_vertebrae``: the "image" is a label map whose CT
    normalisation (value / 1000) is undone here, so every image patch is a label patch."""

    def __init__(self, labels_on_grid, **kw):
        from SpineSegLib.iis.infer.oracle import LabelMapOracle

        self.oracle = LabelMapOracle(labels_on_grid, **kw)

    def __call__(self, image_patch, memory_patch):
        return self.oracle(np.round(np.asarray(image_patch) * 1000.0), memory_patch)


def label_map_config(**kw) -> IISConfig:
    # MR (no HU peeling) with the CT scaling, so that label values survive normalisation exactly
    return IISConfig(modality="mr", hu_surface_threshold=None, width=4, levels=2, head_width=4,
                     intensity={"kind": "ct", "low": -1000.0, "high": 3096.0, "scale": 1000.0}, **kw)


@pytest.mark.slow
def test_oracle_through_the_whole_pipeline():
    """VerSe sub-verse010 (L1-L5, 1 mm) through ``segment_vertebrae`` with an oracle whose labels are
    noisy, L3's off by one (regressed 21.4: rounding says L2): every vertebra lands on the input
    grid under its reference id, with records that match it."""
    from SpineSegLib.iis.infer.preprocess import to_model_grid

    ref = read_image(data_path("masks", "verse", "sub-verse010_seg-vert_msk.nii.gz"))
    config = label_map_config(patch_size=(128, 128, 128))
    labels_on_grid = to_model_grid(ref.with_array(ref.array.astype(np.float32)), config).image.array * 1000
    noise = {24: 0.2, 23: -0.3, 22: -0.6, 21: -0.1, 20: 0.3}
    oracle = ScaledLabelOracle(np.round(labels_on_grid).astype(np.int16), direction="up",
                               regressed=lambda v: v + noise[v])
    net = IISNet(config)
    result = segment_vertebrae(ref.with_array(ref.array.astype(np.float32)), (net, config), predict=oracle,
                               check_modality=False)
    assert [r.name for r in result.instances] == ["L1", "L2", "L3", "L4", "L5"]
    assert [r.traversal_index for r in result.instances] == [5, 4, 3, 2, 1]
    for r in result.instances:
        mine, theirs = result.labels.array == r.id, ref.array == r.id
        assert 2 * (mine & theirs).sum() / (mine.sum() + theirs.sum()) > 0.999
        assert r.complete and r.in_output and r.volume_ml == pytest.approx(theirs.sum() / 1000.0, rel=0.01)
    assert result.label_fit.ids == [24, 23, 22, 21, 20]


def test_spider_pipeline_writes_discs_and_canal():
    """TPTBox cervical MR label map (C5-C7, discs 105-106, canal) through ``segment_vertebrae`` with a
    SPIDER-variant oracle: discs come out as 100 + the id of the vertebra above, the canal as 61."""
    from SpineSegLib.iis.infer.preprocess import to_model_grid

    folder = ("mr", "tptbox-c6")
    vert = read_image(data_path(*folder, "vertebrae.nii.gz"))
    sub = read_image(data_path(*folder, "subregions.nii.gz")).array
    combined = np.where(vert.array >= 200, vert.array - 200, vert.array)
    combined = np.where((combined == 0) & np.isin(sub, [60, 61]), 61, combined).astype(np.uint8)
    ref = vert.with_array(combined)
    config = label_map_config(variant="spider", patch_size=(64, 64, 64), voxel_size_mm=(1.5, 1.5, 1.5))
    grid_labels = np.round(to_model_grid(ref.with_array(combined.astype(np.float32)), config).image.array * 1000)
    oracle = ScaledLabelOracle(grid_labels.astype(np.int16), direction="up", vertebra_ids=[5, 6, 7],
                               disc_of={5: 105, 6: 106}, canal_id=61)
    result = segment_vertebrae(ref.with_array(combined.astype(np.float32)), (IISNet(config), config),
                               predict=oracle, check_modality=False, keep_incomplete=True)
    assert sorted(r.id for r in result.instances) == [5, 6, 7]
    out = result.labels.array
    assert set(np.unique(out)) == {0, 5, 6, 7, 105, 106, CANAL_LABEL}
    for value in (5, 6, 7, 105, 106, CANAL_LABEL):
        a, b = out == value, combined == value
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.98, value
    assert result.discs.same_grid(ref) and set(np.unique(result.discs.array)) == {0, 105, 106}
    assert result.canal.same_grid(ref) and (result.canal.array == CANAL_LABEL).sum() == (out == CANAL_LABEL).sum()


# -- the command line ----------------------------------------------------------------------------
def test_cli_writes_labels_table_and_steps(tmp_path, models, abdomen_crop_file, capsys):
    src = abdomen_crop_file
    out, table, steps = tmp_path / "v.nii.gz", tmp_path / "v.tsv", tmp_path / "steps"
    args = ["iis", str(src), "-o", str(out), "--model", str(models["ct"]), "--device", "cpu",
            "--table", str(table), "--steps-dir", str(steps)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "vertebrae written to" in captured.out and "traversal" in captured.err
    labels = read_image(out)
    assert labels.same_grid(read_image(src))
    rows = table.read_text(encoding="utf-8").strip().splitlines()
    header = rows[0].split("\t")
    assert header[:3] == ["id", "name", "complete"]
    written = {int(r.split("\t")[0]) for r in rows[1:] if r.split("\t")[header.index("in_output")] == "1"}
    assert written == set(np.unique(labels.array)) - {0}
    log = json.loads((steps / "traversal.json").read_text(encoding="utf-8"))
    assert log["network_passes"] == len(log["steps"]) - 1
    first = json.loads((steps / "step_0001.json").read_text(encoding="utf-8"))
    assert set(first["box"]) >= {"centre_lps", "size_mm", "axes_lps", "start_voxel_zyx"}
    fragment = read_image(steps / first["fragment_file"])
    np.testing.assert_allclose(fragment.origin, first["box"]["origin_lps"], atol=1e-3)
    assert fragment.shape == tuple(first["box"]["size_voxels_zyx"])

    # no overwriting without --force, checked before any work; nothing is touched
    before = out.stat().st_mtime_ns
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
    assert out.stat().st_mtime_ns == before
    assert main(args + ["--force", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("case", ["missing", "not-weights", "wrong-modality", "tiny", "no-spine", "bad-start"])
def test_cli_errors_are_one_line(case, tmp_path, models, abdomen_crop_file, capsys):
    ct = abdomen_crop_file
    model, image, extra = models["ct"], ct, []
    if case == "missing":
        model = tmp_path / "nope.pt"
    elif case == "not-weights":
        model = data_path("ct", "totalseg-example-3mm", "vertebrae.nii.gz")
    elif case == "wrong-modality":
        image = data_path("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz")
    elif case == "tiny":
        full = read_image(ct)
        image = write_image(Image(full.array[:, :, :4], full.spacing, full.origin, full.direction), tmp_path / "thin.nii.gz")
    elif case == "no-spine":
        model = models["blind"]
    elif case == "bad-start":
        extra = ["--start", "1,2"]
    out = tmp_path / "out.nii.gz"
    code = main(["iis", str(image), "-o", str(out), "--model", str(model), "--device", "cpu", "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("spineseg: error:"), err
    expected = {"missing": "not found", "not-weights": "not a SpineSeg IIS weights file",
                "wrong-modality": "CT model, but the input is MR", "tiny": "too small",
                "no-spine": "no vertebra found", "bad-start": "three numbers"}[case]
    assert expected in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_cli_console_script_reports_without_traceback(tmp_path, models):
    """The installed entry point: a non-zero exit, one line on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "SpineSegLib", "iis", str(data_path("ct", "totalseg-example-3mm", "image.nii.gz")),
         "-o", str(tmp_path / "o.nii.gz"), "--model", str(models["blind"]), "--device", "cpu", "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "no vertebra found" in proc.stderr


def test_speed_probe_prints_one_json_line(models, capsys):
    """``spineseg speed`` (the Slicer module's device probe): one ``{"probe": ...}`` line, with the model's
    measured seconds per pass when a model is given; a missing model is a one-line error."""
    assert main(["speed", "--model", str(models["ct"]), "--device", "cpu", "--repeats", "1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    info = json.loads(lines[-1])["probe"]
    assert lines[-1].startswith('{"probe"') and info is not None
    assert info["model"] == str(models["ct"]) and IISConfig.from_dict(info["config"]).patch_size == (16, 16, 16)
    assert info["per_pass_seconds"]["cpu"] > 0 and info["precision"]["cpu"].startswith("cpu")
    assert info["cuda"] == torch.cuda.is_available() and info["cpu_cores"] >= 1
    assert json.loads(lines[0])["message"] == "timing a network pass on cpu"
    assert main(["speed", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a file nor a bundled model" in err[0]
