"""Time the per-vertebra evaluation on real label maps (not a test; prints figures).

    OMP_NUM_THREADS=2 .venv/bin/python Testing/benchmarks/instance_metrics_timing.py

For each map the "prediction" is the reference shifted by one voxel along each axis, with one
vertebra deleted and one relabelled, so that every code path (missed, wrong id, distances) runs.
For comparison, the same distances computed per instance from whole-volume masks
(``metrics.binary_metrics(pred == p, ref == r)``, which crops only after building full masks).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import DATA  # noqa: E402

from SpineSegLib.core.image import read_image  # noqa: E402
from SpineSegLib.evaluation.instance_metrics import evaluate_instances  # noqa: E402
from SpineSegLib.evaluation.metrics import binary_metrics  # noqa: E402

CASES = [
    ("LIDC-IDRI-0001 vertebrae (C5-L3)", DATA / "ct" / "lidc-idri-0001" / "vertebrae.nii.gz"),
    ("VerSe sub-gl003 (C1-T5, 0.29 mm)", DATA / "masks" / "verse" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz"),
    ("VerSe sub-verse004 (T9-L5)", DATA / "masks" / "verse" / "sub-verse004_seg-vert_msk.nii.gz"),
]


def perturbed(ref: np.ndarray) -> np.ndarray:
    ids = [int(i) for i in np.unique(ref) if i]
    pred = np.zeros_like(ref)
    pred[1:, 1:, 1:] = ref[:-1, :-1, :-1]                     # shifted by one voxel, no wrap-around
    pred[pred == ids[len(ids) // 2]] = 0                       # one missed vertebra
    pred[pred == ids[1]] = max(ids) + 1                        # one wrong id
    return pred


def main():
    for title, path in CASES:
        ref_img = read_image(path)
        ref = ref_img.array
        pred = perturbed(ref)
        n = len(np.unique(ref)) - 1
        best = min(_timed(lambda: evaluate_instances(pred, ref, ref_img.spacing)) for _ in range(3))
        res = evaluate_instances(pred, ref, ref_img.spacing)
        t0 = time.perf_counter()
        for v in res.vertebrae:
            if v.matched:
                binary_metrics(pred == v.pred_id, ref == v.ref_id, ref_img.spacing)
        naive = time.perf_counter() - t0
        print(f"{title}: {n} reference vertebrae on {'x'.join(map(str, ref_img.size))} "
              f"({ref.size / 1e6:.1f} M voxels): evaluate_instances {best:.2f} s (best of 3); "
              f"whole-volume masks per instance {naive:.2f} s; "
              f"Dice {res.summary()['dice_mean']:.3f}, missed {res.n_missed}, id accuracy {res.id_accuracy:.3f}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
