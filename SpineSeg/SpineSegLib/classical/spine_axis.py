"""The axis through the vertebral bodies: a smooth curve, one point per millimetre of arc, with a local frame.

Revy et al.'s centerline (``classical.centerline``) runs through the spine as a whole; in lumbar and
abdominal scans it lies near the bodies' back wall. The disc search and the cuts need the middle of the
bodies, so on every axial slice of the spine mask this module takes the midline band (``band_mm`` either
side of the centerline), finds the body's front (the most anterior mask voxel, but never more than
``MAX_FRONT_MM`` in front of the centerline: mask that runs on into a contrast-filled heart is not body)
and its back (the first gap of more than ``gap_mm``, the spinal canal), and puts the axis half the running
median (over ``DEPTH_WINDOW_MM``) of the plausible body depths (``DEPTH_RANGE_MM``) behind the front; the points are median- then Gauss-smoothed along z and resampled at 1 mm of arc length.

Everything here is in the **canonical frame** of the CT (``core.orientation``): arrays ``[z, y, x]``
(z superior, y posterior, x left) and millimetre coordinates ``index * spacing`` in the same order.
The frame of each axis point: ``tangent`` (pointing superior), ``lateral`` (towards the patient's
left, perpendicular to the tangent) and ``anterior`` (``tangent x lateral``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import NoSpineFoundError

DEPTH_RANGE_MM = (12.0, 60.0)
SMOOTH_MM = 5.0
MEDIAN_MM = 15.0
MAX_FRONT_MM = 50.0
DEPTH_WINDOW_MM = 20.0     # running median of the body depth over this much either side
DEFAULT_DEPTH_MM = 30.0    # when no slice has a plausible depth


@dataclass
class SpineAxis:
    """The body axis, bottom to top, resampled at 1 mm of arc (canonical mm, ``[z, y, x]`` order)."""

    arc_mm: np.ndarray          # (N,) arc length from the lowest point
    points: np.ndarray          # (N, 3) mm
    tangent: np.ndarray         # (N, 3) unit, superior
    lateral: np.ndarray         # (N, 3) unit, patient's left
    anterior: np.ndarray        # (N, 3) unit
    body_depth_mm: float        # median antero-posterior depth of the bodies

    def nearest(self, points_mm: np.ndarray) -> np.ndarray:
        """Index of the nearest axis point for each of ``points_mm`` (M, 3)."""
        from scipy.spatial import cKDTree
        return cKDTree(self.points).query(points_mm)[1]


def body_rows(mask_slice: np.ndarray, centre, band: int, max_gap: int, max_front: int) -> tuple[int, int] | None:
    """Rows (y) of the body's front and back on one axial slice, in the band around the centerline point
    ``centre`` = (row, column): from the most anterior mask row, clipped to ``max_front`` rows in front of
    the centre (mask that runs on into a contrast-filled heart or aorta is not body), to the first gap of
    more than ``max_gap`` rows behind it (the canal)."""
    row, col = centre
    x0, x1 = max(int(col) - band, 0), int(col) + band + 1
    rows = np.flatnonzero(mask_slice[:, x0:x1].any(1))
    if rows.size == 0:
        return None
    if np.isfinite(row):
        rows = rows[rows >= int(row) - max_front]
        if rows.size == 0:
            return None
    breaks = np.flatnonzero(np.diff(rows) > max_gap + 1)
    back = rows[breaks[0]] if breaks.size else rows[-1]
    return int(rows[0]), int(back)


def slice_bodies(mask: np.ndarray, centres: np.ndarray, spacing_zyx, band_mm: float = 8.0,
                 gap_mm: float = 3.0, max_front_mm: float = MAX_FRONT_MM) -> np.ndarray:
    """``(nz, 3)``: body front row, back row and median column per slice (NaN without a body);
    ``centres`` (nz, 2): the spine centerline's (row, column) per slice, NaN where it has none."""
    _, sy, sx = spacing_zyx
    out = np.full((mask.shape[0], 3), np.nan)
    band, gap = max(int(round(band_mm / sx)), 1), max(int(round(gap_mm / sy)), 1)
    max_front = int(round(max_front_mm / sy))
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        row, col = centres[k]
        if not np.isfinite(col):
            row, col = np.nan, np.flatnonzero(mask[k].any(0)).mean()
        rows = body_rows(mask[k], (row, col), band, gap, max_front)
        if rows is None:
            continue
        cols = np.nonzero(mask[k, rows[0]:rows[1] + 1])[1]
        out[k] = (rows[0], rows[1], np.median(cols) if cols.size else col)
    return out


