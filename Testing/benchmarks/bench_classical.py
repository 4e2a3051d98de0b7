"""Benchmark of the classical spine segmentation on LIDC-IDRI-0001 (512 x 512 x 133, 0.70 x 0.70 x 2.5 mm).

Target: <= 5 s wall time and <= 2 GB peak memory on 2 CPU cores for ``segment_spine`` (the image
already read). Prints the per-step breakdown, wall and CPU time, and the peak memory two ways:
the process's maximum resident set size (everything, the read image included) and tracemalloc's
peak of what the pipeline allocates (numpy arrays included), measured in a separate run.

Run from the repository root::

    OMP_NUM_THREADS=2 python Testing/benchmarks/bench_classical.py [--repeat 3] [--case PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CASE = REPO.parent / "shared" / "data" / "ct" / "lidc-idri-0001" / "image.nii.gz"
TARGET_S, TARGET_GB = 5.0, 2.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=str(DEFAULT_CASE), help="CT to segment (default: LIDC-IDRI-0001)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the best is reported)")
    args = parser.parse_args()

    t = time.perf_counter()
    import skimage.measure  # noqa: F401  (RANSAC; imported lazily by the pipeline, timed apart here)
    from SpineSegLib.classical import segment_spine
    from SpineSegLib.core.image import read_image
    import_s = time.perf_counter() - t

    t = time.perf_counter()
    image = read_image(args.case)
    read_s = time.perf_counter() - t
    print(f"case: {args.case}  {image.shape[::-1]} voxels of {tuple(round(s, 3) for s in image.spacing)} mm")
    print(f"imports {import_s:.2f} s, reading {read_s:.2f} s (not counted below)")
    print(f"cpus visible: {os.cpu_count()}, usable: {len(os.sched_getaffinity(0))}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f}")

    best = None
    for i in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = segment_spine(image)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"run {i + 1}: wall {wall:.2f} s, cpu {cpu:.2f} s")
        if best is None or wall < best[0]:
            best = (wall, cpu, result.timings)
    wall, cpu, timings = best
    maxrss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2   # kB on Linux

    tracemalloc.start()
    segment_spine(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_gb = peak / 1024 ** 3

    print("\nper step (best run, wall seconds):")
    for name, seconds in timings.items():
        if name != "total":
            print(f"  {name:40s} {seconds:6.3f}")
    print(f"  {'total':40s} {timings['total']:6.3f}")
    print(f"\nwall {wall:.2f} s (cpu {cpu:.2f} s); peak RSS {maxrss_gb:.2f} GB (process, image included); "
          f"pipeline allocations peak {peak_gb:.2f} GB (tracemalloc)")
    ok = wall <= TARGET_S and maxrss_gb <= TARGET_GB
    print(f"target <= {TARGET_S:g} s and <= {TARGET_GB:g} GB on 2 cores: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
