"""The model-free vertebrae on every CT in ../shared/data/ct: per-vertebra Dice, detection, identification,
binary IoU of the mask, and how the names were decided (issue 11's "Must show" table).

Run from the repository root::

    python Testing/benchmarks/vertebrae_eval.py [CASE ...]      # cases: lidc ts3 tsd tpt cta elx (default: all)

IoU and the instance metrics are computed on the reference's grid (``evaluation.instance_metrics``);
``totalseg-example-3mm`` also reports how many found disc levels lie within 3 mm of a reference disc
(``bodies-discs.nii.gz``, label 2). chest-cta-crop has T12 only: its IoU is the fraction of T12 the mask covers.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct"
CASES = {
    "lidc": ("lidc-idri-0001/image.nii.gz", "lidc-idri-0001/vertebrae.nii.gz"),
    "ts3": ("totalseg-example-3mm/image.nii.gz", "totalseg-example-3mm/vertebrae.nii.gz"),
    "tsd": ("totalseg-example-dicom/dicom", "totalseg-example-dicom/vertebrae.nii.gz"),
    "tpt": ("tptbox-l3/image.nii.gz", "tptbox-l3/vertebrae.nii.gz"),
    "cta": ("chest-cta-crop/image.nii.gz", "chest-cta-crop/t12.nii.gz"),
    "elx": ("thoracic-ct-elastix/image.nii.gz", None),
}


def disc_hits(result, bodies_discs, within_mm: float = 3.0) -> tuple[int, int, int]:
    """(found, found within ``within_mm`` of a reference disc, reference discs)."""
    from scipy import ndimage
    distance = ndimage.distance_transform_edt(bodies_discs.array != 2, sampling=bodies_discs.spacing[::-1])
    ijk = np.round(bodies_discs.lps_to_index(result.discs_lps)).astype(int).reshape(-1, 3)
    ijk = np.clip(ijk, 0, np.array(bodies_discs.size) - 1)
    hits = sum(distance[k, j, i] <= within_mm for i, j, k in ijk)
    return len(ijk), int(hits), ndimage.label(bodies_discs.array == 2)[1]


def evaluate_case(key: str) -> None:
    from SpineSegLib.classical.vertebrae import label_vertebrae
    from SpineSegLib.core.grids import conform
    from SpineSegLib.core.image import read_image
    from SpineSegLib.core.labels import name_of
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images

    image_path, ref_path = CASES[key]
    image = read_image(DATA / image_path)
    started = time.perf_counter()
    result = label_vertebrae(image)
    seconds = time.perf_counter() - started
    names = " ".join(v.name + ("" if v.complete else "*") + ("R" if v.rib_left or v.rib_right else "")
                     for v in result.vertebrae)
    print(f"{key}: {seconds:.1f} s  [{names}]  names {'certain' if result.names_certain else 'UNCERTAIN'}: "
          f"{result.naming_note}")
    if ref_path is None:
        return
    ref = read_image(DATA / ref_path)
    case = evaluate_instance_images(result.labels, ref)
    mask = conform(result.labels, ref)[0].array > 0
    ref_mask = ref.array > 0
    iou = (mask & ref_mask).sum() / max((mask | ref_mask).sum(), 1)
    covered = (mask & ref_mask).sum() / max(ref_mask.sum(), 1)
    pairs = " ".join(f"{v.name}->{name_of(v.pred_id) if v.pred_id else '-'}:{v.dice:.2f}" for v in case.vertebrae)
    print(f"  {pairs}")
    print(f"  per-vertebra Dice {np.mean([v.dice for v in case.vertebrae]):.3f}, detected {case.n_detected}/{case.n_ref}, "
          f"named right {sum(v.identified for v in case.vertebrae)}/{case.n_ref}, extra instances {len(case.extras)}, "
          f"IoU {iou:.3f}, reference covered {covered:.3f}")
    if key == "ts3":
        found, hits, n_ref = disc_hits(result, read_image(DATA / "totalseg-example-3mm" / "bodies-discs.nii.gz"))
        print(f"  disc levels: {found} found, {hits} within 3 mm of a reference disc, {n_ref} reference discs")


def main(argv) -> int:
    warnings.simplefilter("ignore")
    for key in argv or list(CASES):
        try:
            evaluate_case(key)
        except Exception as exc:      # a benchmark reports every case, even a failing one
            print(f"{key}: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
