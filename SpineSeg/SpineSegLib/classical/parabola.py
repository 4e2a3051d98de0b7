"""Parabola fit of the anterior contour of the vertebral body (Revy et al., section 3.3).

Per axial slice, with the centre c = (H2, V3) (the bottom of the upper third and the final centre
column):

1. a family of parabola segments with the same height (H2 - H1) and different focal lengths
   (given here by their half-widths in mm), apex up (anterior);
2. a directional gradient of the (smoothed) segmentation mask, g(x)^T (x - c)/|x - c|, which is
   strongly negative on the body's anterior border; every parabola of the family is tried at
   every shift along y, and the one with the lowest mean gradient along it (the sum normalised by
   its length) is kept;
3. dynamic programming (Eq. 5-6) moves each sample of that parabola radially, p -> c + mu (p - c)
   with mu from a fixed set, to where the CT's directional gradient (Eq. 4) is most negative,
   while penalising jumps of the radial distance between neighbouring samples (sigma);
4. refinement: the mask under (behind) the fitted points is the seed of a reconstruction whose
   base is that seed plus the opening of the mask above (in front of) the points, so parts that
   hang on by a few pixels (vessels with contrast) fall away.

Eq. 5 as printed uses mu[r'] in both the penalty and the data term; we read it as the usual
two-state recursion T[r, q] = max_r' (T[r', q-1] - sigma |mu[r'] |p[q-1] - c| - mu[r] |p[q] - c||)
- I_dir(c + mu[r] (p[q] - c)), in which the data term scores the current state r.

Arrays are canonical ``[z, y, x]``; positions are voxel indices (rows y, columns x); gradients are
per millimetre.

Console use::

    from SpineSegLib.classical.parabola import fit_parabolas, refine_with_points
    fits = fit_parabolas(mask, hu, lines, params, spacing_yx=(0.7, 0.7))
    refined = refine_with_points(mask, fits, params, spacing_yx=(0.7, 0.7))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from SpineSegLib.classical.geometry import LinePositions
from SpineSegLib.classical.morphology import disk_mm, gather_windows, keep_components_hit

CURVE_SAMPLES = 41   # samples along each parabola of the family during the exhaustive search


@dataclass
class ParabolaFit:
    """The chosen parabola and the DP points of one slice (voxel indices, rows y and columns x)."""

    slice_index: int
    centre: np.ndarray        # (2,) c = (row, col)
    apex: np.ndarray          # (2,) apex of the chosen parabola
    halfwidth_mm: float       # half-width of the chosen parabola at its height
    height_mm: float          # the family's height (H2 - H1)
    parabola: np.ndarray      # (Q, 2) the chosen parabola sampled at equal arc length
    points: np.ndarray        # (Q, 2) the DP-fitted points
    score: float              # mean directional gradient of the mask along the parabola (per mm)


def parabola_curve(halfwidth_mm: float, height_mm: float, count: int) -> np.ndarray:
    """(count, 2) points (dy, dx) in mm, apex at 0, opening towards +y, equally spaced along the
    arc from (height, -halfwidth) to (height, +halfwidth)."""
    x = np.linspace(-halfwidth_mm, halfwidth_mm, 161)
    y = height_mm * (x / halfwidth_mm) ** 2
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    s = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(s, arc, y), np.interp(s, arc, x)], axis=1)


def arc_length(halfwidth_mm: float, height_mm: float) -> float:
    p = parabola_curve(halfwidth_mm, height_mm, 201)
    return float(np.hypot(*np.diff(p, axis=0).T).sum())


def _directional(gy, gx, k, points_px, centre_px, spacing_yx):
    """Directional derivative (per mm) of the gradient field (gy, gx) at points of slice k, along
    the unit vector from the centre to each point (Eq. 4)."""
    sy, sx = spacing_yx
    coords = np.stack([np.full(len(points_px), k, float), points_px[:, 0], points_px[:, 1]])
    vy = ndimage.map_coordinates(gy, coords, order=1, mode="nearest")
    vx = ndimage.map_coordinates(gx, coords, order=1, mode="nearest")
    dy = (points_px[:, 0] - centre_px[0]) * sy
    dx = (points_px[:, 1] - centre_px[1]) * sx
    norm = np.maximum(np.hypot(dy, dx), 1e-6)
    return (vy * dy + vx * dx) / norm


def gradients(volume: np.ndarray, sigma_mm: float, spacing_yx) -> tuple[np.ndarray, np.ndarray]:
    """In-plane Gaussian derivatives d/dy and d/dx per millimetre, slice by slice (float32)."""
    sy, sx = spacing_yx
    volume = volume.astype(np.float32)
    sigma = (0.0, sigma_mm / sy, sigma_mm / sx)
    gy = ndimage.gaussian_filter(volume, sigma, order=(0, 1, 0), truncate=3.0) / sy
    gx = ndimage.gaussian_filter(volume, sigma, order=(0, 0, 1), truncate=3.0) / sx
    return gy, gx


def dp_fit(curve_px: np.ndarray, centre_px: np.ndarray, data: callable, scales: np.ndarray, penalty: float,
           spacing_yx) -> np.ndarray:
    """Eq. 5-6: for each sample q choose the scale mu[r] maximising the summed negated directional CT
    gradient minus ``penalty`` x the radial jumps (mm); returns the fitted points (Q, 2)."""
    sy, sx = spacing_yx
    rel = curve_px - centre_px
    dist = np.hypot(rel[:, 0] * sy, rel[:, 1] * sx)                     # |p[q] - c| in mm
    q_count, r_count = len(curve_px), len(scales)
    candidates = centre_px[None, None, :] + scales[None, :, None] * rel[:, None, :]   # (Q, R, 2)
    unary = -data(candidates.reshape(-1, 2)).reshape(q_count, r_count)
    total = unary[0].copy()
    back = np.zeros((q_count, r_count), int)
    for q in range(1, q_count):
        jump = np.abs(scales[:, None] * dist[q - 1] - scales[None, :] * dist[q])   # [r', r]
        options = total[:, None] - penalty * jump
        back[q] = np.argmax(options, axis=0)
        total = options[back[q], np.arange(r_count)] + unary[q]
    r = int(np.argmax(total))
    chosen = np.empty(q_count, int)
    for q in range(q_count - 1, -1, -1):
        chosen[q] = r
        r = back[q, r]
    return candidates[np.arange(q_count), chosen]


def fit_parabolas(mask: np.ndarray, hu: np.ndarray, lines: LinePositions, params, spacing_yx) -> list[ParabolaFit]:
    """Steps 1-3 for every slice with valid lines."""
    sy, sx = spacing_yx
    slices = np.flatnonzero(lines.valid)
    if slices.size == 0:
        return []
    # the gradients are needed only around each slice's centre c = (H2, V3): per slice a window
    # reaching the farthest DP candidate, plus the Gaussian's support
    margin = 4.0 * params.gradient_sigma_mm + 2.0
    height_max = float(np.nanmax(lines.h2[slices] - lines.h1[slices])) * sy
    front = params.dp_scale_max * (height_max + params.parabola_shift_mm) + margin
    back = params.dp_scale_max * params.parabola_shift_mm + margin
    side = params.dp_scale_max * params.parabola_max_halfwidth_mm + margin
    before = (int(np.ceil(front / sy)), int(np.ceil(side / sx)))
    after = (int(np.ceil(back / sy)), int(np.ceil(side / sx)))
    centres = np.nan_to_num(np.stack([lines.h2[slices], lines.v3[slices]], axis=1))
    mask_w, first = gather_windows(mask[slices], centres, before, after, False)
    hu_w, _ = gather_windows(hu[slices], centres, before, after, -1000)
    mgy, mgx = gradients(mask_w, params.gradient_sigma_mm, spacing_yx)
    cgy, cgx = gradients(hu_w, params.gradient_sigma_mm, spacing_yx)
    window_of = {int(k): i for i, k in enumerate(slices)}
    widths = np.linspace(params.parabola_min_halfwidth_mm, params.parabola_max_halfwidth_mm, params.parabola_count)
    shifts = np.arange(-params.parabola_shift_mm, params.parabola_shift_mm + 1e-9, params.parabola_step_mm)
    scales = np.linspace(params.dp_scale_min, params.dp_scale_max, params.dp_scale_count)
    fits = []
    for k in slices:
        w = window_of[int(k)]
        offset = first[w].astype(float)
        h1, h2, v3 = lines.h1[k], lines.h2[k], lines.v3[k]
        height = (h2 - h1) * sy
        if not np.isfinite(v3) or height < 2.0 * sy:
            continue
        centre = np.array([h2, v3])
        # the family sampled evenly in x; each sample weighted by its arc-length element, so the
        # weighted mean is the line integral normalised by the parabola's length
        t = np.linspace(-1.0, 1.0, CURVE_SAMPLES)
        xs = widths[:, None] * t[None, :]                                   # (W, S) mm
        ys = height * t[None, :] ** 2 * np.ones_like(xs)                    # (W, S) mm
        ds = np.sqrt(1.0 + (2.0 * height * t[None, :] / widths[:, None]) ** 2) * widths[:, None]
        apex_rows = h1 + shifts / sy
        pts = np.empty((len(widths), len(shifts), CURVE_SAMPLES, 2))
        pts[..., 0] = apex_rows[None, :, None] + ys[:, None, :] / sy
        pts[..., 1] = v3 + xs[:, None, :] / sx
        flat = pts.reshape(-1, 2)
        values = _directional(mgy, mgx, w, flat - offset, centre - offset, spacing_yx).reshape(len(widths), len(shifts), -1)
        scores = (values * ds[:, None, :]).sum(axis=2) / ds.sum(axis=1)[:, None]
        wi, si = np.unravel_index(int(np.argmin(scores)), scores.shape)
        width, apex_row = widths[wi], apex_rows[si]
        count = max(int(round(arc_length(width, height) / params.parabola_step_mm)) + 1, 5)
        curve = parabola_curve(width, height, count)
        curve_px = np.stack([apex_row + curve[:, 0] / sy, v3 + curve[:, 1] / sx], axis=1)
        points = dp_fit(curve_px, centre, lambda p: _directional(cgy, cgx, w, p - offset, centre - offset, spacing_yx),
                        scales, params.dp_penalty, spacing_yx)
        fits.append(ParabolaFit(int(k), centre, np.array([apex_row, v3]), float(width), float(height),
                                curve_px, points, float(scores[wi, si])))
    return fits


def anterior_region(shape2d, points: np.ndarray) -> np.ndarray:
    """Pixels in front of (above) the fitted points, within the columns they span."""
    order = np.argsort(points[:, 1])
    xs, ys = points[order, 1], points[order, 0]
    cols = np.arange(shape2d[1])
    inside = (cols >= np.ceil(xs[0])) & (cols <= np.floor(xs[-1]))
    boundary = np.interp(cols, xs, ys)
    rows = np.arange(shape2d[0])[:, None]
    return inside[None, :] & (rows < boundary[None, :])


def refine_with_points(mask: np.ndarray, fits: list[ParabolaFit], params, spacing_yx,
                       cut_anterior: bool = False) -> np.ndarray:
    """Step 4: seed = mask behind the DP points, base = seed + opening(mask in front of them);
    the reconstruction keeps the base's parts connected to the seed. With ``cut_anterior`` the mask
    in front of the points is dropped altogether (ours)."""
    out = mask.copy()
    footprint = disk_mm(params.refine_opening_mm, spacing_yx)
    for fit in fits:
        k = fit.slice_index
        above = anterior_region(mask.shape[1:], fit.points)
        seed = mask[k] & ~above
        if cut_anterior:
            out[k] = seed
            continue
        front = mask[k] & above
        if front.any():
            ys, xs = np.nonzero(front)
            py, px = footprint.shape[0], footprint.shape[1]
            y0, y1 = max(ys.min() - py, 0), ys.max() + py + 1
            x0, x1 = max(xs.min() - px, 0), xs.max() + px + 1
            opened = np.zeros_like(front)
            opened[y0:y1, x0:x1] = ndimage.binary_opening(front[y0:y1, x0:x1], structure=footprint)
            front = opened
        base = seed | front
        out[k] = keep_components_hit(base[None], seed[None])[0]
    return out
