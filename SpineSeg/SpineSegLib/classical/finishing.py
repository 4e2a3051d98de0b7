"""Filling the vertebral bodies (ours; not in Revy et al.).

At the paper's 150 HU threshold the bone mask of an osteoporotic vertebra is a cortical ring with
a speckled inside: its cancellous bone lies below the threshold. Reference segmentations are solid.
Per slice with bounding lines:

1. the convex hull of the mask in the body box (rows H1..H2, columns V2..V5) is added;
2. holes of the mask closed by a small disk are filled when their mean HU is that of cancellous
   bone rather than of the spinal canal (CSF and cord are darker), or when they are tiny.

Arrays are canonical ``[z, y, x]``.

Console use::

    from SpineSegLib.classical.finishing import fill_bodies
    solid = fill_bodies(mask, hu, lines, params, spacing_yx=(0.7, 0.7))
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SpineSegLib.classical.geometry import LinePositions
from SpineSegLib.classical.morphology import SLICE_CONNECTIVITY_4, disk_mm, per_slice

TINY_HOLE_MM2 = 20.0   # holes this small are filled whatever their HU


def fill_bodies(mask: np.ndarray, hu: np.ndarray, lines: LinePositions, params, spacing_yx) -> np.ndarray:
    """The mask with its vertebral bodies filled (steps 1-2 of the module docstring)."""
    if not mask.any():
        return mask.copy()
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    box = (slice(None), slice(max(box[1].start - 2, 0), box[1].stop + 2), slice(max(box[2].start - 2, 0), box[2].stop + 2))
    out = mask.copy()
    out[box] = _fill(mask[box], hu[box], lines, params, spacing_yx, box[1].start, box[2].start)
    return out


def _fill(mask, hu, lines, params, spacing_yx, row0, col0):
    from skimage.morphology import convex_hull_image  # scikit-image is installed on first use in Slicer
    sy, sx = spacing_yx
    out = mask.copy()
    for k in np.flatnonzero(lines.valid):
        h1, h2 = int(lines.h1[k]) - row0, int(round(lines.h2[k])) - row0
        v2, v5 = int(np.floor(lines.v2[k])) - col0, int(np.ceil(lines.v5[k])) - col0
        h1 = max(h1, 0)
        v2, v5 = max(v2, 0), min(v5, mask.shape[2] - 1)
        box = mask[k, h1:h2 + 1, v2:v5 + 1]
        if np.count_nonzero(box) >= 3:
            out[k, h1:h2 + 1, v2:v5 + 1] |= convex_hull_image(box)
    if params.fill_close_mm > 0:
        closed = ndimage.binary_closing(out, structure=per_slice(disk_mm(params.fill_close_mm, (sy, sx)))) | out
    else:
        closed = out
    holes, count = ndimage.label(~closed, structure=SLICE_CONNECTIVITY_4)
    if count:
        size = np.bincount(holes.ravel(), minlength=count + 1)
        total = np.bincount(holes.ravel(), weights=hu.ravel().astype(np.float64), minlength=count + 1)
        mean = total / np.maximum(size, 1)
        fill = (mean >= params.fill_min_hu) | (size * sy * sx <= TINY_HOLE_MM2)
        border = np.unique(np.concatenate([holes[:, 0].ravel(), holes[:, -1].ravel(),
                                           holes[:, :, 0].ravel(), holes[:, :, -1].ravel()]))
        fill[border] = False
        fill[0] = False
        out = out | fill[holes]
    return out

