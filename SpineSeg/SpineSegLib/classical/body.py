"""The patient's body in a canonical CT volume, and the crop to it (ours; the paper starts from the
bone mask directly).

The body mask drops what lies outside the patient -- the table, cushions, arms lying apart from
the trunk, the padding outside the reconstruction circle -- so that none of it enters the bone
mask, and its per-slice extent gives the "posterior half of the axial slice" of section 3.1.

Arrays are canonical ``[z, y, x]`` (x -> patient left, y -> posterior, z -> superior).

Console use::

    from SpineSegLib.classical.body import body_mask
    body = body_mask(hu, spacing_zyx=(2.5, 0.7, 0.7), threshold_hu=-400)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import NoSpineFoundError
from SpineSegLib.classical.morphology import SLICE_CONNECTIVITY_4, disk_mm, per_slice

COARSE_SPACING_MM = 2.0      # the body outline needs no finer grid
TABLE_OPENING_MM = 4.0       # opening that detaches a thin table or cushion from the back


def body_mask(hu: np.ndarray, spacing_zyx, threshold_hu: float = -400.0, margin_mm: float = 0.0):
    """The body of a canonical CT array (lungs and bowel gas included, table excluded) and the box
    around it.

    Computed on a ~2 mm in-plane grid; returns ``(box, mask)`` where ``box`` is the bounding box
    (slices) of the body grown by ``margin_mm`` in-plane, and ``mask`` the full-resolution body mask
    inside that box.
    """
    sy, sx = float(spacing_zyx[1]), float(spacing_zyx[2])
    fy, fx = max(1, int(round(COARSE_SPACING_MM / sy))), max(1, int(round(COARSE_SPACING_MM / sx)))
    coarse = hu[:, fy // 2::fy, fx // 2::fx] > threshold_hu
    if not coarse.any():
        raise NoSpineFoundError(f"no body found: no voxel above {threshold_hu:g} HU")
    coarse = ndimage.binary_fill_holes(coarse, structure=SLICE_CONNECTIVITY_4)
    opened = ndimage.binary_opening(coarse, structure=per_slice(disk_mm(TABLE_OPENING_MM, (sy * fy, sx * fx))))
    if opened.any():
        coarse = opened
    labels, count = ndimage.label(coarse)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        coarse = labels == int(np.argmax(sizes))
    coarse = ndimage.binary_fill_holes(coarse, structure=SLICE_CONNECTIVITY_4)
    # coarse voxel k stands for full rows k*f ... k*f + f - 1
    cbox = ndimage.find_objects(coarse.astype(np.uint8))[0]
    my, mx = int(np.ceil(margin_mm / sy)), int(np.ceil(margin_mm / sx))
    y0, y1 = max(cbox[1].start * fy - my, 0), min(cbox[1].stop * fy + my, hu.shape[1])
    x0, x1 = max(cbox[2].start * fx - mx, 0), min(cbox[2].stop * fx + mx, hu.shape[2])
    rows = np.minimum(np.arange(y0, y1) // fy, coarse.shape[1] - 1)
    cols = np.minimum(np.arange(x0, x1) // fx, coarse.shape[2] - 1)
    mask = coarse[:, rows[:, None], cols[None, :]]
    return (slice(0, hu.shape[0]), slice(y0, y1), slice(x0, x1)), mask


def posterior_start(body: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Per slice, the first row of the posterior part of the body: ``fraction`` of the way from the
    body's most anterior to its most posterior row (0.5 = the posterior half); -1 where the slice is empty."""
    rows = body.any(axis=2)
    any_row = rows.any(axis=1)
    first = np.argmax(rows, axis=1)
    last = rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)
    return np.where(any_row, np.floor(first + fraction * (last - first)).astype(int), -1)