def _running_depth(depth: np.ndarray, plausible: np.ndarray, window: int) -> np.ndarray:
    out = np.full(depth.shape, np.nan)
    for k in range(depth.size):
        near = slice(max(k - window, 0), k + window + 1)
        values = depth[near][plausible[near]]
        if values.size:
            out[k] = np.median(values)
    return np.where(np.isfinite(out), out, np.nanmedian(out) if np.isfinite(out).any() else np.nan)


def body_axis(mask: np.ndarray, centres: np.ndarray, spacing_zyx) -> SpineAxis:
    """The body axis of a spine mask (canonical ``[z, y, x]``); ``centres`` (nz, 2): the spine centerline's
    (row, column) per slice, NaN where it has none."""
    sz, sy, sx = spacing_zyx
    bodies = slice_bodies(mask, centres, spacing_zyx)
    ks = np.flatnonzero(np.isfinite(bodies[:, 0]))
    if ks.size < 3:
        raise NoSpineFoundError(f"no spine found: a vertebral body shows on only {ks.size} axial slices")
    ks = np.arange(ks.min(), ks.max() + 1)
    ok = np.isfinite(bodies[ks, 0])
    front = np.interp(ks, ks[ok], bodies[ks[ok], 0])
    col = np.interp(ks, ks[ok], bodies[ks[ok], 2])
    depth = np.where(ok, (bodies[ks, 1] - bodies[ks, 0] + 1) * sy, np.nan)
    plausible = ok & (depth >= DEPTH_RANGE_MM[0]) & (depth <= DEPTH_RANGE_MM[1])
    depth = _running_depth(np.nan_to_num(depth), plausible, max(int(round(DEPTH_WINDOW_MM / sz)), 1))
    if not np.isfinite(depth).all():
        depth = np.full(ks.size, DEFAULT_DEPTH_MM)
    y = front * sy + depth / 2.0
    x = col * sx
    size = max(3, int(round(MEDIAN_MM / sz)) | 1)
    y = ndimage.gaussian_filter1d(ndimage.median_filter(y, size=size, mode="nearest"), SMOOTH_MM / sz, mode="nearest")
    x = ndimage.gaussian_filter1d(ndimage.median_filter(x, size=size, mode="nearest"), SMOOTH_MM / sz, mode="nearest")
    return resample_axis(np.stack([ks * sz, y, x], axis=1), float(np.median(depth)))


def resample_axis(points: np.ndarray, depth_mm: float, step_mm: float = 1.0) -> SpineAxis:
    """A polyline (bottom to top, mm) resampled at ``step_mm`` of arc, with its frame."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    samples = np.arange(0.0, arc[-1] + 1e-9, step_mm)
    pts = np.stack([np.interp(samples, arc, points[:, i]) for i in range(3)], axis=1)
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    left = np.array([0.0, 0.0, 1.0])
    lateral = left - (tangent @ left)[:, None] * tangent
    lateral /= np.maximum(np.linalg.norm(lateral, axis=1, keepdims=True), 1e-9)
    anterior = np.cross(tangent, lateral)
    if anterior[:, 1].mean() > 0:      # [z, y, x] with y posterior: anterior has y < 0
        anterior = -anterior
    return SpineAxis(samples, pts, tangent, lateral, anterior, depth_mm)
