"""What IIS inference checks before it runs: the input's size and modality, and where to start.

* :func:`check_extent` -- an image shorter than :data:`MIN_EXTENT_MM` (one vertebra with margin) along
  an axis is refused; smaller than one patch is fine (patches are padded).
* :func:`guess_modality` -- CT vs MR from the intensities alone; ``segment_vertebrae`` refuses a
  model of the other modality unless ``check_modality=False``. :func:`check_ct_encoding` refuses a CT
  whose values are no longer HU (stored as HU + 1024 without its rescale, or windowed into 0-255).
  Both live in :mod:`SpineSegLib.core.modality` (the dataset code guesses the modality too).
* :func:`start_point_from_centerline` / :func:`centerline_start_point` -- a start point for the
  traversal from a spine centerline (the classical pipeline's, Revy et al.), so the search can be skipped.

No torch here: the Slicer module checks its input with these before it starts a run.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.iis.infer.checks import check_ct_encoding, check_extent, guess_modality
    ct = read_image("ct.nii.gz")
    check_extent(ct)                 # raises InputError when the scan is too small
    check_ct_encoding(ct)            # raises InputError for a CT stored as HU + 1024 or windowed to 0-255
    modality, reason = guess_modality(ct)     # "ct" or "mr", and why
"""

from __future__ import annotations

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.modality import ct_encoding_problem, guess_modality

__all__ = ["MIN_EXTENT_MM", "centerline_start_point", "check_ct_encoding", "check_extent", "ct_encoding_problem",
           "guess_modality", "start_point_from_centerline"]

# A vertebra is 20-40 mm tall and the network segments one at a time: the scan must hold one with some margin.
MIN_EXTENT_MM = 30.0


def check_ct_encoding(image: Image) -> None:
    """Refuse an image that looks like a CT whose values are no longer Hounsfield units (stored as HU + 1024
    without its rescale, or windowed for display into 0-255): :func:`~SpineSegLib.core.modality.ct_encoding_problem`.
    Part of the modality check (``check_modality=False`` skips it), whatever the model's modality."""
    problem = ct_encoding_problem(image)
    if problem:
        raise InputError(problem)


def check_extent(image: Image, min_mm: float = MIN_EXTENT_MM) -> None:
    """Refuse a volume shorter than ``min_mm`` (one vertebra with margin) along any axis."""
    extent = np.asarray(image.size) * np.asarray(image.spacing)
    if (extent < min_mm).any():
        dims = " x ".join(f"{e:.1f}" for e in extent)
        vox = " x ".join(str(s) for s in image.size)
        raise InputError(f"the image is {dims} mm ({vox} voxels): too small for vertebra segmentation, which "
                         f"needs at least {min_mm:.0f} mm (one vertebra with margin) along every axis")


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
