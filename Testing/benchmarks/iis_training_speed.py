"""Seconds per IIS training iteration: data pipeline and network step, fp32 vs bf16 autocast.

    .venv/bin/python Testing/benchmarks/iis_training_speed.py [RECIPE] [--threads 2] [--steps 30]
        [--device cpu|cuda] [--data KIND=PATH]

(The recipe's datasets are found in ``$SPINESEG_DATA``, default ``../shared/data`` beside the checkout;
``--data`` points a source of the recipe at your copy, as ``spineseg train --data`` does; on a GPU
the figure times 1,000 iterations of the paper's CT recipe:
``iis_training_speed.py ct-vertebrae-paper --device cuda --data ctspine1k=/data/CTSpine1K``.)

Uses the recipe's model and sampling/augmentation on its first training cases (default: the small
MR recipe). Prints the median over ``--steps`` iterations after 3 warm-up steps. Other processes on
the machine slow it down: the figures are only comparable on an otherwise idle machine.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from SpineSegLib.iis.train.losses import iis_loss
from SpineSegLib.iis.model.device import resolve_device
from SpineSegLib.iis.model.network import IISNet
from SpineSegLib.iis.train.cases import gather_cases, prepare_cases, split_cases
from SpineSegLib.iis.train.examples import ExampleStream, to_device
from SpineSegLib.iis.train.recipe import load_train_config, set_source_roots


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe", nargs="?", default="mr-vertebral-bodies-small", help="recipe file or bundled recipe name")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", action="append", default=[], metavar="KIND=PATH")
    args = ap.parse_args()
    os.environ.setdefault("SPINESEG_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = load_train_config(args.recipe)
    set_source_roots(cfg, args.data)
    split = split_cases(gather_cases(cfg), cfg)
    prepared = prepare_cases(split["train"][: args.cases], cfg.model, None, log=lambda *a: None)
    stream = ExampleStream(prepared, cfg)
    vox = float(np.prod(cfg.model.voxel_size_mm))

    t_data = []
    batches = []
    for it in range(1, args.steps + 4):
        t = time.perf_counter()
        batches.append(stream.batch(0, it, cfg.training.batch_size))
        t_data.append(time.perf_counter() - t)
    print(f"{cfg.model.width} channels, patch {list(cfg.model.patch_size)}, batch {cfg.training.batch_size}, "
          f"threads {args.threads}")
    print(f"data (sample + augment + surface weights): {statistics.median(t_data[3:]):.3f} s per batch")

    for name, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
        torch.manual_seed(0)
        net = IISNet(cfg.model).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.99, 0.999))
        times = []
        for batch in batches:
            b = to_device(batch, device, False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = net(b["inputs"])
            loss = iis_loss(out, b, 0.5, vox)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        step = statistics.median(times[3:])
        print(f"network step, {name}: {step:.3f} s ({step * 1000 / 60:.1f} min per 1,000 iterations on {device}, "
              f"data loading in parallel workers not counted)")


if __name__ == "__main__":
    main()
