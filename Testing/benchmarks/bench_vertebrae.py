"""Benchmark of the model-free vertebrae on LIDC-IDRI-0001: spine mask + vertebrae + per-vertebra report.

Target (issue 11): <= 5 s wall time and <= 2 GB peak memory on 2 CPU cores for mask, vertebrae and report
(the image already read; writing the files not counted). Prints the per-step breakdown of the best run and
the process's peak resident memory.

Run from the repository root::

    OMP_NUM_THREADS=2 python Testing/benchmarks/bench_vertebrae.py [--repeat 3] [--case PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

# the same case, targets and OMP_NUM_THREADS=2 as the mask's benchmark (a sibling script: this folder is on sys.path)
from bench_classical import DEFAULT_CASE, TARGET_GB, TARGET_S


def run_once(image):
    from SpineSegLib.classical.vertebrae import label_vertebrae
    from SpineSegLib.evaluation.vertebra_report import vertebra_report

    wall, cpu = time.perf_counter(), time.process_time()
    result = label_vertebrae(image)
    t = time.perf_counter()
    info = {v.label: {"complete": v.complete, "evidence": v.evidence} for v in result.vertebrae}
    report = vertebra_report(result.labels, image, info)
    timings = dict(result.timings, report=time.perf_counter() - t)
    return time.perf_counter() - wall, time.process_time() - cpu, timings, result, report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=str(DEFAULT_CASE), help="CT (default: LIDC-IDRI-0001)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the best is reported)")
    args = parser.parse_args()

    from SpineSegLib.core.image import read_image
    image = read_image(args.case)
    print(f"case: {args.case}  {image.shape[::-1]} voxels of {tuple(round(s, 3) for s in image.spacing)} mm; "
          f"usable cpus {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")
    best = None
    for i in range(args.repeat):
        wall, cpu, timings, result, report = run_once(image)
        print(f"run {i + 1}: wall {wall:.2f} s, cpu {cpu:.2f} s, {len(result.vertebrae)} vertebrae")
        if best is None or wall < best[0]:
            best = (wall, cpu, timings, result)
    wall, cpu, timings, result = best
    maxrss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print("\nper step (best run, wall seconds):")
    for name, seconds in timings.items():
        print(f"  {name:40s} {seconds:6.3f}")
    print(f"\nvertebrae: {' '.join(v.name + ('' if v.complete else '*') for v in result.vertebrae)} "
          f"(* incomplete); {result.naming_note}")
    print(f"wall {wall:.2f} s (cpu {cpu:.2f} s); peak RSS {maxrss_gb:.2f} GB (process, image included)")
    ok = wall <= TARGET_S and maxrss_gb <= TARGET_GB
    print(f"target <= {TARGET_S:g} s and <= {TARGET_GB:g} GB on 2 cores: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
