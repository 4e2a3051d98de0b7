"""IIS training on real MR (MyoSegmenTUM spine): a tiny model learns, a resumed run is the same run,
recipes name their datasets by kind (data root from --data or SPINESEG_DATA), the split is
train / validation / test, and the recipe / CLI report problems in one line."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, data_path
from SpineSegLib.core.errors import InputError, OutputExistsError
from SpineSegLib.iis.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from SpineSegLib.iis.model.network import IISNet
from SpineSegLib.iis.train.cases import gather_cases, prepare_cases, split_cases
from SpineSegLib.iis.train.examples import ExampleStream, batches
from SpineSegLib.iis.train.loop import train
from SpineSegLib.iis.train.recipe import load_train_config, parse_train_config, set_source_roots, to_toml
from SpineSegLib.iis.train.run_folder import check_run_folder, final_model, keep_snapshot, new_train_state

RECIPE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "recipes" / "mr-vertebral-bodies-small.toml"


def tiny_recipe(out_dir, **training):
    t = {"iterations": 300, "lambda_min": 1.0, "checkpoint_every": 60, "validate_every": 150,
         "validation_patches": 16, "log_every": 20, "threads": 1, "final": "average", "average_last": 2,
         "label_lr_scale": 20.0, "sampling": {"centre_margin_mm": 8.0}}
    t.update(training)
    return {
        "model": {"modality": "mr", "width": 8, "levels": 3, "head_width": 8, "patch_size": [32, 32, 32],
                  "voxel_size_mm": [2.0, 2.0, 2.0], "pad_value": -1.5},
        "data": {"cache": "", "train": ["myosegmentum/0[1-3]"], "validation": ["myosegmentum/04"],
                 "sources": [{"kind": "myosegmentum", "root": str(data_path("mr", "vertebral-bodies-myosegmentum"))}]},
        "training": t,
        "output": {"dir": str(out_dir)},
    }


def rows(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-run")
    cfg = parse_train_config(tiny_recipe(out), out)
    summary = train(cfg, show_progress=False, log=lambda *a: None)
    return out, summary


@pytest.mark.slow
def test_tiny_model_learns_on_real_mr(tiny_run):
    out, summary = tiny_run
    log = rows(out / "train_log.csv")
    assert [r["iteration"] for r in log] == list(range(20, 301, 20))
    first = np.mean([r["loss"] for r in log[:3]])
    last = np.mean([r["loss"] for r in log[-3:]])
    assert last < 0.75 * first, (first, last)
    # Dice of the target vertebra on the (augmented) training patches of the last 60 iterations
    assert np.mean([r["train_dice"] for r in log[-3:]]) > 0.6
    val = rows(out / "validation_log.csv")
    assert [r["iteration"] for r in val] == [150, 300]
    assert summary["final_validation"]["dice"] > 0.6        # validation case myosegmentum/04
    assert summary["finished"] and summary["train_cases"] == ["myosegmentum/01", "myosegmentum/02", "myosegmentum/03"]
    assert (out / "curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_run_folder_holds_self_describing_weights(tiny_run):
    out, summary = tiny_run
    net, config, meta = load_model(out / "model.pt", expected_modality="mr")
    assert config.width == 8 and config.patch_size == (32, 32, 32) and config.pad_value == -1.5
    assert meta["iteration"] == 300 and "average of 2 snapshots" in meta["final_weights"]
    assert meta["validation_cases"] == ["myosegmentum/04"] and "T13 (28) = 19.5" in meta["label_convention"]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["iter_0000240.pt", "iter_0000300.pt"]
    best = read_checkpoint(out / "best.pt")["metadata"]
    assert best["iteration"] in (150, 300)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["iteration"] == 300
    # the run's config.toml reads back as the same recipe
    again = load_train_config(out / "config.toml")
    assert again.model == config and again.training.iterations == 300
    # a finished run folder is not overwritten by a new run
    with pytest.raises(OutputExistsError):
        train(parse_train_config(tiny_recipe(out), out), show_progress=False, log=lambda *a: None)


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    recipe = dict(iterations=8, checkpoint_every=4, validate_every=4, validation_patches=2, log_every=2,
                  final="last", threads=1)
    a = parse_train_config(tiny_recipe(tmp_path / "a", **recipe), tmp_path)
    b = parse_train_config(tiny_recipe(tmp_path / "b", **recipe), tmp_path)
    a.data.cache = b.data.cache = tmp_path / "cache"
    quiet = dict(show_progress=False, log=lambda *x: None)
    train(a, **quiet)
    stopped = train(b, until=4, **quiet)
    assert stopped["iteration"] == 4 and not stopped["finished"] and not (tmp_path / "b" / "model.pt").exists()
    with pytest.raises(InputError, match="nothing to resume"):
        train(parse_train_config(tiny_recipe(tmp_path / "c", **recipe), tmp_path), resume=True, **quiet)
    train(b, resume=True, **quiet)
    ca, cb = read_checkpoint(tmp_path / "a" / "last.pt"), read_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in ca["state_dict"].items():
        assert torch.equal(v, cb["state_dict"][k]), k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
    assert (tmp_path / "a" / "train_log.csv").read_text(encoding="utf-8").splitlines()[1:] != []
    la, lb = rows(tmp_path / "a" / "train_log.csv"), rows(tmp_path / "b" / "train_log.csv")
    assert [(r["iteration"], r["loss"]) for r in la] == [(r["iteration"], r["loss"]) for r in lb]


def test_patches_depend_on_the_seed_only(tmp_path):
    cfg = parse_train_config(tiny_recipe(tmp_path / "s"), tmp_path)
    split = split_cases(gather_cases(cfg), cfg)
    stream = ExampleStream(prepare_cases(split["train"][:1], cfg.model, None, log=lambda *a: None), cfg)
    one = dict(batches(stream, 7, 0, 4, 1, workers=0))
    two = dict(batches(stream, 7, 0, 4, 1, workers=2))       # two loader processes, same batches
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for it in one:
        for key in one[it]:
            np.testing.assert_array_equal(one[it][key], two[it][key])
    other = stream.batch(8, 1, 1)
    assert not np.array_equal(other["inputs"], one[1]["inputs"])


def test_recipe_and_config_errors(tmp_path):
    cfg = load_train_config(RECIPE)
    assert cfg.model.modality == "mr" and cfg.model.width == 16 and cfg.model.patch_size == (48, 48, 48)
    assert cfg.training.betas == (0.99, 0.999) and cfg.training.lr == 1e-3
    assert cfg.data.sources[0].path == "mr/vertebral-bodies-myosegmentum" and cfg.data.sources[0].root is None
    assert cfg.data.sources[0].folder().resolve() == data_path("mr", "vertebral-bodies-myosegmentum").resolve()
    split = split_cases(gather_cases(cfg), cfg)
    assert (len(split["train"]), len(split["validation"]), len(split["test"])) == (35, 6, 9)
    # the written form reads back
    (tmp_path / "again.toml").write_text(to_toml(cfg))
    assert load_train_config(tmp_path / "again.toml").model == cfg.model

    bad = tiny_recipe(tmp_path / "x")
    bad["training"]["learning_rate"] = 0.1
    with pytest.raises(InputError, match="unknown setting.*learning_rate"):
        parse_train_config(bad, tmp_path)
    bad = tiny_recipe(tmp_path / "x")
    bad["data"]["validation"] = ["zukic/*"]
    with pytest.raises(InputError, match="matches no case"):
        split_cases(gather_cases(parse_train_config(bad, tmp_path)), parse_train_config(bad, tmp_path))
    bad = tiny_recipe(tmp_path / "x")
    bad["model"]["modality"] = "ct"
    with pytest.raises(InputError, match="is MR but the model is for CT"):
        gather_cases(parse_train_config(bad, tmp_path))


def test_recipes_name_datasets_by_kind(tmp_path, monkeypatch):
    """Bundled recipes load by name; a source's ``path`` lies in $SPINESEG_DATA, ``--data KIND=PATH``
    overrides it, an absolute ``root`` is used as it is; cache and output are relative to the cwd."""
    monkeypatch.chdir(tmp_path)
    cfg = load_train_config("mr-vertebral-bodies")
    assert cfg.source_file.parent.name == "recipes" and [s.kind for s in cfg.data.sources] == ["myosegmentum", "zukic"]
    assert cfg.data.cache == tmp_path / "runs" / "cache" and cfg.output_dir == tmp_path / "runs" / "mr-vertebral-bodies"
    assert cfg.data.sources[1].folder() == data_path("mr", "vertebral-bodies-zukic")
    set_source_roots(cfg, [f"zukic={tmp_path}"])
    assert cfg.data.sources[1].folder() == tmp_path and cfg.data.sources[0].root is None
    monkeypatch.setenv("SPINESEG_DATA", str(tmp_path / "elsewhere"))
    assert cfg.data.sources[0].folder() == tmp_path / "elsewhere" / "mr" / "vertebral-bodies-myosegmentum"
    monkeypatch.delenv("SPINESEG_DATA")
    with pytest.raises(InputError, match="pass --data myosegmentum=PATH, or set SPINESEG_DATA"):
        cfg.data.sources[0].folder()
    # the run folder's config.toml keeps the path and the folder the run used
    text = to_toml(cfg)
    assert 'path = "mr/vertebral-bodies-zukic"' in text and f'root = "{tmp_path}"' in text
    with pytest.raises(InputError, match="training config not found: no-such-recipe .*mr-vertebral-bodies-small"):
        load_train_config("no-such-recipe")
    bad = tiny_recipe(tmp_path / "x")
    del bad["data"]["sources"][0]["root"]
    with pytest.raises(InputError, match="needs kind and path"):
        parse_train_config(bad, tmp_path)


def test_split_is_train_validation_test_and_held_out_is_read_as_test(tmp_path):
    recipe = tiny_recipe(tmp_path / "x")
    recipe["data"]["test"] = ["myosegmentum/5*"]
    cfg = parse_train_config(recipe, tmp_path)
    split = split_cases(gather_cases(cfg), cfg)
    assert tuple(split) == ("train", "validation", "test")
    assert [c.case_id for c in split["test"]] == ["myosegmentum/50", "myosegmentum/51", "myosegmentum/52"]
    assert [c.case_id for c in split["validation"]] == ["myosegmentum/04"] and len(split["train"]) == 3
    # an older run folder's config.toml says held_out
    old = tiny_recipe(tmp_path / "x")
    old["data"]["held_out"] = recipe["data"]["test"]
    assert parse_train_config(old, tmp_path).data.test == ["myosegmentum/5*"]
    old["data"]["test"] = ["myosegmentum/49"]
    with pytest.raises(InputError, match="both test and held_out"):
        parse_train_config(old, tmp_path)
    # without validation patterns a seeded fraction of the cases not named in `train` validates
    recipe["data"].update(train=[], validation=[], validation_fraction=0.1, max_train_cases=5)
    split = split_cases(gather_cases(parse_train_config(recipe, tmp_path)), parse_train_config(recipe, tmp_path))
    assert len(split["validation"]) == 5 and len(split["train"]) == 5
    assert not {c.case_id for c in split["validation"]} & {c.case_id for c in split["train"] + split["test"]}
    recipe["data"]["test"] = ["myosegmentum/*"]
    with pytest.raises(InputError, match="no training cases left after the validation / test split"):
        split_cases(gather_cases(parse_train_config(recipe, tmp_path)), parse_train_config(recipe, tmp_path))


def test_run_folder_keeps_the_last_snapshots_and_averages_late_ones(tmp_path):
    cfg = parse_train_config(tiny_recipe(tmp_path / "run", iterations=10, average_last=2), tmp_path)
    folder = tmp_path / "run" / "snapshots"
    torch.manual_seed(0)
    nets, state = [IISNet(cfg.model) for _ in range(3)], new_train_state()
    for it, net in zip((4, 8, 10), nets):
        save_checkpoint(folder / f"iter_{it:07d}.pt", net)
        keep_snapshot(state, folder, f"iter_{it:07d}.pt", cfg.training.average_last)
    assert state["snapshots"] == sorted(p.name for p in folder.iterdir()) == ["iter_0000008.pt", "iter_0000010.pt"]
    final, how = final_model(cfg, nets[2], state, tmp_path / "run", torch.device("cpu"), False)
    assert how == "average of 2 snapshots (iter_0000008, iter_0000010)"
    one, two = nets[1].state_dict(), nets[2].state_dict()
    for k, v in final.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (one[k].double() + two[k].double()).div(2).float())
    cfg.training.iterations = 11        # only iteration 10 lies in the last 20 %: the last weights stay
    assert final_model(cfg, nets[2], state, tmp_path / "run", torch.device("cpu"), False) == (nets[2], "last")
    with pytest.raises(InputError, match="nothing to resume"):
        check_run_folder(cfg, resume=True)
    (tmp_path / "run" / "model.pt").touch()
    with pytest.raises(OutputExistsError, match="holds a training run"):
        check_run_folder(cfg, resume=False)
    cfg.training.final, cfg.data.validation, cfg.data.validation_fraction = "best", [], 0.0
    cfg.output_dir = tmp_path / "new-run"
    with pytest.raises(InputError, match="final = 'best' needs validation cases"):
        check_run_folder(cfg, resume=False)


def spineseg(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "SpineSegLib", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_train_check_and_one_line_errors(tmp_path):
    r = spineseg("train", "mr-vertebral-bodies-small", "--check")        # a bundled recipe, by name
    assert r.returncode == 0, r.stderr
    assert "train: 35 case(s)" in r.stdout and "test: 9 case(s)" in r.stdout

    r = spineseg("train", tmp_path / "missing.toml")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "training config not found" in r.stderr

    recipe = RECIPE.read_text(encoding="utf-8").replace('path = "mr/vertebral-bodies-myosegmentum"', f'root = "{tmp_path / "nowhere"}"')
    (tmp_path / "r.toml").write_text(recipe)
    r = spineseg("train", tmp_path / "r.toml", "--output", tmp_path / "run")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "dataset folder not found" in r.stderr and not (tmp_path / "run").exists()
    assert "--data myosegmentum=PATH" in r.stderr
    # --data points the recipe's source at the real folder
    r = spineseg("train", tmp_path / "r.toml", "--data", f"myosegmentum={data_path('mr', 'vertebral-bodies-myosegmentum')}",
                 "--check")
    assert r.returncode == 0 and "test: 9 case(s)" in r.stdout, r.stderr
    r = spineseg("train", tmp_path / "r.toml", "--data", "verse=/data/VerSe", "--check")
    assert r.returncode == 2 and "has no [[data.sources]] of kind 'verse' (it has: myosegmentum)" in r.stderr

    (tmp_path / "t.toml").write_text("[model]\nwidth = 8\n[training]\niterations = 'many'\n")
    r = spineseg("train", tmp_path / "t.toml")
    assert r.returncode == 2 and "[data] has no [[data.sources]]" in r.stderr


@pytest.mark.slow
def test_small_recipe_model_traverses_a_held_back_case(tmp_path):
    """The CI-sized version of the small MR recipe: a short schedule on its 35 training cases, then a
    full traversal of a case it never saw (myosegmentum/44, a test case of the recipe)."""
    cfg = load_train_config(RECIPE)
    cfg.output_dir = tmp_path / "run"
    cfg.data.cache = tmp_path / "cache"
    t = cfg.training
    t.iterations, t.checkpoint_every, t.validate_every, t.validation_patches = SMALL_ITERATIONS, 250, SMALL_ITERATIONS, 16
    train(cfg, show_progress=False, log=lambda *a: None)
    split = split_cases(gather_cases(cfg), cfg)
    assert "myosegmentum/44" in [c.case_id for c in split["test"]]

    from SpineSegLib.core.image import read_image
    from SpineSegLib.iis.infer.run import segment_vertebrae
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images

    folder = data_path("mr", "vertebral-bodies-myosegmentum")
    ref = read_image(folder / "44_vb.nii.gz")
    ref = ref.with_array(np.where(ref.array > 0, ref.array + 19, 0).astype(np.uint8))   # 1-5 = L1-L5
    result = segment_vertebrae(read_image(folder / "44_img.nii.gz"), str(cfg.output_dir / "model.pt"), device="cpu",
                               threads=2)
    res = evaluate_instance_images(result.labels, ref, pred_ids=None)
    dice = [v.dice for v in res.vertebrae]
    assert res.n_detected == 5 and np.mean(dice) > SMALL_MEAN_DICE, dice
    # one instance per body, found bottom-up (traversal order = the bodies' order along the spine)
    matched = [v.pred_id for v in res.vertebrae]
    assert len(set(matched)) == 5
    order = {r.id: r.traversal_index for r in result.instances}
    assert [order[m] for m in matched] == sorted((order[m] for m in matched), reverse=True)


SMALL_ITERATIONS = 1500
SMALL_MEAN_DICE = 0.80     # measured: 0.891 (L1-L5 0.871, 0.879, 0.916, 0.908, 0.881), 1500 iterations


# -- intensity domain randomisation (issue 12) ---------------------------------------------------
@pytest.fixture(scope="module")
def mr_patches():
    """Real MR patches, one per source (MyoSegmenTUM and Zukic et al.), each reaching into the padding."""
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.train.prepared import prepare_case
    from SpineSegLib.iis.train.readers import read_dataset
    from SpineSegLib.iis.train.sampling import PatchSampler, SamplingOptions

    config = IISConfig.default_mr(voxel_size_mm=(2.0, 2.0, 2.0), patch_size=(48, 48, 48), width=8, head_width=8,
                                  pad_value=-1.5)
    out = []
    for kind, folder in (("myosegmentum", "vertebral-bodies-myosegmentum"), ("zukic", "vertebral-bodies-zukic")):
        prepared = prepare_case(read_dataset(kind, data_path("mr", folder))[0], config)
        sampler = PatchSampler([prepared], config, SamplingOptions(empty_fraction=0.0))
        sample = sampler.target_patch(prepared, prepared.vertebrae[-1].index, np.random.default_rng(0))
        out.append(sample)
    return config, out


def _dr(step, **options):
    from SpineSegLib.iis.train.augment import AugmentOptions

    return AugmentOptions(**{**vars(AugmentOptions.none()), step: 1.0, **options})


def _applied(config, sample, options, seed):
    import copy

    from SpineSegLib.iis.train.augment import Augmenter

    s = copy.deepcopy(sample)
    Augmenter(config, options)(s, np.random.default_rng(seed))
    return s


@pytest.mark.parametrize("step", ["dr_lowres", "dr_bias", "dr_remap", "dr_gamma", "dr_invert", "dr_blur", "dr_noise"])
def test_domain_randomisation_keeps_shape_padding_labels_and_is_seeded(mr_patches, step):
    config, samples = mr_patches
    for sample in samples:
        pad = sample.image == config.pad_value
        a = _applied(config, sample, _dr(step), 3)
        b = _applied(config, sample, _dr(step), 3)
        c = _applied(config, sample, _dr(step), 4)
        assert a.image.shape == sample.image.shape and a.image.dtype == np.float32
        assert a.augmentations == [step[3:]]
        np.testing.assert_array_equal(a.image, b.image)                      # a function of the seed
        np.testing.assert_array_equal(a.instances, sample.instances)         # labels untouched
        assert np.all(a.image[pad] == config.pad_value)                      # padding stays padding
        if step != "dr_invert":
            assert not np.array_equal(a.image, c.image)
        changed = np.abs(a.image - sample.image)[~pad]
        assert changed.mean() > 0.005, (step, changed.mean())


def _ranks_kept(before, after):
    order = np.argsort(before, kind="stable")
    return bool(np.all(np.diff(after[order]) >= -1e-5))


def test_domain_randomisation_changes_intensities_as_intended(mr_patches):
    config, samples = mr_patches
    for sample in samples:
        tissue = sample.image != config.pad_value
        x = sample.image[tissue]
        # T1/T2-like inversion: x -> -x
        np.testing.assert_allclose(_applied(config, sample, _dr("dr_invert"), 0).image[tissue], -x)
        # gamma and monotonic curves keep the order of the intensities, within [-1, 1]
        for seed in range(4):
            for opts in (_dr("dr_gamma"), _dr("dr_remap", dr_remap_monotonic=1.0)):
                y = _applied(config, sample, opts, seed).image[tissue]
                assert _ranks_kept(x, y) and y.min() >= -1.0 and y.max() <= 1.0
        # non-monotonic curves let tissues trade places
        assert not all(_ranks_kept(x, _applied(config, sample, _dr("dr_remap", dr_remap_monotonic=0.0), s).image[tissue])
                       for s in range(4))
        # the bias field is smooth and multiplicative on [0, 1]: neighbours share their factor
        y = _applied(config, sample, _dr("dr_bias", dr_bias_strength=0.3), 1).image
        inside = tissue & (sample.image > -0.8) & (y < 0.999) & (y > -0.999)
        factor = np.where(inside, (y + 1.0) / np.where(inside, sample.image + 1.0, 1.0), np.nan)
        assert np.nanstd(factor) > 0.05
        steps = np.abs(np.diff(factor, axis=0))
        assert np.nanmedian(steps) < 0.02
        # thick slices and blur smooth along the axis, noise roughens; the mean stays
        for step, smoother in (("dr_lowres", True), ("dr_blur", True), ("dr_noise", False)):
            y = _applied(config, sample, _dr(step, dr_lowres_factor=3.0, dr_blur_sigma_voxels=2.0), 2).image
            ok = tissue & (y != config.pad_value)
            rough = [np.abs(np.diff(np.where(ok, img, 0.0), axis=a))[tuple(slice(0, n - (i == a)) for i, n in enumerate(ok.shape))].mean()
                     for img in (sample.image, y) for a in range(3)]
            before, after = sum(rough[:3]), sum(rough[3:])
            assert (after < 0.95 * before) if smoother else (after > 1.05 * before), (step, before, after)
            assert abs(y[ok].mean() - sample.image[ok].mean()) < 0.05


def test_domain_randomisation_is_off_by_default_and_set_by_the_recipe(tmp_path, mr_patches):
    from SpineSegLib.iis.train.augment import DR_STEPS, AugmentOptions

    config, samples = mr_patches
    assert all(getattr(AugmentOptions(), s) == 0.0 for s in DR_STEPS)
    for name in ("mr-vertebral-bodies", "mr-vertebral-bodies-small", "mr-vertebral-bodies-cross-myo"):
        assert all(getattr(load_train_config(name).training.augmentation, s) == 0.0 for s in DR_STEPS)
    # without dr_* options the patches are what they were: no random number is drawn for them
    plain = _applied(config, samples[0], AugmentOptions(), 5)
    again = _applied(config, samples[0], AugmentOptions(dr_bias_strength=0.9, dr_noise_std=0.5), 5)
    np.testing.assert_array_equal(plain.image, again.image)
    cfg = load_train_config("mr-vertebral-bodies-cross-zukic-dr")
    a = cfg.training.augmentation
    assert a.dr_remap == 0.5 and a.dr_invert == 0.2 and a.elastic == 0.5
    assert cfg.data.test == ["myosegmentum/*"]
    (tmp_path / "again.toml").write_text(to_toml(cfg))
    assert load_train_config(tmp_path / "again.toml").training.augmentation == a
    full = AugmentOptions(**{**vars(AugmentOptions.none()), **{s: 1.0 for s in DR_STEPS}})
    one, two = (_applied(config, samples[1], full, 9) for _ in range(2))
    np.testing.assert_array_equal(one.image, two.image)
    assert one.augmentations == [s[3:] for s in DR_STEPS]
    bad = tiny_recipe(tmp_path / "x", augmentation={"dr_invert": 1.5})
    with pytest.raises(InputError, match=r"training.augmentation.*dr_invert must lie in \[0, 1\]"):
        parse_train_config(bad, tmp_path)
    bad = tiny_recipe(tmp_path / "x", augmentation={"dr_inverse": 0.5})
    with pytest.raises(InputError, match="unknown setting.*dr_inverse"):
        parse_train_config(bad, tmp_path)
