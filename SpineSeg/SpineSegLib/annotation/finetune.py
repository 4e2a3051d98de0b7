"""Fine-tuning an IIS model on the corrected cases of an annotation dataset (``spineseg dataset finetune``).

1. **Cases.** Training: the ``train``-split cases whose status is corrected or reviewed (their
   current label version). Validation: the ``validation``-split cases with such labels, or the
   cases named in ``validation_cases`` (these are then left out of training whatever their split).
   Test-split cases are never used.
2. **Training** runs the training helper's loop (:func:`SpineSegLib.iis.train.loop.train`) on a
   staging folder of links to the images and current label versions (``RUN/staging``, read with
   the generic ``folder`` reader, convention ``verse``; the dataset's ``crop_unlabelled`` setting
   is passed on). The network starts from the parent's weights; its architecture, grid and
   intensity settings are the parent's (they must be, for the weights to fit), and the training
   settings are the parent's recorded ones with these changes: ``iterations``, ``lr`` (default
   1e-4, a tenth of the usual 1e-3), ``lambda_min = 1`` (the parent finished its false-positive
   weight ramp; restarting it at 0.1 would undo that), snapshots every quarter of the run and
   the average of the last two as final weights. Model-grid arrays are cached in
   ``DIR/.cache/model-grid`` (label versions never change, so later runs reuse them).
   ``train()`` has no "initial weights" option (yet): the run is started for one iteration
   (``until=1``), its resume state is rewritten to iteration 0 with the parent's weights and a fresh
   optimizer (the loop's own parameter groups, no moments), and the run is resumed -- the loop,
   sampling, augmentation, logs and snapshot averaging are all the training helper's.
3. **Before / after.** Both models segment every validation case (``segment_vertebrae``, the same
   settings for both); each result is scored against the current label version with
   ``instance_metrics.evaluate_instance_images``; per-vertebra Dice is pooled over cases with
   ``instance_metrics.summarize`` (a missed vertebra counts 0; a case where a model finds no spine
   counts all its vertebrae as missed). By default every vertebra a model outputs is scored,
   those it classifies as incompletely visible included (``keep_incomplete``), as the annotators see
   the predictions (:mod:`.predict`).
4. **Output.** ``NEW`` is written (never over an existing file unless ``force``) with the
   parent's metadata plus ``finetune``: the parent (path, SHA-256), the dataset (path, name), the
   training / validation cases with their label versions and SHA-256s, the settings and the
   before/after figures. The run is also recorded in the dataset's ``dataset.json`` (``models``).

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.finetune import finetune
    report = finetune(open_dataset("ds"), "mr-small.pt", "mr-small-ft1.pt", iterations=500)
    report.before["dice_mean"], report.after["dice_mean"]
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from SpineSegLib.core.errors import InputError, Interrupted, NoSpineFoundError, OutputExistsError
from SpineSegLib.core.files import check_force, replaced_atomically
from SpineSegLib.core.image import read_image
from SpineSegLib.core.progress import Progress
from SpineSegLib.evaluation.reports import plain
from SpineSegLib.annotation.folder import RUNS_DIR
from SpineSegLib.annotation.manifest import current_user, now_iso, write_json_atomic
from SpineSegLib.annotation.predict import CaseProgress, model_info
from SpineSegLib.annotation.store import AnnotationDataset
from SpineSegLib.annotation.versions import ANNOTATED

STAGING_DATASET = "annotation"     # case ids in the training run are "annotation/<case>"
DEFAULT_LR = 1e-4


@dataclass
class CaseScore:
    case: str
    version: int
    before: dict          # CaseResult.summary() of the parent
    after: dict           # ... of the fine-tuned model
    before_note: str = ""
    after_note: str = ""


@dataclass
class FinetuneReport:
    output: Path
    parent: dict
    train_cases: list
    validation_cases: list
    iterations: int
    seconds: float
    before: dict = field(default_factory=dict)    # summarize() over the validation cases
    after: dict = field(default_factory=dict)
    cases: list = field(default_factory=list)     # CaseScore
    run_dir: Optional[Path] = None
    training_summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return plain({
            "output": str(self.output), "parent": self.parent, "train_cases": self.train_cases,
            "validation_cases": self.validation_cases, "iterations": self.iterations, "seconds": self.seconds,
            "before": self.before, "after": self.after, "run_dir": str(self.run_dir) if self.run_dir else None,
            "cases": [{"case": c.case, "version": c.version, "before_dice": c.before.get("dice_mean"),
                       "after_dice": c.after.get("dice_mean"), "before_note": c.before_note,
                       "after_note": c.after_note} for c in self.cases],
        })


# -- case selection ------------------------------------------------------------------------------------
def select_cases(ds: AnnotationDataset, validation_cases=None) -> tuple[list, list]:
    """``(training entries, validation entries)`` (module docstring, step 1)."""
    entries = [e for e in ds.list_cases() if not e.problem and not e.image_missing]
    by_name = {e.name: e for e in entries}
    if validation_cases:
        wanted = [str(c) for c in validation_cases]
        unknown = [c for c in wanted if c not in by_name]
        if unknown:
            raise InputError(f"--validation-cases: no usable case {', '.join(unknown)}")
        unlabelled = [c for c in wanted if by_name[c].status not in ANNOTATED]
        if unlabelled:
            raise InputError(f"--validation-cases: {', '.join(unlabelled)} have no corrected or reviewed labels "
                             "to compare with")
        val = [by_name[c] for c in wanted]
    else:
        val = [e for e in entries if e.split == "validation" and e.status in ANNOTATED]
    val_names = {e.name for e in val}
    train = [e for e in entries if e.split == "train" and e.status in ANNOTATED and e.name not in val_names]
    if not train:
        counts = ds.counts()
        raise InputError(f"{ds.root}: no corrected or reviewed case in the train split to fine-tune on "
                         f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)})")
    return train, val


def _link(src: Path, dest: Path) -> None:
    """``dest`` as a symbolic link to ``src``, else a hard link, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dest)
    except OSError:
        try:
            os.link(src.resolve(), dest)
        except OSError:
            with replaced_atomically(dest) as tmp:
                shutil.copyfile(src, tmp)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(s):
            return s
    return path.suffix


