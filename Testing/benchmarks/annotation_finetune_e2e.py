"""The annotation loop end to end on real MR cases, with the command line, and the before/after Dice.

    .venv/bin/python Testing/benchmarks/annotation_finetune_e2e.py --model PARENT.pt --work /tmp/e2e \\
        [--cases 20-41] [--iterations 400] [--lr 1e-4] [--threads 1]

1. ``spineseg dataset init`` on the MyoSegmenTUM cases given (default 20-41: 21 scans; 01-19 are left
   for training the parent), split 0.6 / 0.3 / 0.1 with seed 0, ``--crop-unlabelled above`` (the scans
   show T12, the labels stop at L1);
2. ``spineseg dataset predict`` with PARENT;
3. the annotators' corrections: the reference labels (1-5 = L1-L5, written as VerSe ids 20-24) saved
   with ``spineseg dataset save`` for every train and validation case;
4. ``spineseg dataset finetune`` (validation = the validation split) -> per-vertebra Dice before/after.

Choose PARENT trained on other cases than ``--cases`` (the recipe's held-out cases 44-52 for
``Resources/Training/mr-vertebral-bodies-small.toml``: ``--cases 44-52``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MYO = REPO.parent / "shared" / "data" / "mr" / "vertebral-bodies-myosegmentum"


def spineseg(*args) -> None:
    cmd = [sys.executable, "-m", "SpineSegLib", *map(str, args)]
    print("$ spineseg " + " ".join(map(str, args)), flush=True)
    subprocess.run(cmd, check=True)


def main():
    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.core.image import read_image, write_image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--work", required=True, help="new folder for the dataset, corrections and the new model")
    p.add_argument("--cases", default="20-41")
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--lr", default="1e-4")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    lo, hi = (int(v) for v in args.cases.split("-"))
    images = [MYO / f"{n:02d}_img.nii.gz" for n in range(lo, hi + 1) if (MYO / f"{n:02d}_img.nii.gz").exists()]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=False)
    ds_dir, corr = work / "ds", work / "corrections"
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    t0 = time.time()
    spineseg("dataset", "init", ds_dir, "--images", *images, "--split", "0.6,0.3,0.1", "--seed", "0",
             "--crop-unlabelled", "above")
    spineseg("dataset", "predict", ds_dir, "--model", args.model, "--device", "auto", "--threads", args.threads,
             "--quiet")
    corr.mkdir()
    for e in open_dataset(ds_dir).list_cases(split=("train", "validation")):
        ref = read_image(MYO / f"{e.name}_vb.nii.gz")
        verse = ref.with_array(np.where(ref.array > 0, ref.array + 19, 0).astype(np.uint8))    # 1-5 -> L1-L5
        write_image(verse, corr / f"{e.name}.nii.gz")
        spineseg("dataset", "save", ds_dir, e.name, corr / f"{e.name}.nii.gz", "--user", "reference-as-annotator")
    spineseg("dataset", "status", ds_dir)
    spineseg("dataset", "finetune", ds_dir, "--model", args.model, "-o", work / "finetuned.pt", "--iterations",
             args.iterations, "--lr", args.lr, "--device", "auto", "--threads", args.threads,
             "--json", work / "report.json")
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    print(f"per-vertebra Dice on {len(report['validation_cases'])} validation cases "
          f"({report['before']['reference_vertebrae']} vertebrae): before {report['before']['dice_mean']:.3f}, "
          f"after {report['after']['dice_mean']:.3f}; fine-tuning {report['seconds']:.0f} s, "
          f"everything {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
