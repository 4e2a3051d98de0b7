"""Derive the small bundled samples in Resources/Samples from ../shared/data (run from the repo root).

    python scripts/make_samples.py            # refuses to replace existing samples
    python scripts/make_samples.py --force

LIDC-IDRI-0001 is resampled to 2.5 mm isotropic (linear for the CT, nearest neighbour for the
vertebra labels) and cropped to the body (HU > -500, 3 voxels of margin).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSeg"))

from SpineSegLib.core.image import Image, read_image, write_image  # noqa: E402
from SpineSegLib.core.resample import resample_to_grid, resample_to_spacing

DATA = REPO.parent / "shared" / "data"


def crop_to_body(image: Image, margin: int = 3) -> tuple:
    _, y, x = np.nonzero(image.array > -500)
    y0, x0 = max(int(y.min()) - margin, 0), max(int(x.min()) - margin, 0)
    y1, x1 = int(y.max()) + margin + 1, int(x.max()) + margin + 1
    return (slice(None), slice(y0, y1), slice(x0, x1)), (x0, y0, 0)


def lidc_sample(out: Path, force: bool) -> None:
    ct = read_image(DATA / "ct" / "lidc-idri-0001" / "image.nii.gz")
    labels = read_image(DATA / "ct" / "lidc-idri-0001" / "vertebrae.nii.gz")
    small = resample_to_spacing(ct, (2.5, 2.5, 2.5))
    small.array = np.clip(np.round(small.array), -1024, 3071).astype(np.int16)
    box, first = crop_to_body(small)
    cropped = Image(small.array[box], small.spacing, small.index_to_lps(first), small.direction)
    small_labels = resample_to_grid(labels, cropped, label=True)
    small_labels.array = small_labels.array.astype(np.uint8)
    write_image(cropped, out / "image.nii.gz", force=force)
    write_image(small_labels, out / "vertebrae.nii.gz", force=force)
    print(f"{out}: {cropped.shape} voxels of {cropped.spacing} mm")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="replace existing sample files")
    args = parser.parse_args()
    lidc_sample(REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm", args.force)


if __name__ == "__main__":
    main()
