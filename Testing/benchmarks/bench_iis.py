"""IIS inference cost: time and peak memory per traversal step and per scan.

Per step = one forward pass (random weights: the cost does not depend on them) + the traversal's
bookkeeping (patch extraction, fragment pieces, memory). Per scan = the number of steps a
traversal of LIDC-IDRI-0001 (chest CT, C5-L3) takes with a perfect oracle network, with and
without a start point from the classical centerline, times the step cost, plus resampling to the
model grid and mapping the result back (both measured on that scan).

Every forward-pass measurement runs in its own process; its peak memory is the peak resident
size during the passes (``VmHWM``, reset before them) minus the resident size before them. ``cpu s/thr`` is the process's CPU
time per pass divided by the threads: on a machine shared with other work the wall time grows,
this figure much less (it approximates the wall time of an unshared machine).

Usage::

    .venv/bin/python Testing/benchmarks/bench_iis.py                      # 2 CPU threads, all configs
    .venv/bin/python Testing/benchmarks/bench_iis.py --configs cpu --variants bf16
    .venv/bin/python Testing/benchmarks/bench_iis.py --device cuda --threads 16

Configurations: ``paper`` (64 ch, 128^3 at 1 mm, Lessmann et al.), ``cpu`` (32 ch, 96^3 at 1.5 mm:
a 144 mm patch, proposed for CPUs), ``cpu-small`` (32 ch, 64^3 at 2 mm: 128 mm).
Variants: fp32, fp32-cl (channels-last-3d), bf16 (autocast), bf16-cl; fp16 and fp16-cl on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))
LIDC = DATA / "ct" / "lidc-idri-0001"

CONFIGS = {
    "paper": dict(width=64, patch_size=(128, 128, 128), voxel_size_mm=(1.0, 1.0, 1.0)),
    "cpu": dict(width=32, patch_size=(96, 96, 96), voxel_size_mm=(1.5, 1.5, 1.5)),
    "cpu-small": dict(width=32, patch_size=(64, 64, 64), voxel_size_mm=(2.0, 2.0, 2.0)),
}


def status_mb(key: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process in MB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> None:
    """Let VmHWM start again from the current resident size (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def forward_worker(name: str, variant: str, device: str, threads: int, repeats: int) -> dict:
    """One configuration and variant, in a fresh process: seconds per pass and peak memory."""
    import numpy as np
    import torch

    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.model.network import IISNet
    from SpineSegLib.iis.infer.predictor import TorchPredictor

    torch.set_num_threads(threads)
    config = IISConfig(**CONFIGS[name])
    torch.manual_seed(0)
    net = IISNet(config)
    precision, _, cl = variant.partition("-")
    predict = TorchPredictor(net, config, device, precision, channels_last=bool(cl))
    rng = np.random.default_rng(0)
    image = rng.normal(size=config.patch_size).astype(np.float32)
    memory = (rng.random((config.memory_channels, *config.patch_size)) > 0.9).astype(np.float32)
    rss_before = status_mb("VmRSS")
    reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, cpu = [], []
    for i in range(repeats + 1):                     # the first pass warms up (kernel selection)
        t, c = time.perf_counter(), time.process_time()
        predict(image, memory)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out = {"config": name, "variant": variant, "device": device, "threads": threads,
           "warmup_s": times[0], "pass_s": float(np.median(times[1:])), "passes_s": times[1:],
           "pass_cpu_s": float(np.median(cpu[1:])),
           "peak_rss_mb": status_mb("VmHWM"),
           "rss_before_mb": rss_before, "parameters": net.parameter_count()}
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def traversal_counts(name: str, start_lps) -> dict:
    """Oracle traversal of LIDC-0001 on this configuration's grid: steps, bookkeeping time, I/O."""
    import numpy as np

    from SpineSegLib.core.image import read_image
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.infer.assembly import assemble_output
    from SpineSegLib.iis.infer.oracle import LabelMapOracle
    from SpineSegLib.iis.infer.preprocess import ModelGrid, to_model_grid
    from SpineSegLib.iis.infer.traversal import IISTraversal
    from SpineSegLib.iis.infer.traversal_options import TraversalOptions

    config = IISConfig(**CONFIGS[name])
    image = read_image(LIDC / "image.nii.gz")
    ref = read_image(LIDC / "vertebrae.nii.gz")
    t = time.perf_counter()
    grid = to_model_grid(image, config)
    preprocess_s = time.perf_counter() - t
    labels = grid.labels(ref).array.astype(np.int16)
    min_visible = int(round(1000.0 / np.prod(config.voxel_size_mm)))   # what a trained network sees
    out = {"config": name, "preprocess_s": preprocess_s}
    for tag, start in (("no_start", None), ("start", start_lps)):
        if tag == "start" and start is None:
            continue
        oracle = LabelMapOracle(labels, "up", min_visible_voxels=min_visible)
        oracle_time = [0.0]

        def timed(image_patch, memory_patch):
            t0 = time.perf_counter()
            try:
                return oracle(image_patch, memory_patch)
            finally:
                oracle_time[0] += time.perf_counter() - t0

        trav = IISTraversal(grid.image.with_array(labels.astype(np.float32)), timed,
                            TraversalOptions(start_lps=start), patch_size=config.patch_size)
        t = time.perf_counter()
        result = trav.run()
        total = time.perf_counter() - t
        first_hit = next(k for k, s in enumerate(result.log) if s["event"] not in ("search-miss", "start-miss"))
        out[tag] = {"steps": result.steps, "search_steps_before_first_hit": first_hit,
                    "vertebrae": len(result.instances), "complete": sum(i.complete for i in result.instances),
                    "bookkeeping_s_per_step": (total - oracle_time[0]) / max(result.steps, 1)}
        if tag == "no_start":
            t = time.perf_counter()
            assemble_output(ModelGrid(grid.image, image), result, config.hu_surface_threshold)
            out["assemble_s"] = time.perf_counter() - t
    return out


def classical_start_point():
    """Lowest point of the classical centerline of LIDC-0001 (None when the classical pipeline is missing)."""
    try:
        from SpineSegLib.classical import segment_spine
    except ImportError:
        return None, "SpineSegLib.classical not available"
    from SpineSegLib.core.image import read_image
    from SpineSegLib.iis.infer.checks import start_point_from_centerline

    t = time.perf_counter()
    result = segment_spine(read_image(LIDC / "image.nii.gz"))
    seconds = time.perf_counter() - t
    return start_point_from_centerline(result.centerline_curve_lps, "up"), f"classical centerline, {seconds:.1f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="paper,cpu,cpu-small")
    ap.add_argument("--variants", default=None, help="comma list (default: fp32,fp32-cl,bf16,bf16-cl; + fp16 on CUDA)")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes after one warm-up pass")
    ap.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    ap.add_argument("--worker", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    if args.worker:
        print(json.dumps(forward_worker(args.worker[0], args.worker[1], args.device, args.threads, args.repeats)))
        return 0

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    variants = args.variants.split(",") if args.variants else (
        ["fp32", "fp32-cl", "bf16", "bf16-cl"] + (["fp16", "fp16-cl"] if args.device == "cuda" else []))
    load = os.getloadavg()
    print(f"IIS benchmark: device {args.device}, {args.threads} threads, {args.repeats} timed passes after a warm-up; "
          f"load average {load[0]:.1f} on {os.cpu_count()} CPUs (other work inflates wall times)")

    start, how = classical_start_point()
    print(f"start point: {None if start is None else tuple(round(v, 1) for v in start)} ({how})")

    report = {"device": args.device, "threads": args.threads, "start_point": start, "load_average": load,
              "forward": [], "traversal": []}
    for name in configs:
        counts = traversal_counts(name, start)
        report["traversal"].append(counts)
        cfg = CONFIGS[name]
        print(f"\n== {name}: {cfg['width']} ch, patch {cfg['patch_size'][0]}^3 at {cfg['voxel_size_mm'][0]} mm ==")
        print(f"LIDC-0001 with the oracle: {counts['no_start']['steps']} steps without a start point "
              f"({counts['no_start']['search_steps_before_first_hit']} searching before the first hit), "
              + (f"{counts['start']['steps']} with it; " if "start" in counts else "")
              + f"{counts['no_start']['vertebrae']} vertebrae ({counts['no_start']['complete']} complete); "
              f"bookkeeping {counts['no_start']['bookkeeping_s_per_step'] * 1000:.0f} ms/step, "
              f"resampling {counts['preprocess_s']:.1f} s, mapping back {counts['assemble_s']:.1f} s")
        print(f"{'variant':9s} {'warm-up s':>9s} {'pass s':>8s} {'cpu s/thr':>9s} {'peak MB':>8s} {'step s':>7s} "
              f"{'scan s':>7s} {'scan s (start)':>14s}")
        for variant in variants:
            proc = subprocess.run([sys.executable, __file__, "--worker", name, variant, "--device", args.device,
                                   "--threads", str(args.threads), "--repeats", str(args.repeats)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{variant:9s} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
                continue
            f = json.loads(proc.stdout.strip().splitlines()[-1])
            f["load_average_after"] = os.getloadavg()[0]
            step = f["pass_s"] + counts["no_start"]["bookkeeping_s_per_step"]
            fixed = counts["preprocess_s"] + counts["assemble_s"]
            f["step_s"] = step
            f["scan_s"] = counts["no_start"]["steps"] * step + fixed
            if "start" in counts:
                f["scan_with_start_s"] = counts["start"]["steps"] * step + fixed
            report["forward"].append(f)
            mem = f.get("peak_gpu_mb", f["peak_rss_mb"] - f["rss_before_mb"])
            print(f"{variant:9s} {f['warmup_s']:9.2f} {f['pass_s']:8.2f} {f['pass_cpu_s'] / args.threads:9.2f} "
                  f"{mem:8.0f} {step:7.2f} {f['scan_s']:7.0f} "
                  f"{f.get('scan_with_start_s', float('nan')):14.0f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
