"""What IIS inference checks before it runs: the input's size and modality, and where to start.

* :func:`check_extent` -- an image shorter than :data:`MIN_EXTENT_MM` (about one vertebra) along an
  axis is refused; smaller than one patch is fine (patches are padded).
* :func:`guess_modality` -- CT vs MR from the intensities alone; ``segment_vertebrae`` refuses a
  model of the other modality unless ``check_modality=False``.
* :func:`start_point_from_centerline` / :func:`centerline_start_point` -- a start point for the
  traversal from a spine centerline (the classical pipeline's, Revy et al.), so the search can be skipped.

No torch here: the Slicer module checks its input with these before it starts a run.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.iis.infer.checks import check_extent, guess_modality
    ct = read_image("ct.nii.gz")
    check_extent(ct)                 # raises InputError when the scan is too small
    modality, reason = guess_modality(ct)     # "ct" or "mr", and why
"""

from __future__ import annotations

import math

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image

MIN_EXTENT_MM = 20.0          # smaller than about one vertebra along an axis: refused


def guess_modality(image: Image) -> tuple[str, str]:
    """``("ct" | "mr", reason)`` from the intensities alone.

    CT holds Hounsfield units: air at -1000, fat around -100, values within -3100 ... 32767. MR
    magnitude images are never negative. CT when the values lie in the HU range and either at
    least 5 % of the voxels are air (-1100 to -850 HU) or at least 2 % are at or below -80 HU
    with a spread of at least 300 between the 0.5th and 99.5th percentiles (a crop inside the
    body: fat, soft tissue, bone; z-scored MR, also negative, spans only a few units).
    """
    a = np.asarray(image.array)
    if a.size > 4_000_000:  # a regular subsample is plenty for these fractions
        step = int(math.ceil((a.size / 4_000_000) ** (1 / 3)))
        a = a[::step, ::step, ::step]
    a = a.astype(np.float32, copy=False)
    low, high = np.percentile(a, [0.5, 99.5])
    air = float(((a >= -1100) & (a <= -850)).mean())
    dark = float((a <= -80).mean())
    in_range = low >= -3100 and high <= 32767
    if in_range and air >= 0.05:
        return "ct", f"{air:.0%} of the voxels are air (-1100 to -850 HU)"
    if in_range and dark >= 0.02 and high - low >= 300:
        return "ct", f"{dark:.0%} of the voxels at or below -80 HU, intensities {low:.0f} to {high:.0f}"
    if dark < 0.02:
        return "mr", f"only {dark:.1%} of the voxels are below -80, as in MR magnitude images (CT has air and fat)"
    return "mr", f"intensities {low:.1f} to {high:.1f} do not look like Hounsfield units"


def check_extent(image: Image, min_mm: float = MIN_EXTENT_MM) -> None:
    """Refuse a volume shorter than ``min_mm`` (about one vertebra) along any axis."""
    extent = np.asarray(image.size) * np.asarray(image.spacing)
    if (extent < min_mm).any():
        dims = " x ".join(f"{e:.1f}" for e in extent)
        vox = " x ".join(str(s) for s in image.size)
        raise InputError(f"the image is {dims} mm ({vox} voxels): too small for vertebra segmentation, which "
                         f"needs at least {min_mm:.0f} mm (about one vertebra) along every axis")


def start_point_from_centerline(points_lps, direction: str = "up") -> tuple:
    """The centerline point where the traversal should begin: the lowest (``up``) or highest (``down``)."""
    pts = np.asarray(points_lps, dtype=float).reshape(-1, 3)
    if not len(pts):
        raise InputError("the centerline has no points")
    row = int(np.argmin(pts[:, 2]) if direction == "up" else np.argmax(pts[:, 2]))
    return tuple(float(v) for v in pts[row])


def centerline_start_point(image: Image, direction: str = "up") -> tuple:
    """Start point from the classical pipeline's spine centerline (CT; Revy et al.): its lowest
    point for an upward traversal, its highest for a downward one."""
    from SpineSegLib.classical.pipeline import segment_spine

    result = segment_spine(image)
    return start_point_from_centerline(result.centerline_curve_lps, direction)
