"""The lines that bound the vertebra in each axial slice (Revy et al., section 3.2, Figure 3).

Rows grow towards posterior (anterior at the top of the slice), columns towards the patient's left.

* **H3** -- end of the spinous process: the most posterior bone of the maximum intensity
  projection across sagittal slices (the bone mask projected along x), as the paper does; we
  project only a band around the centerline and keep the projection's part that is connected to
  the centerline, so that the scapulae or a table cannot be taken for it;
* **H1** -- top (front) of the vertebral body: the most anterior mask pixel in a band of columns
  around the centerline;
* **H2** -- one third of the way from H1 to H3 (the upper third of the vertebra);
* **V4** -- centre column: the median of the mask's pixels across columns (where the cumulative
  column sum passes half);
* **V2, V5** -- the vertebral body's widest extent between H1 and H2, on the run of mask pixels
  through V4 (the mask's holes filled for the measurement);
* **V1, V6** -- V2 and V5 shifted outwards by the body's width; the mask is discarded outside
  V1..V6 (the ribs), and in front of H1 and behind H3;
* **V3** -- the centre column again, on the cut mask.

Arrays are canonical ``[z, y, x]``; positions are voxel indices (NaN where a slice has none).

Console use::

    from SpineSegLib.classical.bounding_lines import spinous_end, bounding_lines
    h3 = spinous_end(bone, centres, use, band_px=43)
    lines, cut = bounding_lines(rough, h3, centres, use, params, spacing_yx=(0.7, 0.7))
    lines.h1[k], lines.v3[k]             # a LinePositions: row of H1, column of V3 on slice k
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SpineSegLib.classical.geometry import LinePositions
from SpineSegLib.classical.morphology import fill_small_holes

CONSISTENCY_WINDOW_MM = 75.0   # a slice's body depth and width are compared with the slices this far around
DEPTH_PERCENTILE = 50.0        # ... depth with this percentile of theirs, width with a higher one (slices where
WIDTH_PERCENTILE = 70.0        # the body was missed are narrow, but their H1 is still the body's front) ...
OUTLIER_RATIO = 1.3            # ... and count as outliers beyond this ratio of it ...
OUTLIER_MARGIN_MM = 6.0        # ... plus this margin (mm)
NARROW_RATIO = 0.7             # a body narrower than this ratio of its neighbours' width lost its cortex (low
                               # density): it gets the neighbours' width (0.5-0.8 give the same masks on the shared
                               # CTs; 0.6 made a 15-degree oblique grid of LIDC differ from the original by Dice 0.885)


def spinous_end(bone: np.ndarray, centres: np.ndarray, use: np.ndarray, band_px: int) -> np.ndarray:
    """H3: per slice the most posterior row of the sagittal MIP of ``bone`` (in a band of columns
    around each slice's centre), within the MIP's part connected to the centres."""
    nz, ny, nx = bone.shape
    mip = np.zeros((nz, ny), bool)
    for k in np.flatnonzero(use):
        cx = int(round(centres[k, 1]))
        mip[k] = bone[k, :, max(cx - band_px, 0):min(cx + band_px + 1, nx)].any(axis=1)
    labels, _ = ndimage.label(mip, structure=np.ones((3, 3), bool))
    k = np.flatnonzero(use)
    rows = np.clip(np.round(centres[k, 0]).astype(int), 0, ny - 1)
    # the component under each centre, or the nearest one behind it on that slice
    hit = set()
    for kk, r in zip(k, rows):
        behind = np.flatnonzero(labels[kk, r:])
        if labels[kk, r]:
            hit.add(labels[kk, r])
        elif behind.size:
            hit.add(labels[kk, r + behind[0]])
    keep = np.isin(labels, list(hit)) if hit else np.zeros_like(mip)
    any_row = keep.any(axis=1)
    last = ny - 1 - np.argmax(keep[:, ::-1], axis=1)
    return np.where(any_row & use, last, np.nan).astype(float)


def median_column(mask2d: np.ndarray) -> float:
    """The column where the cumulative count of mask pixels passes half (NaN for an empty mask)."""
    counts = mask2d.sum(axis=0)
    total = counts.sum()
    if total == 0:
        return np.nan
    return float(np.searchsorted(np.cumsum(counts), total / 2.0))


def _widest_run(rows2d: np.ndarray, column: int) -> tuple[float, float]:
    """Leftmost and rightmost column of the runs through ``column`` over the rows of ``rows2d``."""
    left, right = np.inf, -np.inf
    for row in rows2d:
        if not row[column]:
            continue
        off = np.flatnonzero(~row)
        lo = off[off < column]
        hi = off[off > column]
        left = min(left, (lo[-1] + 1) if lo.size else 0)
        right = max(right, (hi[0] - 1) if hi.size else row.size - 1)
    return (left, right) if np.isfinite(left) else (np.nan, np.nan)


def bounding_lines(mask: np.ndarray, h3: np.ndarray, centres: np.ndarray, use: np.ndarray, params,
                   spacing_yx, slice_mm: float = 0.0) -> tuple[LinePositions, np.ndarray]:
    """Compute H1, H2, V1 ... V6 (H3 given) and return them with the mask cut to V1..V6 x H1..H3.

    Slices whose body reaches much farther in front of the centre, or is much wider, than on the
    neighbouring slices (contrast-filled heart or vessels joined to the bone) get their H1 moved back
    to the bone's own front behind the neighbours' depth, and V2/V5 narrowed to their width (ours;
    ``slice_mm``: the slice spacing, 0 = no such check).
    """
    nz, ny, nx = mask.shape
    sy, sx = spacing_yx
    band = max(int(round(params.top_band_mm / sx)), 0)
    filled = fill_small_holes(mask, np.pi * params.localization_fill_mm ** 2 / (sy * sx))
    lines = LinePositions.empty(nz)
    cut = np.zeros_like(mask)
    for k in np.flatnonzero(use):
        if mask[k].any() and np.isfinite(h3[k]):
            _slice_lines(k, mask, filled, h3, centres, band, params, lines, cut)
    for k, front, halfwidth, minhalf in _outliers(lines, centres, spacing_yx, slice_mm):
        lines.valid[k] = False
        _slice_lines(k, mask, filled, h3, centres, band, params, lines, cut, front, halfwidth, minhalf)
    _cut_between(mask, cut, lines, use)
    return lines, cut


def _slice_lines(k, mask, filled, h3, centres, band, params, lines: LinePositions, cut, front=0, halfwidth=np.inf,
                 minhalf=0.0):
    """The lines of slice k and its cut (in place); ``front``: the first row H1 may take, ``halfwidth``
    and ``minhalf``: the largest and the smallest half-width of the body around V4 (columns)."""
    nx = mask.shape[2]
    cut[k] = False
    cx = int(round(centres[k, 1]))
    strip = mask[k, front:, max(cx - band, 0):min(cx + band + 1, nx)].any(axis=1)
    if not strip.any():
        return
    h1 = front + int(np.argmax(strip))
    h3k = int(h3[k])
    if h3k <= h1:
        return
    h2 = h1 + (h3k - h1) / 3.0
    v4 = median_column(filled[k])
    v2, v5 = _widest_run(filled[k, h1:int(round(h2)) + 1], int(v4))
    if not np.isfinite(v2):
        return
    v2, v5 = max(v2, v4 - halfwidth), min(v5, v4 + halfwidth)
    if v5 - v2 + 1 < 2 * minhalf:
        v2, v5 = v4 - minhalf + 0.5, v4 + minhalf - 0.5
    width = (v5 - v2 + 1) * params.width_shift_factor
    v1, v6 = v2 - width, v5 + width
    sl = mask[k].copy()
    sl[:h1] = False
    sl[h3k + 1:] = False
    sl[:, :max(int(np.ceil(v1)), 0)] = False
    sl[:, int(np.floor(v6)) + 1:] = False
    cut[k] = sl
    v3 = median_column(sl)
    lines.h1[k], lines.h2[k], lines.h3[k] = h1, h2, h3k
    lines.v1[k], lines.v2[k], lines.v3[k], lines.v4[k], lines.v5[k], lines.v6[k] = v1, v2, v3, v4, v5, v6
    lines.valid[k] = True


def _outliers(lines: LinePositions, centres: np.ndarray, spacing_yx, slice_mm: float):
    """Slices whose body depth (centre row - H1) or width (V5 - V2) exceeds a percentile of the slices
    within ``CONSISTENCY_WINDOW_MM`` by more than ``OUTLIER_RATIO`` and ``OUTLIER_MARGIN_MM``:
    yields ``(k, first row allowed for H1, largest half-width, smallest half-width)`` (ours: a block of
    contrast-filled heart or vessels joined to the vertebra on a few slices must not widen the cut). A body
    narrower than ``NARROW_RATIO`` of that width (broken cortex of a low-density body) gets it as its smallest
    width, so that the cut keeps its arch."""
    sy, sx = spacing_yx
    known = np.flatnonzero(lines.valid)
    if known.size < 5 or slice_mm <= 0:
        return []
    depth = (centres[known, 0] - lines.h1[known]) * sy
    width = (lines.v5[known] - lines.v2[known] + 1) * sx
    out = []
    for i, k in enumerate(known):
        others = np.flatnonzero((np.abs(known - k) * slice_mm <= CONSISTENCY_WINDOW_MM) & (known != k))
        if others.size < 4:
            continue
        d, w = float(np.percentile(depth[others], DEPTH_PERCENTILE)), float(np.percentile(width[others], WIDTH_PERCENTILE))
        deep = depth[i] > OUTLIER_RATIO * d + OUTLIER_MARGIN_MM
        wide = width[i] > OUTLIER_RATIO * w + OUTLIER_MARGIN_MM
        narrow = width[i] < NARROW_RATIO * w
        if deep or wide or narrow:
            front = int(np.floor(centres[k, 0] - (d + OUTLIER_MARGIN_MM) / sy)) if deep else 0
            halfwidth = (0.5 * w + OUTLIER_MARGIN_MM) / sx if wide else np.inf
            out.append((int(k), max(front, 0), halfwidth, 0.5 * w / sx if narrow else 0.0))
    return out


def _cut_between(mask, cut, lines: LinePositions, use):
    """Slices on the spine without lines of their own (a disc, where the band around the centre
    holds no body) are cut with the lines interpolated from the slices above and below (ours)."""
    known = np.flatnonzero(lines.valid)
    if known.size == 0:
        return
    for k in np.flatnonzero(use & ~lines.valid):
        if not mask[k].any() or k < known[0] or k > known[-1]:
            continue
        h1, h3 = (np.interp(k, known, rows[known]) for rows in (lines.h1, lines.h3))
        v1, v6 = (np.interp(k, known, cols[known]) for cols in (lines.v1, lines.v6))
        sl = mask[k].copy()
        sl[:max(int(np.floor(h1)), 0)] = False
        sl[int(np.ceil(h3)) + 1:] = False
        sl[:, :max(int(np.ceil(v1)), 0)] = False
        sl[:, int(np.floor(v6)) + 1:] = False
        cut[k] = sl


def has_canal(mask2d: np.ndarray, h1: float, h3: float, column: float, spacing_yx, min_gap_mm: float = 5.0,
              max_gap_mm: float = 30.0, side_mm: float = 15.0) -> bool:
    """True when the slice shows a spinal canal (ours, a plausibility check): along the centre column,
    between H1 and H3, a gap without mask of ``min_gap_mm``-``max_gap_mm`` with bone in front of and
    behind it, and bone on both sides of it within ``side_mm`` (pedicles or laminae)."""
    sy, sx = spacing_yx
    r0, r1 = int(round(h1)), int(round(h3)) + 1
    c = int(round(column))
    half = max(int(round(1.5 / sx)), 0)
    side = max(int(round(side_mm / sx)), 1)
    if c - side < 0 or c + side >= mask2d.shape[1] or r1 - r0 < 3:
        return False
    centre = mask2d[r0:r1, c - half:c + half + 1].any(axis=1)
    rows = np.flatnonzero(centre)
    if rows.size < 2:
        return False
    gaps = np.diff(rows) - 1
    for g in np.flatnonzero((gaps * sy >= min_gap_mm) & (gaps * sy <= max_gap_mm)):
        a, b = r0 + rows[g] + 1, r0 + rows[g + 1]           # the gap's rows
        left = mask2d[a:b, c - side:c - half].any()
        right = mask2d[a:b, c + half + 1:c + side + 1].any()
        if left and right:
            return True
    return False
