"""``curves.png`` of a training run: loss terms, patch Dice and lambda / validation figures, from the
run folder's ``train_log.csv`` and ``validation_log.csv``.

Console use::

    from SpineSegLib.iis.train.curves import plot_curves
    plot_curves("runs/mr-vertebral-bodies-small")     # -> .../curves.png
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


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
        with open(p, encoding="utf-8") as f:
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