def stage_cases(ds: AnnotationDataset, entries, staging: Path) -> None:
    """``staging/images/<case>.ext`` and ``staging/labels/<case>.nii.gz`` links (step 2)."""
    if staging.exists():
        shutil.rmtree(staging)
    for e in entries:
        image = ds.root / e.image
        _link(image, staging / "images" / f"{e.name}{_suffix(image)}")
        _link(ds.root / e.current_version["file"], staging / "labels" / f"{e.name}.nii.gz")


# -- the training configuration ------------------------------------------------------------------------------
def build_train_config(parent_ckpt: dict, ds: AnnotationDataset, staging: Path, run_dir: Path, val_names,
                       iterations: int, lr: float, device: str, threads: Optional[int], seed: int,
                       crop_unlabelled: Optional[str] = None):
    """A :class:`TrainConfig` for fine-tuning (module docstring, step 2)."""
    from dataclasses import fields as dc_fields

    from SpineSegLib.iis.train.augment import AugmentOptions
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.train.sampling import SamplingOptions
    from SpineSegLib.iis.train.recipe import DataConfig, SourceConfig, TrainConfig, TrainingConfig

    config = IISConfig.from_dict(parent_ckpt["config"])
    recorded = dict((parent_ckpt.get("metadata") or {}).get("training") or {})

    def known(cls, d):
        names = {f.name for f in dc_fields(cls)}
        return {k: v for k, v in (d or {}).items() if k in names}

    training = TrainingConfig(**{k: v for k, v in known(TrainingConfig, recorded).items()
                                 if k not in ("sampling", "augmentation")})
    training.sampling = SamplingOptions(**known(SamplingOptions, recorded.get("sampling")))
    training.augmentation = AugmentOptions(**known(AugmentOptions, recorded.get("augmentation")))
    every = max(1, iterations // 4)
    training.iterations = int(iterations)
    training.lr = float(lr)
    training.lambda_min = 1.0
    training.checkpoint_every = every
    training.validate_every = every
    training.log_every = 1 if iterations <= 5000 else 5   # the loop logs (and we can cancel) every 10 x log_every
    training.final = "average"
    training.average_last = 2
    training.seed = int(seed)
    training.device = device
    training.workers = 0
    if threads:
        training.threads = int(threads)
    training.validation_patches = min(int(training.validation_patches or 32), 32)
    crop = crop_unlabelled or ds.crop_unlabelled
    source = SourceConfig("folder", staging, {"convention": "verse", "modality": config.modality,
                                              "dataset": STAGING_DATASET, "crop_unlabelled": crop})
    data = DataConfig(sources=[source], cache=ds.cache_dir / "model-grid",
                      validation=[f"{STAGING_DATASET}/{n}" for n in val_names],
                      validation_fraction=0.0)
    return TrainConfig(config, data, training, run_dir)


def _run_training(cfg, parent_path: Path, progress: Progress, log) -> dict:
    from SpineSegLib.iis.train.loop import train

    total = cfg.training.iterations

    def train_log(message: str) -> None:
        progress.check()
        m = re.match(r"iteration (\d+)/(\d+)", message) or re.match(r"iteration (\d+):", message)
        if m:   # reported as a progress step (the run folder's logs keep every figure)
            progress.step(f"fine-tuning: {message}", 0.1 + 0.6 * int(m.group(1)) / max(total, 1))
            return
        log(message)

    return train(cfg, log=train_log, show_progress=False, init_weights=parent_path)


# -- before / after --------------------------------------------------------------------------------------------
def evaluate_model(ds: AnnotationDataset, model_path, entries, *, device: str = "auto", threads=None,
                   keep_incomplete: bool = True, progress: Optional[Progress] = None, label: str = "",
                   log=None, span: tuple = (0.0, 1.0)) -> tuple[dict, list]:
    """Segment each case with ``model_path`` and score it against its current labels:
    ``(summarize() over all cases, [(case, CaseResult summary, note)])``."""
    from SpineSegLib.iis.infer.run import segment_vertebrae   # inference: imported on use
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images, summarize

    log = log or (lambda message: None)
    progress = progress or Progress()
    results, per_case = [], []
    lo, hi = span
    for k, e in enumerate(entries):
        sub = CaseProgress(progress, lo + (hi - lo) * k / len(entries), lo + (hi - lo) * (k + 1) / len(entries),
                            f"{label}: case {e.name} ({k + 1}/{len(entries)})")
        sub.step("reading", 0.0)
        image = read_image(ds.root / e.image)
        ref = read_image(ds.root / e.current_version["file"])
        note = ""
        try:
            pred = segment_vertebrae(image, str(model_path), device=device, threads=threads,
                                     keep_incomplete=keep_incomplete, progress=sub).labels
        except NoSpineFoundError as exc:
            pred = image.with_array(np.zeros(image.shape, np.uint8))
            note = f"no spine found ({exc})"
        res = evaluate_instance_images(pred, ref)
        res.case = e.name
        results.append(res)
        s = res.summary()
        per_case.append((e.name, s, note))
        log(f"  {label} {e.name}: per-vertebra Dice {s['dice_mean']:.3f}, detected {res.n_detected}/{res.n_ref}"
            + (f" ({note})" if note else ""))
    return (summarize(results) if results else {}), per_case


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


# -- the whole run ---------------------------------------------------------------------------------------------
def _train_and_compare(ds: AnnotationDataset, report: FinetuneReport, parent_path: Path, parent_ckpt: dict,
                       train_entries, val_entries, evaluate: bool, settings: dict, *, lr: float, seed: int,
                       crop_unlabelled: Optional[str]) -> Path:
    """Steps 2 and 3 of the module docstring: before, training, after (into ``report``); returns the run's
    final weights."""
    progress, run_dir = settings["progress"], report.run_dir
    compare = evaluate and val_entries
    progress.step("before: segmenting the validation cases with the parent model", 0.0)
    if compare:
        report.before, before_cases = evaluate_model(ds, parent_path, val_entries, label="before", span=(0.0, 0.1),
                                                     **settings)

    progress.step("preparing the training cases", 0.1)
    staging = run_dir / "staging"
    stage_cases(ds, train_entries + val_entries, staging)
    cfg = build_train_config(parent_ckpt, ds, staging, run_dir, [e.name for e in val_entries], report.iterations,
                             lr, settings["device"], settings["threads"], seed, crop_unlabelled)
    report.training_summary = _run_training(cfg, parent_path, progress, settings["log"])
    run_model = run_dir / "model.pt"
    if not run_model.exists():
        raise InputError(f"training stopped before the end (iteration {report.training_summary.get('iteration')}); "
                         "no weights written")

    progress.step("after: segmenting the validation cases with the fine-tuned model", 0.7)
    if compare:
        report.after, after_cases = evaluate_model(ds, run_model, val_entries, label="after", span=(0.7, 0.95),
                                                   **settings)
        versions = {e.name: e.current for e in val_entries}
        for (name, b, note_b), (_, a, note_a) in zip(before_cases, after_cases):
            report.cases.append(CaseScore(name, versions[name], b, a, note_b, note_a))
    return run_model


def _check_inputs(ds: AnnotationDataset, parent_path: Path, output: Path, iterations: int,
                  force: bool) -> tuple[dict, dict]:
    """``(model_info, checkpoint)`` of the parent, after checking the output and the modality."""
    from SpineSegLib.iis.model.checkpoint import read_checkpoint   # torch: imported on use

    check_force(output, force)
    if output.suffix != ".pt":
        raise InputError(f"{output}: the fine-tuned weights file should end in .pt")
    if int(iterations) < 1:
        raise InputError("iterations must be at least 1")
    parent = model_info(parent_path)
    parent_ckpt = read_checkpoint(parent_path, expected_sha256=parent["sha256"])
    if ds.modality and parent.get("modality") and parent["modality"] != ds.modality:
        raise InputError(f"{parent_path} is a {parent['modality'].upper()} model but the dataset holds "
                         f"{ds.modality.upper()} images")
    return parent, parent_ckpt


def _new_run_dir(ds: AnnotationDataset, run_dir, output: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = Path(run_dir) if run_dir else ds.root / RUNS_DIR / f"{stamp}_{output.stem}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise OutputExistsError(f"{run_dir} exists and is not empty; choose another run folder")
    return run_dir


def _scores(summary: dict) -> dict | None:
    keys = ("dice_mean", "dice_std", "detection_rate", "id_accuracy", "reference_vertebrae")
    return {k: summary.get(k) for k in keys} if summary else None


def _finetune_metadata(ds: AnnotationDataset, parent_path: Path, parent: dict, report: FinetuneReport,
                       train_entries, val_entries, lr: float, seed: int, keep_incomplete: bool, user) -> dict:
    """The ``finetune`` entry of the new weights' metadata (module docstring, step 4)."""
    summary = report.training_summary
    return {
        "parent": {"path": str(parent_path.resolve()), "sha256": parent["sha256"], "name": parent_path.name,
                   "iteration": parent.get("iteration")},
        "dataset": {"path": str(ds.root.resolve()), "name": ds.name},
        "train_cases": [{"case": e.name, "version": e.current, "sha256": e.current_version.get("sha256"),
                         "status": e.status} for e in train_entries],
        "validation_cases": [{"case": e.name, "version": e.current, "sha256": e.current_version.get("sha256")}
                             for e in val_entries],
        "iterations": report.iterations, "lr": float(lr), "seed": int(seed), "device": summary.get("device"),
        "evaluation": {"keep_incomplete": keep_incomplete, "metric": "per-vertebra Dice, largest-overlap matching "
                       "(SpineSegLib.evaluation.instance_metrics), pooled over the validation cases"},
        "final_weights": summary.get("final_weights"), "run_dir": str(report.run_dir.resolve()),
        "before": _scores(report.before), "after": _scores(report.after),
        "created": now_iso(), "user": current_user(user),
    }


def _write_weights(run_model: Path, output: Path, parent_ckpt: dict, parent: dict, parent_path: Path,
                   finetune_meta: dict) -> str:
    """Write the run's final weights to ``output`` with the parent's metadata plus ``finetune``; returns its SHA-256."""
    from SpineSegLib.core.files import sha256_of
    from SpineSegLib.iis.model.checkpoint import read_checkpoint, save_checkpoint   # torch: on use
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.model.network import IISNet

    data = read_checkpoint(run_model)
    net = IISNet(IISConfig.from_dict(data["config"]))
    net.load_state_dict(data["state_dict"])
    parent_meta = dict(parent_ckpt.get("metadata") or {})
    metadata = {**parent_meta, **{k: v for k, v in (data.get("metadata") or {}).items()
                                  if k in ("iteration", "final_weights", "validation")},
                "finetune": plain(finetune_meta),
                "lineage": [*parent_meta.get("lineage", []), {"sha256": parent["sha256"], "name": parent_path.name}]}
    save_checkpoint(output, net, metadata)     # replaces output atomically (check_force allowed it)
    return sha256_of(output)


def _model_record(output: Path, new_sha: str, parent: dict, parent_path: Path, meta: dict,
                  report: FinetuneReport) -> dict:
    """The dataset's ``models`` entry of a fine-tuned model."""
    return {"path": str(output.resolve()), "sha256": new_sha, "parent_sha256": parent["sha256"],
            "parent": str(parent_path.resolve()), "created": meta["created"], "user": meta["user"],
            "train_cases": [c["case"] for c in meta["train_cases"]],
            "validation_cases": [c["case"] for c in meta["validation_cases"]],
            "iterations": report.iterations, "before_dice": (report.before or {}).get("dice_mean"),
            "after_dice": (report.after or {}).get("dice_mean"), "run_dir": str(report.run_dir.resolve())}


def finetune(ds: AnnotationDataset, model, output, *, iterations: int = 500, lr: float = DEFAULT_LR,
             device: str = "auto", validation_cases=None, run_dir=None, threads: Optional[int] = None,
             seed: int = 0, evaluate: bool = True, force: bool = False, crop_unlabelled: Optional[str] = None,
             keep_incomplete: bool = True,
             progress: Optional[Progress] = None, log=None, user: Optional[str] = None) -> FinetuneReport:
    """Fine-tune ``model`` on the dataset's corrected cases and write ``output`` (module docstring).

    ``progress``: a :class:`Progress` (cancellable between training iterations and between
    cases of the evaluation; a cancelled run writes no ``output``, nor does one stopped with Ctrl-C, which
    raises :class:`~SpineSegLib.core.errors.Interrupted`). ``run_dir``: the training
    run folder (default ``DIR/runs/<time>_<output name>``); it keeps logs, curves and snapshots.
    """
    progress = progress or Progress()
    log = log or (lambda message: None)
    t_start = time.time()
    parent_path, output = Path(model), Path(output)
    parent, parent_ckpt = _check_inputs(ds, parent_path, output, iterations, force)
    train_entries, val_entries = select_cases(ds, validation_cases)
    if not val_entries:
        log("no validation cases (no corrected case in the validation split): the before/after comparison is skipped")
    run_dir = _new_run_dir(ds, run_dir, output)
    log(f"fine-tuning {parent_path.name} on {len(train_entries)} corrected case(s): "
        f"{', '.join(e.name for e in train_entries)}; validation: {', '.join(e.name for e in val_entries) or 'none'}")

    report = FinetuneReport(output, parent, [(e.name, e.current) for e in train_entries],
                            [(e.name, e.current) for e in val_entries], int(iterations), 0.0, run_dir=run_dir)
    settings = dict(device=device, threads=threads, keep_incomplete=keep_incomplete, progress=progress, log=log)
    try:
        run_model = _train_and_compare(ds, report, parent_path, parent_ckpt, train_entries, val_entries, evaluate,
                                       settings, lr=lr, seed=seed, crop_unlabelled=crop_unlabelled)
    except KeyboardInterrupt:      # Ctrl-C: the weights are written last, so nothing of them exists yet
        raise Interrupted(f"fine-tuning stopped; nothing was written to {output} and the dataset is unchanged "
                          f"(logs in {run_dir})") from None

    progress.step("writing the fine-tuned weights", 0.95)
    meta = _finetune_metadata(ds, parent_path, parent, report, train_entries, val_entries, lr, seed,
                              keep_incomplete, user)
    new_sha = _write_weights(run_model, output, parent_ckpt, parent, parent_path, meta)
    ds.update_info(lambda info: info.setdefault("models", []).append(
        _model_record(output, new_sha, parent, parent_path, meta, report)))
    report.seconds = time.time() - t_start
    write_json_atomic(run_dir / "finetune_report.json", report.to_dict())
    progress.step("done", 1.0)
    if report.before:
        log(f"per-vertebra Dice on {len(val_entries)} validation case(s): "
            f"before {_fmt(report.before.get('dice_mean'))}, after {_fmt(report.after.get('dice_mean'))}")
    log(f"fine-tuned weights written to {output} (SHA-256 {new_sha[:12]}...)")
    return report
