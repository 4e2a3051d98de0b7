"""Contrast detection and the descending aorta (ours; Revy et al. subtract an aorta segmentation
obtained elsewhere, together with the region in front of it).

Contrast-enhanced blood (120-700 HU) overlaps the 150 HU bone threshold, so the descending aorta,
lying next to the vertebral bodies, would join the bone mask. It is found as a tube:

1. blood-range voxels (block-averaged to ~1.5 mm and lightly smoothed) near a preliminary spine
   centerline -- in front of it and not to its right, as the descending thoracic and the abdominal
   aorta lie;
2. per slice, round and homogeneous blobs: maxima of the in-plane distance transform of that mask
   (the inscribed circle) with a radius in the aorta's range and a low HU spread;
3. across slices, the longest chain of such circles whose centres move little from slice to slice
   and whose radii agree (dynamic programming over the slices, small gaps bridged), cut to its
   longest part whose every slice holds blood at the centre (a column of vertebral bodies in a plain
   CT is broken by the discs, an aorta is not);
4. contrast counts as present when that chain is long enough (``aorta_min_length_mm``, or most of a
   shorter scan's extent); the aorta mask is then, slice by
   slice, the blood-range region around the chain's circle.

Arrays are canonical ``[z, y, x]`` (x -> patient left, y -> posterior, z -> superior); positions
are voxel indices of the array passed in.

Console use::

    from SpineSegLib.classical.aorta import find_descending_aorta
    aorta = find_descending_aorta(hu, body, spacing_zyx, spine_centres_yx, params)
    aorta.contrast, aorta.mask.sum()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from SpineSegLib.classical.morphology import block_mean, disk_mm, gather_windows

GRID_MM = 1.5            # the aorta is found on a grid of about this spacing
SMOOTH_MM = 1.0          # Gaussian smoothing of the blood-range image (noise)
MAX_STD_HU = 40.0        # HU spread inside the inscribed circle: blood is homogeneous, bone is not
MAX_STEP_FRACTION = 0.5  # largest centre shift between neighbouring slices, as a fraction of the radius ...
MIN_STEP_MM = 4.0        # ... but at least this (mm)
MAX_RADIUS_RATIO = 1.4   # radii of neighbouring chain links differ by at most this factor
MAX_GAP_MM = 6.0         # slices without a candidate that a chain may bridge (mm)
BEHIND_SPINE_MM = 5.0    # the aorta's centre lies at most this far behind the spine centre (mm)
RIGHT_OF_SPINE_MM = 20.0 # ... and at most this far to the patient's right of it (mm)
MIN_DISTANCE_MM = 18.0   # ... and at least this far from it (the vertebral body is not the aorta)
SHORT_SCAN_FRACTION = 0.8  # a scan shorter than the aorta's minimum length needs it over this fraction of its extent


@dataclass
class AortaResult:
    """The descending aorta in one canonical volume (voxel indices of the array searched)."""

    contrast: bool              # contrast-enhanced blood found (a long enough aorta chain)
    mask: np.ndarray            # bool [z, y, x]; empty without contrast
    centres: np.ndarray         # (nz, 2) (y, x) of the aorta per slice, NaN where none
    radii_mm: np.ndarray        # (nz,) radius of the inscribed circle per slice (mm), NaN where none
    length_mm: float            # superior-inferior extent of the chain (mm)
    median_hu: float            # median HU inside the mask (NaN when empty)

    @classmethod
    def none(cls, shape) -> "AortaResult":
        """No aorta (no contrast) in a volume of ``shape``."""
        nz = shape[0]
        return cls(False, np.zeros(shape, bool), np.full((nz, 2), np.nan), np.full(nz, np.nan), 0.0, np.nan)


def _candidates(blood, hu_coarse, spacing_c, params):
    """Inscribed circles of the blood-range mask per slice: arrays z, y, x (coarse px), r (mm), std (HU)."""
    sz, sy, sx = spacing_c
    # in-plane distance transform of every slice at once: a huge z spacing keeps slices apart
    edt = ndimage.distance_transform_edt(blood, sampling=(1e6, sy, sx)).astype(np.float32)
    peak = (edt == ndimage.maximum_filter(edt, size=(1, 3, 3))) & (edt >= params.aorta_min_radius_mm) \
        & (edt <= params.aorta_max_radius_mm)
    z, y, x = np.nonzero(peak)
    r = edt[z, y, x] + 0.5 * (sy + sx) / 2.0
    # HU spread in a disk of 0.7 x the smallest radius around each candidate (E[h^2] - E[h]^2)
    kernel = disk_mm(0.7 * params.aorta_min_radius_mm, (sy, sx)).astype(np.float32)
    kernel /= kernel.sum()
    mean = ndimage.correlate(hu_coarse, kernel[None], mode="nearest")
    mean_sq = ndimage.correlate(hu_coarse * hu_coarse, kernel[None], mode="nearest")
    std = np.sqrt(np.maximum(mean_sq[z, y, x] - mean[z, y, x] ** 2, 0.0))
    return z, y, x, r, std


def _longest_chain(z, y, x, r, spacing_c):
    """Indices of the longest chain of circles through increasing z (dynamic programming)."""
    sz, sy, sx = spacing_c
    n = len(z)
    if n == 0:
        return np.zeros(0, int)
    order = np.argsort(z, kind="stable")
    z, y, x, r = z[order], y[order], x[order], r[order]
    max_gap = max(1, int(round(MAX_GAP_MM / sz)) + 1)
    score = np.ones(n)
    back = np.full(n, -1)
    starts = np.searchsorted(z, np.arange(z.max() + 2))
    for j in range(n):
        lo = starts[max(z[j] - max_gap, 0)]
        hi = starts[z[j]]
        if hi <= lo:
            continue
        i = np.arange(lo, hi)
        step = np.hypot((y[i] - y[j]) * sy, (x[i] - x[j]) * sx)
        ratio = np.maximum(r[i], r[j]) / np.minimum(r[i], r[j])
        ok = (step <= np.maximum(MAX_STEP_FRACTION * np.minimum(r[i], r[j]), MIN_STEP_MM) * (z[j] - z[i])) \
            & (ratio <= MAX_RADIUS_RATIO)
        if ok.any():
            cand = i[ok]
            # prefer long chains, then the smoothest link
            best = cand[np.lexsort((step[ok], -score[cand]))[0]]
            score[j] = score[best] + (z[j] - z[best])
            back[j] = best
    end = int(np.argmax(score))
    chain = [end]
    while back[chain[-1]] >= 0:
        chain.append(int(back[chain[-1]]))
    return order[np.array(chain[::-1])]


def find_descending_aorta(hu: np.ndarray, body: np.ndarray, spacing_zyx, spine_centres: np.ndarray,
                          params) -> AortaResult:
    """Find the contrast-filled descending aorta near the spine (see the module docstring).

    ``spine_centres`` is a (nz, 2) array of preliminary spine centres (y, x) in voxels of ``hu``
    (NaN rows allowed: those slices are not searched).
    """
    nz, ny, nx = hu.shape
    sz, sy, sx = (float(s) for s in spacing_zyx)
    empty = AortaResult.none(hu.shape)
    known = np.isfinite(spine_centres).all(axis=1)
    if not known.any():
        return empty
    centres = np.where(known[:, None], spine_centres, np.nanmedian(spine_centres[known], axis=0))
    # per slice a window in front of and beside the spine centre, on a ~1.5 mm grid
    fy, fx = max(1, int(round(GRID_MM / sy))), max(1, int(round(GRID_MM / sx)))
    reach = params.aorta_search_mm + params.aorta_max_radius_mm
    before = (int(np.ceil(reach / (sy * fy))) * fy, int(np.ceil((RIGHT_OF_SPINE_MM + params.aorta_max_radius_mm) / (sx * fx))) * fx)
    after = (int(np.ceil((BEHIND_SPINE_MM + params.aorta_max_radius_mm) / (sy * fy))) * fy - 1, int(np.ceil(reach / (sx * fx))) * fx - 1)
    hu_w, first = gather_windows(hu, centres, before, after, -1000)
    body_w, _ = gather_windows(body, centres, before, after, False)
    spacing_c = (sz, sy * fy, sx * fx)
    hu_c = block_mean(hu_w, fy, fx)
    body_c = block_mean(body_w, fy, fx) >= 0.5
    smooth = ndimage.gaussian_filter(hu_c, (0, SMOOTH_MM / spacing_c[1], SMOOTH_MM / spacing_c[2]))
    blood = (smooth >= params.contrast_min_hu) & (smooth <= params.contrast_max_hu) & body_c
    blood[~known] = False
    z, y, x, r, std = _candidates(blood, hu_c, spacing_c, params)

    # candidate centres in voxels of ``hu``, and their position relative to the spine centre (mm)
    full_y = first[z, 0] + (y + 0.5) * fy - 0.5
    full_x = first[z, 1] + (x + 0.5) * fx - 0.5
    dy = (full_y - centres[z, 0]) * sy          # < 0: in front of the spine
    dx = (full_x - centres[z, 1]) * sx          # > 0: to the patient's left
    dist = np.hypot(dy, dx)
    keep = (std <= MAX_STD_HU) & (dy <= BEHIND_SPINE_MM) & (dx >= -RIGHT_OF_SPINE_MM) \
        & (dist >= MIN_DISTANCE_MM) & (dist <= params.aorta_search_mm)
    z, full_y, full_x, r = z[keep], full_y[keep], full_x[keep], r[keep]
    chain = _longest_chain(z, full_y, full_x, r, (sz, sy, sx))
    if len(chain) < 2:
        return empty
    cz, cy_, cx_, cr = z[chain], full_y[chain], full_x[chain], r[chain]
    keep = _continuous_blood(hu, cz, cy_, cx_, cr, (sy, sx), params)
    cz, cy_, cx_, cr = cz[keep], cy_[keep], cx_[keep], cr[keep]
    if len(cz) < 2:
        return empty
    length = float((cz.max() - cz.min()) * sz)
    if length < min(params.aorta_min_length_mm, SHORT_SCAN_FRACTION * (nz - 1) * sz):
        return empty

    # fill the slices the chain bridged, then segment each slice around its circle
    zs = np.arange(cz.min(), cz.max() + 1)
    aorta_centres = np.full((nz, 2), np.nan)
    radii = np.full(nz, np.nan)
    aorta_centres[zs, 0] = np.interp(zs, cz, cy_)
    aorta_centres[zs, 1] = np.interp(zs, cz, cx_)
    radii[zs] = np.interp(zs, cz, cr)
    mask = np.zeros(hu.shape, bool)
    for k in zs:
        mask_slice(hu[k], body[k], aorta_centres[k], radii[k], (sy, sx), params, out=mask[k])
    median = float(np.median(hu[mask])) if mask.any() else np.nan
    return AortaResult(True, mask, aorta_centres, radii, length, median)


def _continuous_blood(hu, cz, cy, cx, cr, spacing_yx, params) -> np.ndarray:
    """The longest run of chain links along which every slice, bridged ones included, holds blood at the
    chain's centre (the mean HU of a disk of half the radius in the contrast range): an aorta is one
    continuous lumen, whereas a column of vertebral bodies is broken by the darker discs (ours; a plain
    CT's cancellous bone is round, homogeneous and as bright as contrast blood). Returns a bool mask
    over the links."""
    sy, sx = spacing_yx
    zs = np.arange(cz.min(), cz.max() + 1)
    ys, xs, rs = np.interp(zs, cz, cy), np.interp(zs, cz, cx), np.interp(zs, cz, cr)
    ok = np.zeros(len(zs), bool)
    for i, k in enumerate(zs):
        rad = max(0.5 * rs[i], 2.0)
        y0, y1 = max(int(ys[i] - rad / sy), 0), int(ys[i] + rad / sy) + 2
        x0, x1 = max(int(xs[i] - rad / sx), 0), int(xs[i] + rad / sx) + 2
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = ((yy - ys[i]) * sy) ** 2 + ((xx - xs[i]) * sx) ** 2 <= rad ** 2
        values = hu[k, y0:y1, x0:x1][inside[:hu.shape[1] - y0, :hu.shape[2] - x0]]
        ok[i] = values.size > 0 and params.contrast_min_hu <= float(values.mean()) <= params.contrast_max_hu
    # the longest run of good slices, then the links inside it
    best, run_start, best_range = 0, None, (0, -1)
    for i, good in enumerate(np.append(ok, False)):
        if good and run_start is None:
            run_start = i
        elif not good and run_start is not None:
            if i - run_start > best:
                best, best_range = i - run_start, (zs[run_start], zs[i - 1])
            run_start = None
    return (cz >= best_range[0]) & (cz <= best_range[1])


def mask_slice(hu2d, body2d, centre, radius_mm, spacing_yx, params, out):
    """The aorta in one slice: the blood-range region connected to the circle's centre, within a disk
    somewhat larger than the circle (an oblique or elliptic aorta), holes filled."""
    sy, sx = spacing_yx
    reach = 1.35 * radius_mm + 3.0
    ry, rx = reach / sy, reach / sx
    cy, cx = centre
    y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 2, hu2d.shape[0])
    x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 2, hu2d.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    window = ndimage.gaussian_filter(hu2d[y0:y1, x0:x1].astype(np.float32), (0.7 / sy, 0.7 / sx))
    yy, xx = np.ogrid[y0:y1, x0:x1]
    disk = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    blood = (window >= params.contrast_min_hu) & (window <= params.contrast_max_hu) & disk & body2d[y0:y1, x0:x1]
    labels, count = ndimage.label(blood)
    iy, ix = int(round(cy)) - y0, int(round(cx)) - x0
    if count == 0 or not (0 <= iy < y1 - y0 and 0 <= ix < x1 - x0) or labels[iy, ix] == 0:
        # the centre itself may miss (noise): take the largest piece inside the circle
        core = (((yy - cy) * sy) ** 2 + ((xx - cx) * sx) ** 2 <= radius_mm ** 2) & blood
        if not core.any():
            return
        ids, counts = np.unique(labels[core], return_counts=True)
        region = labels == ids[np.argmax(counts)]
    else:
        region = labels == labels[iy, ix]
    background, count = ndimage.label(~region)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    holes = ~np.isin(background, border) & (background > 0)
    out[y0:y1, x0:x1] |= region | holes


def remove_from_bone(bone: np.ndarray, aorta: AortaResult, spacing_zyx, margin_mm: float = 1.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The bone mask without the aorta (grown by ``margin_mm``), and the same without, in addition,
    the rows in front of the aorta's front edge (the heart and the great vessels), slice by slice.

    Returns ``(without_aorta, without_aorta_and_front)``.
    """
    if not aorta.contrast or not aorta.mask.any():
        return bone, bone
    sz, sy, sx = spacing_zyx
    footprint = disk_mm(margin_mm, (sy, sx))
    box = ndimage.find_objects(aorta.mask.astype(np.uint8))[0]
    py, px = footprint.shape[0], footprint.shape[1]
    box = (box[0], slice(max(box[1].start - py, 0), box[1].stop + py), slice(max(box[2].start - px, 0), box[2].stop + px))
    without = bone.copy()
    grown = ndimage.binary_dilation(aorta.mask[box], structure=footprint[None]) if margin_mm > 0 else aorta.mask[box]
    without[box] &= ~grown
    front_cut = without.copy()
    rows = aorta.mask.any(axis=2)
    has = rows.any(axis=1)
    front = np.argmax(rows, axis=1)
    for k in np.flatnonzero(has):
        front_cut[k, : front[k]] = False
    return without, front_cut


def connected_blood(hu: np.ndarray, aorta: AortaResult, spacing_zyx, grid_mm: float = 2.0, core_mm: float = 4.0,
                    window_hu: float = 130.0, min_hu: float = 300.0) -> np.ndarray:
    """The aorta mask plus the contrast-filled vessels and heart chambers joined to it (ours).

    An arterial-phase CT (the aorta's median at least ``min_hu``) fills the arch, the ascending aorta and the
    heart with blood as bright as bone, and a stent-graft puts a metal ring around it: the half-disk map then
    follows the aorta instead of the spine. Blood is what lies within ``window_hu`` of the aorta's median;
    its thick parts (``core_mm`` from the edge: a cortex is thinner, a vertebral body's core far darker) that
    touch the aorta found, grown back to their edges, are removed with it. Works on a ~``grid_mm`` grid."""
    if not aorta.contrast or not np.isfinite(aorta.median_hu) or aorta.median_hu < min_hu:
        return aorta.mask
    f = max(1, int(round(grid_mm / spacing_zyx[1])))
    coarse = np.asarray(spacing_zyx, float) * [1, f, f]
    blood = np.abs(hu[:, ::f, ::f].astype(np.float32) - aorta.median_hu) <= window_hu
    core = ndimage.distance_transform_edt(blood, sampling=coarse) >= core_mm
    labels, _ = ndimage.label(core)
    touching = np.unique(labels[core & aorta.mask[:, ::f, ::f]])
    touching = touching[touching > 0]
    if touching.size == 0:
        return aorta.mask
    kept = np.isin(labels, touching)
    kept |= blood & (ndimage.distance_transform_edt(~kept, sampling=coarse) <= core_mm + coarse[1])
    full = np.repeat(np.repeat(kept, f, axis=1), f, axis=2)[:, :hu.shape[1], :hu.shape[2]]
    return aorta.mask | full
