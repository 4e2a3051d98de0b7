"""The run folder of ``spineseg train`` (see ``iis.train.loop``): logs, the resume state
(``last.pt``), snapshots and the choice of the final weights.

Final weights (:func:`final_model`): ``final = "average"`` (default) averages the weights of the
last ``average_last`` snapshots taken in the last 20 % of the run (lambda > 0.95 there; with fewer
than two such snapshots the last weights are used) -- the public baseline averages snapshots to
smooth the noisy batch-size-1 optimisation; ``"best"`` takes the snapshot with the best validation
patch Dice; ``"last"`` the last iteration's.

Console use::

    from pathlib import Path
    from SpineSegLib.iis.train.run_folder import average_state_dicts
    weights = average_state_dicts(sorted(Path("runs/mr-small/snapshots").glob("iter_*.pt"))[-2:])
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from SpineSegLib.core.errors import InputError, OutputExistsError
from SpineSegLib.core.files import replaced_atomically, write_text_atomic
from SpineSegLib.iis.model.checkpoint import read_checkpoint, save_checkpoint
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.model.network import IISNet
from SpineSegLib.iis.train.recipe import TrainConfig

AVERAGE_FROM = 0.8          # final = "average" uses snapshots from this fraction of the run on
LABEL_CONVENTION = ("label head regresses sampling.regression_target(VerSe id): C1..L5 = 1..24, "
                    "T13 (28) = 19.5, L6 (25) = 24.5, 0 = no vertebra")
TRAIN_FIELDS = ["iteration", "loss", "seg", "label", "completeness", "lambda", "train_dice", "sec_per_iter", "data_sec"]
VAL_FIELDS = ["iteration", "loss", "dice", "dice_mean", "empty_fp_mm3", "label_mae", "completeness_accuracy", "patches"]


def check_run_folder(cfg: TrainConfig, resume: bool) -> None:
    """Refuse to start over a run folder that holds a run, or to resume one that does not."""
    out_dir = Path(cfg.output_dir)
    last_path = out_dir / "last.pt"
    if not resume and (last_path.exists() or (out_dir / "model.pt").exists()):
        raise OutputExistsError(f"{out_dir} holds a training run; pass --resume to continue it or choose another --output")
    if resume and not last_path.exists():
        raise InputError(f"nothing to resume: {last_path} does not exist")
    if cfg.training.final == "best" and not cfg.data.validation and cfg.data.validation_fraction <= 0:
        raise InputError("[training] final = 'best' needs validation cases")


def run_metadata(cfg: TrainConfig, split: dict, train_prepared) -> dict:
    """What every weights file of the run records: label scale, data, split, training settings."""
    return {
        "label_convention": LABEL_CONVENTION,
        # False when no training vertebra had an anatomical name (SPIDER numbering without L5, ...):
        # inference then ignores the regressed label (see iis.infer.run)
        "label_head_trained": any(v.identified for p in train_prepared for v in p.vertebrae),
        "datasets": [{"kind": s.kind, "root": str(s.root)} for s in cfg.data.sources],
        "train_cases": [c.case_id for c in split["train"]],
        "validation_cases": [c.case_id for c in split["validation"]],
        "test_cases": [c.case_id for c in split["test"]],
        "training": {k: v for k, v in cfg.to_dict()["training"].items()},
    }


def new_train_state() -> dict:
    """The loop's state that ``last.pt`` carries: iteration, logs, best validation, snapshots, time."""
    return {"iteration": 0, "train_rows": [], "val_rows": [], "best": None, "snapshots": [], "elapsed_s": 0.0}


def write_csv(path: Path, fieldnames, rows) -> None:
    with replaced_atomically(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume_state(out_dir: Path, model, metadata: dict, optimizer, scaler, state: dict) -> None:
    """``last.pt`` (weights, optimizer, gradient scaler, RNG, loop state) and the two logs."""
    save_checkpoint(out_dir / "last.pt", model, metadata, optimizer=optimizer.state_dict(),
                    scaler=scaler.state_dict() if scaler is not None else None, rng=rng_state(),
                    train_state=state, iteration=state["iteration"])
    write_csv(out_dir / "train_log.csv", TRAIN_FIELDS, state["train_rows"])
    write_csv(out_dir / "validation_log.csv", VAL_FIELDS, state["val_rows"])


def load_resume_state(out_dir: Path, model_config: IISConfig, model, optimizer, scaler) -> dict:
    """Restore weights, optimizer, scaler and RNG from ``last.pt``; returns the loop state."""
    last_path = out_dir / "last.pt"
    ck = read_checkpoint(last_path)
    if ck["config"] != model_config.to_dict():
        raise InputError(f"{last_path}: the [model] settings differ from the run being resumed")
    model.load_state_dict(ck["state_dict"])
    optimizer.load_state_dict(ck["optimizer"])
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    set_rng_state(ck["rng"])
    return ck["train_state"]


def keep_snapshot(state: dict, folder: Path, name: str, keep: int) -> None:
    """Record snapshot ``name`` and delete all but the last ``keep`` snapshots."""
    state["snapshots"].append(name)
    kept = set(state["snapshots"][-keep:])
    for old in state["snapshots"][:-keep]:
        (folder / old).unlink(missing_ok=True)
    state["snapshots"] = [s for s in state["snapshots"] if s in kept]


def final_model(cfg: TrainConfig, model, state: dict, out_dir: Path, device, channels_last: bool):
    """``(network, how)``: the run's final weights as ``[training] final`` says (module docstring)."""
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
    return final, how


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
