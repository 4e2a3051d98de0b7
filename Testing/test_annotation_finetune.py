"""The whole loop on real MR cases (MyoSegmenTUM): train a small model briefly, init a dataset, predict,
correct (the reference labels stand in for the annotator), fine-tune, compare before/after on held-back
cases; predict again with the new model; prefetch in the background; cancel a prediction run.

The model is deliberately tiny (27 k parameters, 4 mm voxels, patches of 96 x 96 x 64 mm) so that the
file stays within a few minutes on two CPU cores; the figures of a longer run are in the report of the
annotation work (``spineseg dataset finetune`` on 20 cases with a larger model).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, data_path
from SpineSegLib.annotation import create_dataset
from SpineSegLib.core.image import read_image
from SpineSegLib.core.progress import Cancelled, Progress

# every test here trains (the parent model, then the fine-tuning) or predicts whole MR scans
pytestmark = pytest.mark.slow

MYO = "mr/vertebral-bodies-myosegmentum"
PRETRAIN_CASES = ("01", "02", "03", "04", "05", "06")
DATASET_CASES = ("20", "21", "22", "23", "24", "25", "26", "27")
SPLIT = {"20": "train", "21": "train", "22": "train", "23": "train", "24": "validation", "25": "validation",
         "26": "test", "27": "test"}


def reference(case: str):
    """MyoSegmenTUM labels 1-5 (L1-L5 from the top) as VerSe ids 20-24."""
    ref = read_image(data_path(MYO, f"{case}_vb.nii.gz"))
    return ref.with_array(np.where(ref.array > 0, ref.array + 19, 0).astype(np.uint8))


@pytest.fixture(scope="module")
def parent_model(tmp_path_factory):
    """A small MR model trained briefly on six other cases with the training helper's loop."""
    from SpineSegLib.iis.train.recipe import parse_train_config
    from SpineSegLib.iis.train.loop import train

    out = tmp_path_factory.mktemp("parent")
    recipe = {
        "model": {"modality": "mr", "width": 8, "levels": 3, "head_width": 8, "patch_size": [24, 24, 16],
                  "voxel_size_mm": [4.0, 4.0, 4.0], "intensity": {"kind": "mr", "low": 5.0, "high": 95.0},
                  "pad_value": -1.5, "direction": "up", "min_fragment_mm3": 1000.0},
        "data": {"cache": str(out / "cache"), "train": [f"myosegmentum/{c}" for c in PRETRAIN_CASES],
                 "validation": [], "validation_fraction": 0.0,
                 "held_out": [f"myosegmentum/{c}" for c in DATASET_CASES] + ["myosegmentum/0[789]", "myosegmentum/1*",
                                                                              "myosegmentum/[345]*", "myosegmentum/28",
                                                                              "myosegmentum/29"],
                 "sources": [{"kind": "myosegmentum", "root": str(data_path(MYO))}]},
        "training": {"iterations": 300, "lr": 3e-3, "checkpoint_every": 100, "validate_every": 1000,
                     "log_every": 10, "average_last": 1, "final": "last", "threads": 1, "seed": 0,
                     "augmentation": {"noise": 0.0, "blur": 0.0, "elastic": 0.0, "crop": 0.0},
                     "sampling": {"centre_margin_mm": 16.0}},
        "output": {"dir": str(out / "run")},
    }
    cfg = parse_train_config(recipe, out)
    train(cfg, log=lambda message: None, show_progress=False)
    return out / "run" / "model.pt"


@pytest.fixture
def dataset(tmp_path):
    images = [str(data_path(MYO, f"{c}_img.nii.gz")) for c in DATASET_CASES]
    ds = create_dataset(tmp_path / "ds", images, split="1,0,0", crop_unlabelled="above")
    for case, split in SPLIT.items():
        ds.set_split(case, split)
    return ds


