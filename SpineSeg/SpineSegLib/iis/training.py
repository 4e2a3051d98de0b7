"""Training the IIS network (Lessmann et al. 2019, section 3.6): ``spineseg train CONFIG``.

One iteration draws ``batch_size`` patches (``sampling``), augments them (``augment``), computes
the surface weights (``losses.surface_weights``, scipy EDT on the CPU) and takes one Adam step
(lr 1e-3, betas (0.99, 0.999)) on ``losses.iis_loss`` with the false-positive weight lambda(n)
rising from ``lambda_min`` to 1 over the run.

Determinism: patch ``b`` of iteration ``n`` is drawn from ``numpy.random.default_rng([seed, n, b])``
-- a function of the seed alone, whatever the number of data workers and wherever a run was
resumed. A resumed run (``resume=True``) restores weights, optimizer, iteration, torch RNG and the
logs from ``last.pt`` and continues exactly as the uninterrupted run would have (tested on CPU).

Speed: on CUDA, bf16 autocast (fp16 + gradient scaling where bf16 is missing) and channels-last
memory; on the CPU, bf16 autocast (2.5-3.5x faster than fp32 on this project's 2-core AMX machine
for 16-24-channel models, measured with ``Testing/benchmarks/iis_training_speed.py``) and the default
memory layout (channels-last is slower there).

The run folder (``[output] dir``) holds::

    config.toml            the recipe as run (resolved paths)
    last.pt                resume state: weights, optimizer, iteration, RNG, logs
    snapshots/iter_*.pt    weights every `checkpoint_every` iterations (the last `average_last` kept)
    best.pt                weights with the best validation patch Dice
    model.pt               the final weights (see `final`), self-describing (checkpoint.load_model)
    train_log.csv          per `log_every` iterations: losses, lambda, training-patch Dice, s/iteration
    validation_log.csv     per `validate_every` iterations: validation loss, patch Dice, label error ...
    summary.json           cases, timings, the final validation figures
    curves.png             training curves

Label head: its output spans 0-24 (vertebra positions) while Adam moves every weight by about
``lr`` per step, so with lr 1e-3 the label output needs tens of thousands of steps to move across
its range (the paper trained 100k iterations). Two training-side measures let small runs learn it:
the output layer starts at the mean label of the training vertebrae (bias) and learns with
``lr * label_lr_scale`` (default 10); the loss keeps a gradient below the ReLU
(``losses.label_error``).

Final weights: ``final = "average"`` (default) averages the weights of the last ``average_last``
snapshots taken in the last 20 % of the run (lambda > 0.95 there; with fewer than two such
snapshots the last weights are used) -- the public baseline averages snapshots to smooth the noisy
batch-size-1 optimisation; ``"best"``
takes the snapshot with the best validation patch Dice; ``"last"`` the last iteration's.

Validation: a fixed set of ``validation_patches`` patches from the validation cases (drawn once from
the seed, no augmentation, same target/empty mix as training); patch Dice = 2|P∩T| / (|P| + |T|)
summed over the patches that have a target, the mean false-positive volume on patches without one,
the mean absolute label error and the completeness accuracy.

Console use::

    from SpineSegLib.iis.train_config import load_train_config
    from SpineSegLib.iis.training import train
    summary = train(load_train_config("Resources/Training/mr-vertebral-bodies-small.toml"))
    summary["final_validation"]["dice"]
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, OutputExistsError
from .augment import Augmenter, AugmentOptions
from .checkpoint import read_checkpoint, save_checkpoint
from .config import IISConfig
from .datasets import Case, prepare_case, read_dataset
from .losses import dice_counts, fp_weight, iis_loss, surface_weights
from .model import IISNet
from .sampling import PatchSampler, regression_target, to_example
from .train_config import TrainConfig, to_toml

VALIDATION_SEED_OFFSET = 1_000_000_007
AVERAGE_FROM = 0.8          # final = "average" uses snapshots from this fraction of the run on
LABEL_CONVENTION = ("label head regresses sampling.regression_target(VerSe id): C1..L5 = 1..24, "
                    "T13 (28) = 19.5, L6 (25) = 24.5, 0 = no vertebra")


# ----------------------------------------------------------------------------------------------
# cases and splits
# ----------------------------------------------------------------------------------------------
def gather_cases(cfg: TrainConfig) -> list[Case]:
    cases = []
    for source in cfg.data.sources:
        cases.extend(read_dataset(source.kind, source.root, **source.options))
    ids = [c.case_id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"case ids occur twice: {', '.join(dupes[:5])} (two sources list the same cases?)")
    for c in cases:
        if c.modality != cfg.model.modality:
            raise InputError(f"{c.case_id} is {c.modality.upper()} but the model is for {cfg.model.modality.upper()}")
    return cases


def _matches(case_id: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(case_id, p) for p in patterns)


def split_cases(cases: list[Case], cfg: TrainConfig) -> dict:
    """``{"train": [...], "validation": [...], "held_out": [...]}`` (lists of Case)."""
    d = cfg.data
    for name, patterns in (("train", d.train), ("validation", d.validation), ("held_out", d.held_out)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(c.case_id, p) for c in cases):
                raise InputError(f"[data] {name}: {p!r} matches no case (ids look like {cases[0].case_id!r})")
    held = [c for c in cases if _matches(c.case_id, d.held_out)]
    rest = [c for c in cases if c not in held]
    if d.validation:
        val = [c for c in rest if _matches(c.case_id, d.validation)]
    else:
        # a random fraction of the cases not named in `train` (at least one case stays for training)
        pool = [c for c in rest if not (d.train and _matches(c.case_id, d.train))]
        n_val = min(int(round(d.validation_fraction * len(rest))), len(pool) - (0 if d.train else 1))
        order = np.random.default_rng(d.split_seed).permutation(len(pool))
        val = [pool[i] for i in sorted(order[:max(n_val, 0)])]
    train = [c for c in rest if c not in val and (not d.train or _matches(c.case_id, d.train))]
    if d.max_train_cases and len(train) > d.max_train_cases:
        rng = np.random.default_rng(d.split_seed + 1)
        keep = sorted(rng.permutation(len(train))[: d.max_train_cases])
        train = [train[i] for i in keep]
    if not train:
        raise InputError("no training cases left after the validation / held-out split")
    return {"train": train, "validation": val, "held_out": held}


def prepare_cases(cases, config: IISConfig, cache_dir, log=print) -> list:
    out = []
    t = time.time()
    for i, c in enumerate(cases):
        p = prepare_case(c, config, cache_dir)
        if not p.vertebrae:
            log(f"  {c.case_id}: no labelled vertebra on the model grid; skipped")
            continue
        out.append(p)
    log(f"  {len(out)} cases on the model grid in {time.time() - t:.1f} s")
    return out


# ----------------------------------------------------------------------------------------------
# examples and batches
# ----------------------------------------------------------------------------------------------
class ExampleStream:
    """Training (or validation) examples as a pure function of ``(seed, iteration, index)``."""

    def __init__(self, prepared, cfg: TrainConfig, augment: bool = True):
        self.config = cfg.model
        self.sampling = cfg.training.sampling
        self.sampler = PatchSampler(prepared, cfg.model, self.sampling)
        self.augmenter = Augmenter(cfg.model, cfg.training.augmentation if augment else AugmentOptions.none())
        self.gamma, self.sigma = cfg.training.gamma, cfg.training.sigma_mm
        self.spacing = tuple(cfg.model.voxel_size_mm)

    def example(self, seed: int, iteration: int, index: int = 0):
        rng = np.random.default_rng([int(seed), int(iteration), int(index)])
        sample = self.augmenter(self.sampler.sample(rng), rng)
        return to_example(sample, self.config, self.sampling,
                          lambda m: surface_weights(m, self.spacing, self.gamma, self.sigma))

    def batch(self, seed: int, iteration: int, batch_size: int) -> dict:
        return collate([self.example(seed, iteration, b) for b in range(batch_size)])


def collate(examples) -> dict:
    return {
        "inputs": np.stack([e.inputs for e in examples]),
        "targets": np.stack([e.targets for e in examples]),
        "weights": np.stack([e.weights for e in examples]),
        "label": np.array([e.label for e in examples], np.float32),
        "label_known": np.array([e.label_known for e in examples], bool),
        "complete": np.array([e.complete for e in examples], np.float32),
        "has_target": np.array([e.has_target for e in examples], bool),
    }


class _BatchDataset(torch.utils.data.IterableDataset):
    """Batches for iterations ``start+1 .. stop`` in order; worker w of W makes every W-th one."""

    def __init__(self, stream: ExampleStream, seed: int, start: int, stop: int, batch_size: int):
        super().__init__()
        self.stream, self.seed, self.start, self.stop, self.batch_size = stream, seed, start, stop, batch_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        for it in range(self.start + 1 + w, self.stop + 1, n):
            yield it, self.stream.batch(self.seed, it, self.batch_size)


def _as_is(item):
    return item     # keep numpy arrays (the default would turn them into tensors)


def _batches(stream, seed, start, stop, batch_size, workers):
    if workers <= 0:
        for it in range(start + 1, stop + 1):
            yield it, stream.batch(seed, it, batch_size)
        return
    loader = torch.utils.data.DataLoader(_BatchDataset(stream, seed, start, stop, batch_size), batch_size=None,
                                         collate_fn=_as_is, num_workers=workers, prefetch_factor=4)
    yield from loader


def to_device(batch: dict, device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        if t.ndim == 5 and channels_last:
            t = t.contiguous(memory_format=torch.channels_last_3d)
        out[k] = t.to(device, non_blocking=True)
    return out


# ----------------------------------------------------------------------------------------------
# devices and precision
# ----------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for, but this torch has no usable CUDA GPU")
    return device


def resolve_amp(amp: str, device: torch.device):
    """``(autocast dtype or None, use a gradient scaler)``."""
    if amp == "off":
        return None, False
    if amp == "fp16":
        return torch.float16, device.type == "cuda"
    if amp == "bf16":
        return torch.bfloat16, False
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, True
    return torch.bfloat16, False


# ----------------------------------------------------------------------------------------------
# evaluation on patches
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_patches(model, batches, cfg: TrainConfig, device, amp_dtype, channels_last) -> dict:
    """Validation figures on prepared batches (module docstring)."""
    model.eval()
    vox = float(np.prod(cfg.model.voxel_size_mm))
    tp = pred = ref = 0.0
    per_patch, fp_empty, label_err, compl_ok, compl_n, losses = [], [], [], 0, 0, []
    for batch in batches:
        b = to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(b["inputs"])
        terms = iis_loss(out, b, 1.0, vox, cfg.training.label_weight, cfg.training.completeness_weight)
        losses.append(float(terms["loss"]))
        t, p, r = dice_counts(out.segmentation, b["targets"])
        has = batch["has_target"]
        for i in range(len(has)):
            if has[i]:
                tp, pred, ref = tp + t[i], pred + p[i], ref + r[i]
                per_patch.append(2 * t[i] / max(p[i] + r[i], 1))
                if batch["label_known"][i]:
                    label_err.append(abs(float(out.label[i]) - float(batch["label"][i])))
            else:
                fp_empty.append(p[i] * vox)
        c = (out.completeness.float() > 0).cpu().numpy()
        compl_ok += int(np.sum(c == (batch["complete"] > 0.5)))
        compl_n += len(c)
    model.train()
    nan = float("nan")
    return {
        "loss": float(np.mean(losses)) if losses else nan,
        "dice": float(2 * tp / (pred + ref)) if pred + ref else nan,
        "dice_mean": float(np.mean(per_patch)) if per_patch else nan,
        "empty_fp_mm3": float(np.mean(fp_empty)) if fp_empty else nan,
        "label_mae": float(np.mean(label_err)) if label_err else nan,
        "completeness_accuracy": compl_ok / compl_n if compl_n else nan,
        "patches": int(compl_n),
    }


# ----------------------------------------------------------------------------------------------
# the run folder
# ----------------------------------------------------------------------------------------------
TRAIN_FIELDS = ["iteration", "loss", "seg", "label", "completeness", "lambda", "train_dice", "sec_per_iter", "data_sec"]
VAL_FIELDS = ["iteration", "loss", "dice", "dice_mean", "empty_fp_mm3", "label_mae", "completeness_accuracy", "patches"]


def _write_csv(path: Path, fieldnames, rows) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def average_state_dicts(paths) -> dict:
    """The element-wise mean of the floating-point weights in the checkpoints at ``paths``."""
    total, n = None, 0
    for p in paths:
        sd = read_checkpoint(p)["state_dict"]
        if total is None:
            total = {k: v.double().clone() if v.is_floating_point() else v.clone() for k, v in sd.items()}
        else:
            for k, v in sd.items():
                if v.is_floating_point():
                    total[k] += v.double()
                else:
                    total[k] = v.clone()
        n += 1
    return {k: (v / n).float() if v.is_floating_point() else v for k, v in total.items()}


def plot_curves(run_dir) -> Path | None:
    """``curves.png`` from the logs of a run folder (training losses, lambda, patch Dice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)

    def read(name):
        p = run_dir / name
        if not p.exists():
            return []
        with open(p) as f:
            return [{k: float(v) if v not in ("", "nan") else float("nan") for k, v in r.items()} for r in csv.DictReader(f)]

    tr, va = read("train_log.csv"), read("validation_log.csv")
    if not tr:
        return None
    it = np.array([r["iteration"] for r in tr])

    def smooth(x, k=max(1, len(tr) // 50)):
        x = np.asarray(x, float)
        return np.convolve(x, np.ones(k) / k, mode="valid"), it[k - 1:]

    fig, axs = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("loss", "seg", "label", "completeness"):
        y, x = smooth([r[key] for r in tr])
        axs[0].plot(x, y, label=key)
    axs[0].set_yscale("log")
    axs[0].set_xlabel("iteration")
    axs[0].set_title("training loss terms (moving average)")
    axs[0].legend()
    y, x = smooth([r["train_dice"] for r in tr])
    axs[1].plot(x, y, label="training patches")
    if va:
        axs[1].plot([r["iteration"] for r in va], [r["dice"] for r in va], "o-", label="validation patches")
    axs[1].set_ylim(0, 1)
    axs[1].set_xlabel("iteration")
    axs[1].set_title("patch Dice (target vertebra)")
    axs[1].legend()
    axs[2].plot(it, [r["lambda"] for r in tr], label="lambda (FP weight)")
    if va:
        axs[2].plot([r["iteration"] for r in va], [r["label_mae"] for r in va], "o-", label="validation label MAE")
        axs[2].plot([r["iteration"] for r in va], [r["completeness_accuracy"] for r in va], "s-", label="validation completeness acc.")
    axs[2].set_xlabel("iteration")
    axs[2].legend()
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, until: int | None = None, log=print,
          show_progress: bool = True, init_weights: str | Path | None = None) -> dict:
    """Train as ``cfg`` says; returns the run summary (also written to ``summary.json``).

    ``until``: stop (with a resumable ``last.pt``) after this iteration, e.g. to split a long run.
    ``init_weights``: start from these weights (fine-tuning) instead of a random initialisation;
    their model settings must equal ``cfg.model``. A fresh optimizer either way.

    Console use::

        from SpineSegLib.iis.train_config import load_train_config
        from SpineSegLib.iis.training import train
        summary = train(load_train_config("Resources/Training/mr-vertebral-bodies-small.toml"))
    """
    t_start = time.time()
    tc = cfg.training
    out_dir = Path(cfg.output_dir)
    last_path = out_dir / "last.pt"
    if not resume and (last_path.exists() or (out_dir / "model.pt").exists()):
        raise OutputExistsError(f"{out_dir} holds a training run; pass --resume to continue it or choose another --output")
    if resume and not last_path.exists():
        raise InputError(f"nothing to resume: {last_path} does not exist")
    if tc.final == "best" and not cfg.data.validation and cfg.data.validation_fraction <= 0:
        raise InputError("[training] final = 'best' needs validation cases")

    torch.set_num_threads(max(1, int(tc.threads)))
    device = resolve_device(tc.device)
    amp_dtype, use_scaler = resolve_amp(tc.amp, device)
    channels_last = tc.channels_last == "on" or (tc.channels_last == "auto" and device.type == "cuda")

    # data
    log(f"reading {len(cfg.data.sources)} dataset(s)")
    cases = gather_cases(cfg)
    split = split_cases(cases, cfg)
    log(f"  {len(cases)} cases: {len(split['train'])} training, {len(split['validation'])} validation, "
        f"{len(split['held_out'])} held out")
    log("preparing the training cases" + (f" (cache {cfg.data.cache})" if cfg.data.cache else ""))
    train_prepared = prepare_cases(split["train"], cfg.model, cfg.data.cache, log)
    if not train_prepared:
        raise InputError("none of the training cases has a labelled vertebra on the model grid")
    stream = ExampleStream(train_prepared, cfg, augment=True)
    val_batches = []
    if split["validation"]:
        log("preparing the validation cases")
        val_prepared = prepare_cases(split["validation"], cfg.model, cfg.data.cache, log)
        if val_prepared:
            vstream = ExampleStream(val_prepared, cfg, augment=False)
            examples = [vstream.example(tc.seed + VALIDATION_SEED_OFFSET, j) for j in range(tc.validation_patches)]
            val_batches = [collate(examples[i:i + tc.batch_size]) for i in range(0, len(examples), tc.batch_size)]

    # model and optimizer
    torch.manual_seed(tc.seed)
    model = IISNet(cfg.model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    label_out = list(model.label_head.dense.parameters())
    others = [p for p in model.parameters() if all(p is not q for q in label_out)]
    optimizer = torch.optim.Adam([{"params": others}, {"params": label_out, "lr": tc.lr * tc.label_lr_scale}],
                                 lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    if not resume:
        # start the label head at the mean label of the training vertebrae (it would need thousands
        # of Adam steps of ~lr to climb from 0 to the lumbar 20-24)
        targets = [regression_target(v.key) for p in train_prepared for v in p.vertebrae if v.identified]
        if targets:
            with torch.no_grad():
                model.label_head.dense.bias.fill_(float(np.mean(targets)))
        if init_weights is not None:
            ck = read_checkpoint(init_weights)
            if IISConfig.from_dict(ck["config"]) != cfg.model:
                raise InputError(f"{init_weights}: its model settings differ from the recipe's [model]; "
                                 "fine-tuning needs the same architecture, patch and voxel size")
            model.load_state_dict(ck["state_dict"])
            log(f"starting from the weights of {Path(init_weights).name}")
    label_pre = {}
    model.label_head.register_forward_hook(lambda module, args, output: label_pre.__setitem__("value", output))
    state = {"iteration": 0, "train_rows": [], "val_rows": [], "best": None, "snapshots": [], "elapsed_s": 0.0}
    if resume:
        ck = read_checkpoint(last_path)
        if ck["config"] != cfg.model.to_dict():
            raise InputError(f"{last_path}: the [model] settings differ from the run being resumed")
        model.load_state_dict(ck["state_dict"])
        optimizer.load_state_dict(ck["optimizer"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        state = ck["train_state"]
        log(f"resuming at iteration {state['iteration']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "snapshots").mkdir(exist_ok=True)
    (out_dir / "config.toml").write_text(to_toml(cfg))
    log(f"model: {model.parameter_count():,} parameters, patch {list(cfg.model.patch_size)} at "
        f"{list(cfg.model.voxel_size_mm)} mm; device {device}, autocast {amp_dtype}, threads {torch.get_num_threads()}")

    n_max = tc.iterations
    stop = min(n_max, until) if until else n_max
    vox = float(np.prod(cfg.model.voxel_size_mm))
    meta_common = {
        "label_convention": LABEL_CONVENTION,
        # False when no training vertebra had an anatomical name (SPIDER numbering without L5, ...):
        # inference then ignores the regressed label (see inference.py)
        "label_head_trained": any(v.identified for p in train_prepared for v in p.vertebrae),
        "datasets": [{"kind": s.kind, "root": str(s.root)} for s in cfg.data.sources],
        "train_cases": [c.case_id for c in split["train"]],
        "validation_cases": [c.case_id for c in split["validation"]],
        "held_out_cases": [c.case_id for c in split["held_out"]],
        "training": {k: v for k, v in cfg.to_dict()["training"].items()},
    }

    def weights_meta(iteration, extra=None):
        return {**meta_common, "iteration": iteration, **(extra or {})}

    def save_resume_state():
        save_checkpoint(last_path, model, weights_meta(state["iteration"]), optimizer=optimizer.state_dict(),
                        scaler=scaler.state_dict() if scaler is not None else None, rng=_rng_state(),
                        train_state=state, iteration=state["iteration"])
        _write_csv(out_dir / "train_log.csv", TRAIN_FIELDS, state["train_rows"])
        _write_csv(out_dir / "validation_log.csv", VAL_FIELDS, state["val_rows"])

    def validate(iteration):
        if not val_batches:
            return None
        m = evaluate_patches(model, val_batches, cfg, device, amp_dtype, channels_last)
        state["val_rows"].append({"iteration": iteration, **m})
        if not math.isnan(m["dice"]) and (state["best"] is None or m["dice"] >= state["best"]["dice"]):
            state["best"] = {"iteration": iteration, "dice": m["dice"]}
            save_checkpoint(out_dir / "best.pt", model, weights_meta(iteration, {"validation": m}))
        return m

    progress = None
    if show_progress:
        try:
            from tqdm import tqdm

            progress = tqdm(total=stop, initial=state["iteration"], unit="it", dynamic_ncols=True, mininterval=1.0)
        except ImportError:
            progress = None

    # SIGTERM (a job scheduler, `kill`) stops after the current iteration with a resumable state
    stop_request = []
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: stop_request.append(signum))

    window = {"loss": [], "seg": [], "label": [], "completeness": [], "tp": 0.0, "pr": 0.0, "data": 0.0, "t0": time.time()}
    model.train()
    last_val = state["val_rows"][-1] if state["val_rows"] else None
    t_data = time.time()
    try:
        for it, batch in _batches(stream, tc.seed, state["iteration"], stop, tc.batch_size, tc.workers):
            window["data"] += time.time() - t_data
            lam = fp_weight(it, n_max, tc.lambda_min)
            b = to_device(batch, device, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(b["inputs"])
            terms = iis_loss(out, b, lam, vox, tc.label_weight, tc.completeness_weight, label_pre.pop("value", None))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(terms["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                terms["loss"].backward()
                optimizer.step()
            loss = float(terms["loss"].detach())
            if not math.isfinite(loss):
                raise RuntimeError(f"the loss became {loss} at iteration {it}; try amp = 'off' or a smaller lr")
            for k in ("seg", "label", "completeness"):
                window[k].append(float(terms[k]))
            window["loss"].append(loss)
            tp, p, r = dice_counts(out.segmentation.detach(), b["targets"])
            has = batch["has_target"]
            window["tp"] += float(np.sum(tp[has]))
            window["pr"] += float(np.sum(p[has]) + np.sum(r[has]))
            state["iteration"] = it

            if it % tc.log_every == 0 or it == stop:
                n = len(window["loss"])
                dt = time.time() - window["t0"]
                state["elapsed_s"] += dt
                row = {"iteration": it, "loss": float(np.mean(window["loss"])), "seg": float(np.mean(window["seg"])),
                       "label": float(np.mean(window["label"])), "completeness": float(np.mean(window["completeness"])),
                       "lambda": lam, "train_dice": 2 * window["tp"] / window["pr"] if window["pr"] else float("nan"),
                       "sec_per_iter": dt / n, "data_sec": window["data"] / n}
                state["train_rows"].append(row)
                window = {"loss": [], "seg": [], "label": [], "completeness": [], "tp": 0.0, "pr": 0.0, "data": 0.0,
                          "t0": time.time()}
                if progress is not None:
                    post = {"loss": f"{row['loss']:.3g}", "dice": f"{row['train_dice']:.3f}"}
                    if last_val:
                        post["val_dice"] = f"{last_val['dice']:.3f}"
                    progress.set_postfix(post, refresh=False)
            if it % tc.validate_every == 0 or it == n_max:
                last_val = validate(it) or last_val
                if progress is None and last_val:
                    log(f"iteration {it}: validation patch Dice {last_val['dice']:.3f}, label MAE {last_val['label_mae']:.2f}")
            if it % tc.checkpoint_every == 0 or it == n_max:
                snap = out_dir / "snapshots" / f"iter_{it:07d}.pt"
                save_checkpoint(snap, model, weights_meta(it))
                state["snapshots"].append(snap.name)
                keep = set(state["snapshots"][-tc.average_last:])
                for name in state["snapshots"][:-tc.average_last]:
                    (out_dir / "snapshots" / name).unlink(missing_ok=True)
                state["snapshots"] = [s for s in state["snapshots"] if s in keep]
                save_resume_state()
            if progress is not None:
                progress.update(1)
            elif it % (tc.log_every * 10) == 0:
                log(f"iteration {it}/{stop}: loss {state['train_rows'][-1]['loss']:.3g}")
            if stop_request:
                log(f"terminated: state saved at iteration {it}; continue with --resume")
                break
            t_data = time.time()
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        save_resume_state()
        log(f"interrupted: state saved at iteration {state['iteration']}; continue with --resume")
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if progress is not None:
        progress.close()
    save_resume_state()

    summary = {
        "iteration": state["iteration"], "iterations": n_max, "finished": state["iteration"] >= n_max,
        "device": str(device), "autocast": str(amp_dtype), "threads": torch.get_num_threads(),
        "parameters": model.parameter_count(),
        "train_cases": meta_common["train_cases"], "validation_cases": meta_common["validation_cases"],
        "held_out_cases": meta_common["held_out_cases"],
        "training_seconds": state["elapsed_s"],
        "sec_per_iter": (float(np.mean([r["sec_per_iter"] for r in state["train_rows"][-20:]]))
                         if state["train_rows"] else float("nan")),
        "best": state["best"],
    }
    if state["iteration"] >= n_max:
        summary.update(_finish(cfg, model, state, out_dir, val_batches, device, amp_dtype, channels_last, weights_meta, log))
    summary["wall_seconds"] = time.time() - t_start
    _write_json(out_dir / "summary.json", summary)
    plot_curves(out_dir)
    return summary


def _finish(cfg, model, state, out_dir, val_batches, device, amp_dtype, channels_last, weights_meta, log) -> dict:
    tc = cfg.training
    final, how = model, "last"
    # average only snapshots from the last 20 % of the run, where lambda(n) > 0.95: earlier ones were
    # trained with a clearly lower false-positive weight (measured: averaging snapshots from 40-100 %
    # of a 2500-iteration run doubled the false positives on empty validation patches)
    late = [s for s in state["snapshots"] if int(s[5:12]) >= AVERAGE_FROM * tc.iterations]
    snaps = [out_dir / "snapshots" / s for s in late[-tc.average_last:]]
    if tc.final == "average" and len(snaps) >= 2:
        averaged = IISNet(cfg.model).to(device)
        averaged.load_state_dict(average_state_dicts(snaps))
        if channels_last:
            averaged = averaged.to(memory_format=torch.channels_last_3d)
        final, how = averaged, f"average of {len(snaps)} snapshots ({', '.join(s.stem for s in snaps)})"
    elif tc.final == "best" and state["best"] is not None:
        best = IISNet(cfg.model).to(device)
        best.load_state_dict(read_checkpoint(out_dir / "best.pt")["state_dict"])
        final, how = best, f"best validation patch Dice at iteration {state['best']['iteration']}"
    result = {"final_weights": how}
    if val_batches:
        m = evaluate_patches(final, val_batches, cfg, device, amp_dtype, channels_last)
        result["final_validation"] = m
        log(f"final weights ({how}): validation patch Dice {m['dice']:.3f}, label MAE {m['label_mae']:.2f}, "
            f"completeness accuracy {m['completeness_accuracy']:.2f}, FP on empty patches {m['empty_fp_mm3']:.0f} mm^3")
    save_checkpoint(out_dir / "model.pt", final.to(memory_format=torch.contiguous_format),
                    weights_meta(state["iteration"], {"final_weights": how, "validation": result.get("final_validation")}))
    log(f"weights written to {out_dir / 'model.pt'}")
    return result
