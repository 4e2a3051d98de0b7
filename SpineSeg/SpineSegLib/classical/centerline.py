"""Spine centerline estimate (Revy et al., section 3.1).

1. the sagittal column estimate: the sagittal slice (column x) holding the most bone voxels;
2. the spine region localization map M = min(I_thresh * d_u, I_thresh * d_l) (Eq. 1-3), the bone
   mask convolved with the upper and the lower half of a disk, on the posterior half of the body
   only; computed with FFTs, slice by slice, and expressed as the bone fraction of the half-disk;
3. per axial slice the maximum of M within a band around the column estimate;
4. a quadratic fit of the maxima's x and y against z with RANSAC (scikit-image) and an L1 loss,
   which marks outliers and gives a smooth centerline.

Arrays are canonical ``[z, y, x]`` (x -> patient left, y -> posterior, z -> superior); positions
here are in voxel indices of the array they were computed on, the pipeline turns them into LPS mm.

Console use::

    from SpineSegLib.classical.centerline import localization_map, slice_maxima, fit_centerline
    m = localization_map(bone, posterior_start, radius_px=(20, 20))
    ys, xs, values = slice_maxima(m, column=256, halfwidth_px=57)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from SpineSegLib.classical.body import posterior_start
from SpineSegLib.classical.morphology import disk_mm, fill_small_holes, per_slice


def sagittal_column(bone: np.ndarray) -> int:
    """Index x of the sagittal slice with the most bone voxels (the paper's column estimate)."""
    counts = bone.sum(axis=(0, 1), dtype=np.int64)
    return int(np.argmax(counts))


def half_disks(radius_px_y: float, radius_px_x: float) -> tuple[np.ndarray, np.ndarray]:
    """The upper (anterior, y < 0 in the image) and lower (posterior, y > 0) half of a disk, Eq. 1-2."""
    ry, rx = int(np.floor(radius_px_y)), int(np.floor(radius_px_x))
    y, x = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    inside = (y / radius_px_y) ** 2 + (x / radius_px_x) ** 2 <= 1.0
    upper = inside & (y < 0)
    lower = inside & (y > 0)
    return upper, lower


def localization_map(bone: np.ndarray, posterior_start: np.ndarray, radius_px: tuple[float, float]) -> np.ndarray:
    """The spine region localization map M (Eq. 3) as a bone fraction in [0, 1], float32 [z, y, x].

    ``posterior_start[z]`` is the first row of the posterior half of slice z; bone in front of it
    is ignored, as in the paper ("only to the lower half of the axial slices").
    """
    nz, ny, nx = bone.shape
    rows = np.arange(ny)
    posterior = rows[None, :] >= np.asarray(posterior_start)[:, None]
    image = (bone & posterior[:, :, None]).astype(np.float32)
    upper, lower = half_disks(*radius_px)
    ky, kx = upper.shape
    shape = (sp_fft.next_fast_len(ny + ky - 1, real=True), sp_fft.next_fast_len(nx + kx - 1, real=True))
    spectrum = sp_fft.rfft2(image, s=shape, axes=(1, 2), workers=-1)
    out = None
    for kernel in (upper, lower):
        k = sp_fft.rfft2(kernel.astype(np.float32), s=shape)
        full = sp_fft.irfft2(spectrum * k[None], s=shape, axes=(1, 2), workers=-1)
        oy, ox = ky // 2, kx // 2
        conv = full[:, oy:oy + ny, ox:ox + nx] / float(kernel.sum())
        out = conv if out is None else np.minimum(out, conv)
    return out.astype(np.float32)


def slice_maxima(m: np.ndarray, column: int, halfwidth_px: int, plateau: float = 0.02
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice, the position (row, column; float) and value of the maximum of ``m`` within
    ``column +- halfwidth_px``.

    Where the map is flat at the top (a vertebral body wider than the disk saturates it), the
    position is the centroid of the connected plateau within ``plateau`` of the maximum.
    """
    nz, ny, nx = m.shape
    x0, x1 = max(column - halfwidth_px, 0), min(column + halfwidth_px + 1, nx)
    band = m[:, :, x0:x1]
    flat = np.argmax(band.reshape(nz, -1), axis=1)
    iy, ix = np.divmod(flat, x1 - x0)
    values = band.reshape(nz, -1)[np.arange(nz), flat]
    ys, xs = iy.astype(float), ix.astype(float)
    for z in range(nz):
        top = band[z] >= values[z] - plateau
        if np.count_nonzero(top) > 1:
            labels, _ = ndimage.label(top)
            py, px = np.nonzero(labels == labels[iy[z], ix[z]])
            ys[z], xs[z] = py.mean(), px.mean()
    return ys, xs + x0, values


class QuadraticCurve:
    """(y, x) = a + b t + c t^2: a least-squares quadratic in t for both coordinates, with the L1
    distance |dy| + |dx| as residual; the model class of :func:`skimage.measure.ransac`."""

    def __init__(self, coefficients=None):
        self.coefficients = coefficients          # (3, 2): rows for 1, t, t^2

    @staticmethod
    def design(t):
        t = np.asarray(t, float)
        return np.stack([np.ones_like(t), t, t * t], axis=1)

    @classmethod
    def from_estimate(cls, t, points):   # what skimage.measure.ransac calls from scikit-image 0.26 on
        model = cls()
        return model if model.estimate(t, points) else cls()

    def estimate(self, t, points):
        a = self.design(t)
        if len(np.unique(t)) < 3:
            self.coefficients = None
            return False
        self.coefficients = np.linalg.lstsq(a, np.asarray(points, float), rcond=None)[0]
        return True

    def __bool__(self):
        return self.coefficients is not None

    def predict(self, t):
        return self.design(t) @ self.coefficients

    def residuals(self, t, points):
        return np.abs(self.predict(t) - np.asarray(points, float)).sum(axis=1)


def _ransac_quadratic(z_mm, points_mm, residual_mm, seed):
    """Fit a QuadraticCurve of the points against z with RANSAC (L1 residuals); returns a predictor."""
    from skimage.measure import ransac

    centre, scale = float(np.mean(z_mm)), max(float(np.ptp(z_mm)) / 2.0, 1e-6)
    t = (np.asarray(z_mm, float) - centre) / scale
    median = np.median(points_mm, axis=0)
    if len(t) < 6:
        return lambda z: np.repeat(median[None], len(z), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = ransac((t, points_mm), QuadraticCurve, min_samples=3, residual_threshold=residual_mm,
                          max_trials=300, rng=seed)
    if model is None or not model:
        return lambda z: np.repeat(median[None], len(z), axis=0)
    return lambda z: model.predict((np.asarray(z, float) - centre) / scale)


def fit_centerline(z_mm: np.ndarray, points_mm: np.ndarray, valid: np.ndarray, residual_mm: float,
                   window_mm: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic fit of the per-slice (y, x) positions (mm) against z (mm), robust with RANSAC and an
    L1 loss (the sum of |dy| and |dx|), as in the paper.

    With ``window_mm`` > 0 and a longer scan, each slice takes its fit from the window of that
    length centred nearest to it (windows overlap by three quarters), so that a long spine with
    both kyphosis and lordosis is followed (ours). Returns the fitted (y, x) of every slice and the
    inlier flags (False on invalid slices).
    """
    z_mm = np.asarray(z_mm, float)
    points_mm = np.asarray(points_mm, float)
    valid = np.asarray(valid, bool)
    fitted = np.full_like(points_mm, np.nan)
    if not valid.any():
        return fitted, np.zeros(len(z_mm), bool)
    lo, hi = z_mm[valid].min(), z_mm[valid].max()
    if window_mm <= 0 or hi - lo <= window_mm:
        centres = np.array([(lo + hi) / 2.0])
        half = np.inf
    else:
        count = int(np.ceil((hi - lo - window_mm) / (window_mm / 4.0))) + 1
        centres = np.linspace(lo + window_mm / 2.0, hi - window_mm / 2.0, count)
        half = window_mm / 2.0
    nearest = np.argmin(np.abs(z_mm[:, None] - centres[None, :]), axis=1)
    for w, c in enumerate(centres):
        use = valid & (np.abs(z_mm - c) <= half)
        mine = nearest == w
        if not mine.any():
            continue
        predict = _ransac_quadratic(z_mm[use], points_mm[use], residual_mm, seed)
        fitted[mine] = predict(z_mm[mine])
    inliers = valid & (np.abs(points_mm - fitted).sum(axis=1) <= residual_mm)
    return fitted, inliers


@dataclass
class CenterlineEstimate:
    """Centerline of one volume, positions in (fractional) voxel indices of the grid it was computed on."""

    column: int                # sagittal column estimate (x index)
    maxima: np.ndarray         # (nz, 2) per-slice maxima of M, (y, x)
    values: np.ndarray         # (nz,) M at the maxima (bone fraction of the weaker half-disk)
    valid: np.ndarray          # (nz,) maxima strong enough to count
    fitted: np.ndarray         # (nz, 2) the RANSAC quadratic, (y, x)
    inliers: np.ndarray        # (nz,) RANSAC inliers
    centres: np.ndarray        # (nz, 2) the centre used downstream (inlier maximum or fitted point)


def prepare_for_localization(bone: np.ndarray, spacing_yx, close_mm: float, fill_radius_mm: float) -> np.ndarray:
    """Close small gaps of the cortex and fill the holes of hollow vertebral bodies (ours: bodies whose
    cancellous bone is below the threshold would otherwise look like rings to the half-disks)."""
    out = bone
    if close_mm > 0:
        out = ndimage.binary_closing(out, structure=per_slice(disk_mm(close_mm, spacing_yx)), border_value=0)
        out |= bone
    if fill_radius_mm > 0:
        out = fill_small_holes(out, np.pi * fill_radius_mm ** 2 / (spacing_yx[0] * spacing_yx[1]))
    return out


def estimate_centerline(bone: np.ndarray, body: np.ndarray, spacing_zyx, params, windowed: bool = True) -> CenterlineEstimate:
    """Section 3.1 on one (coarse) grid: column estimate, half-disk map, per-slice maxima, RANSAC fit.

    ``bone`` is the bone mask with the aorta and what lies in front of it already removed; with
    ``windowed`` false a single quadratic is fitted whatever the scan's length.
    """
    sz, sy, sx = (float(s) for s in spacing_zyx)
    start = posterior_start(body, params.posterior_fraction)
    # only the part behind the posterior start matters (with room for the disks and the holes)
    reach_x, reach_y = int(np.ceil(params.disk_radius_mm / sx)) + 1, int(np.ceil(params.disk_radius_mm / sy)) + 1
    y0 = max(int(start[start >= 0].min()) if (start >= 0).any() else 0, 0)
    y0 = max(y0 - reach_y - int(np.ceil(params.localization_fill_mm / sy)), 0)
    prepared = prepare_for_localization(bone[:, y0:], (sy, sx), params.localization_close_mm, params.localization_fill_mm)
    posterior = np.arange(y0, bone.shape[1])[None, :] >= start[:, None]
    column = sagittal_column(prepared & posterior[:, :, None])
    band = int(round(params.column_search_mm / sx))
    x0, x1 = max(column - band - reach_x, 0), min(column + band + reach_x + 1, bone.shape[2])
    m = localization_map(prepared[:, :, x0:x1], start - y0, (params.disk_radius_mm / sy, params.disk_radius_mm / sx))
    ys, xs, values = slice_maxima(m, column - x0, band)
    ys, xs = ys + y0, xs + x0
    valid = values >= params.min_localization_value
    z_mm = np.arange(bone.shape[0]) * sz
    points_mm = np.stack([ys * sy, xs * sx], axis=1)
    fitted_mm, inliers = fit_centerline(z_mm, points_mm, valid, params.ransac_residual_mm,
                                       params.centerline_window_mm if windowed else 0.0)
    fitted = fitted_mm / np.array([sy, sx])
    maxima = np.stack([ys, xs], axis=1)
    if params.centerline_keep_inliers:
        centres = np.where(inliers[:, None], maxima, fitted)
    else:
        centres = fitted.copy()
    return CenterlineEstimate(column, maxima, values, valid, fitted, inliers, centres)
