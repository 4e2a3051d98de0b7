"""How long an annotator waits for the next case: open the dataset, find the next case, read its image and
current label version; and how long saving a correction takes.

    .venv/bin/python Testing/benchmarks/annotation_load_timing.py [--repeat 5]

Builds two throw-away datasets in a temporary folder: one MyoSegmenTUM MR case (77x224x224, uint8) and
LIDC-IDRI-0001 (512x512x133 CT, linked, not copied), each with its reference labels imported, and prints
the median of ``--repeat`` runs per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main():
    from SpineSegLib.annotation import create_dataset, open_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = {
        "MR (MyoSegmenTUM 01, 77x224x224)": ([DATA / "mr/vertebral-bodies-myosegmentum/01_img.nii.gz"],
                                              [DATA / "mr/vertebral-bodies-myosegmentum/01_vb.nii.gz"], "top-down:L1"),
        "CT (LIDC-IDRI-0001, 512x512x133)": ([DATA / "ct/lidc-idri-0001/image.nii.gz"],
                                             [DATA / "ct/lidc-idri-0001/vertebrae.nii.gz"], "verse"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for k, (what, (images, labels, convention)) in enumerate(cases.items()):
            root = Path(tmp) / f"ds{k}"
            t = time.perf_counter()
            create_dataset(root, [str(p) for p in images], [str(p) for p in labels], label_convention=convention,
                           split="1,0,0", mode="link")
            init_s = time.perf_counter() - t
            open_s, ds = timed(lambda: open_dataset(root), args.repeat)
            next_s, name = timed(lambda: ds.next_case(status="corrected"), args.repeat)
            load_s, loaded = timed(lambda: ds.load_case(name), args.repeat)
            image, labels, entry = loaded
            save_s, _ = timed(lambda: ds.save_correction(name, labels, user="bench"), args.repeat)
            print(f"{what}: init (link + import labels) {init_s:.2f} s; open {open_s * 1000:.0f} ms; "
                  f"next_case {next_s * 1000:.0f} ms; load_case (image + current labels) {load_s:.2f} s; "
                  f"save_correction {save_s:.2f} s")


if __name__ == "__main__":
    main()