def test_predict_correct_finetune(parent_model, dataset, tmp_path):
    from SpineSegLib.annotation.finetune import finetune
    from SpineSegLib.annotation.predict import predict_dataset
    from SpineSegLib.core.files import sha256_of
    from SpineSegLib.iis.model.checkpoint import read_checkpoint

    ds = dataset
    lines = []
    report = predict_dataset(ds, parent_model, device="cpu", threads=1, log=lines.append)
    assert len(report.predicted) + len(report.failed) == len(DATASET_CASES)
    assert len(report.predicted) >= 6, report.failed
    parent_sha = sha256_of(parent_model)
    for case, version, seconds, names in report.predicted:
        e = ds.case(case)
        assert e.status == "predicted" and e.current == version == 1
        assert e.current_version["model"]["sha256"] == parent_sha and e.current_version["instances"]
    # the same model again: nothing to do
    again = predict_dataset(ds, parent_model, device="cpu", threads=1)
    assert not again.predicted and len(again.skipped) == len(report.predicted)

    # the annotators correct the training and validation cases (the reference labels stand in)
    for case in ("20", "21", "22", "23", "24", "25"):
        _, labels, entry = ds.load_case(case)
        ds.save_correction(case, reference(case), user="anna", based_on=entry.current)
    assert ds.counts()["corrected"] == 6

    out = tmp_path / "finetuned.pt"
    log = []
    rep = finetune(ds, parent_model, out, iterations=120, lr=1e-3, device="cpu", threads=1, log=log.append)
    before, after = rep.before["dice_mean"], rep.after["dice_mean"]
    print(f"\nper-vertebra Dice on cases 24, 25: before {before:.3f}, after {after:.3f}")
    assert [c for c, _ in rep.train_cases] == ["20", "21", "22", "23"]
    assert [c for c, _ in rep.validation_cases] == ["24", "25"]
    assert rep.before["reference_vertebrae"] == 10
    assert after >= before - 0.02, (before, after)
    # the new weights say where they come from
    meta = read_checkpoint(out)["metadata"]["finetune"]
    assert meta["parent"]["sha256"] == parent_sha and meta["dataset"]["path"] == str(ds.root.resolve())
    assert [c["case"] for c in meta["train_cases"]] == ["20", "21", "22", "23"]
    assert all(c["version"] == 2 for c in meta["train_cases"])
    assert meta["before"]["dice_mean"] == pytest.approx(before) and meta["after"]["dice_mean"] == pytest.approx(after)
    models = json.loads((ds.root / "dataset.json").read_text(encoding="utf-8"))["models"]
    assert models[-1]["sha256"] == sha256_of(out) and models[-1]["parent_sha256"] == parent_sha
    assert (rep.run_dir / "finetune_report.json").exists()
    # writing over the output is refused
    from SpineSegLib.core.errors import OutputExistsError
    with pytest.raises(OutputExistsError):
        finetune(ds, parent_model, out, iterations=1)

    # predicting with the new model: only the test cases (predicted by the parent) are redone
    third = predict_dataset(ds, out, device="cpu", threads=1)
    assert sorted(c for c, *_ in third.predicted) == sorted(c for c in ("26", "27") if ds.case(c).current)
    assert {c for c, _ in third.skipped} >= {"20", "21", "22", "23", "24", "25"}
    for case in ("20", "24"):
        assert ds.case(case).status == "corrected" and ds.case(case).current == 2
    assert ds.check() == []


def test_prefetch_and_cancel(parent_model, dataset):
    from SpineSegLib.annotation.predict import predict_dataset
    from SpineSegLib.annotation.prefetch import prefetch

    ds = dataset
    ready = []
    pf = prefetch(ds, parent_model, count=2, after="21", device="cpu", threads=1,
                     on_ready=lambda case, version: ready.append((case, version)))
    assert pf.wait(timeout=300)
    assert not pf.errors and pf.planned == ["22", "23"] and [c for c, _ in ready] == ["22", "23"]
    for case, version in ready:
        assert ds.case(case).current == version and ds.case(case).status == "predicted"
    # the next case is handed over from memory; one corrected meanwhile is read again
    image, labels, entry = pf.take("22")
    assert entry.current == 1 and labels is not None and labels.same_grid(image)
    ds.save_correction("23", reference("23"), user="anna")
    assert pf.take("23").entry.current == 2 and pf.take("23") is None

    # a prefetch cancelled at once saves nothing
    pf = prefetch(ds, parent_model, count=3, after="23", device="cpu", threads=1)
    pf.cancel()
    assert pf.wait(timeout=120) and not pf.ready

    # a prediction run cancelled (as from another thread) after its first case: that case is saved, no other
    progress = Progress()
    before = [ds.case(c).status for c in DATASET_CASES]
    saved = []

    def log(message):
        saved.append(message)
        progress.cancel()
    with pytest.raises(Cancelled):
        predict_dataset(ds, parent_model, device="cpu", threads=1, progress=progress, log=log)
    after = [ds.case(c).status for c in DATASET_CASES]
    changed = [c for c, b, a in zip(DATASET_CASES, before, after) if a != b]
    assert changed == ["20"] and saved[0].startswith("20: version 1"), saved
    assert ds.check() == []


def test_ctrl_c_leaves_the_dataset_consistent(parent_model, dataset):
    ds = dataset
    env = {**os.environ, "PYTHONPATH": str(REPO / "SpineSeg"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "SpineSegLib", "dataset", "predict", str(ds.root), "--model",
                             str(parent_model), "--device", "cpu", "--threads", "1", "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert first.startswith("20: version 1") or "FAILED" in first, (first, err)
    assert proc.returncode == 130 and "dataset is consistent" in err
    statuses = [ds.case(c).status for c in DATASET_CASES]
    assert 1 <= statuses.count("predicted") < len(DATASET_CASES)
    assert ds.check() == []
