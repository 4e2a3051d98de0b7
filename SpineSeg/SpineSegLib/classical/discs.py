"""Intervertebral disc levels along the body axis: an endplate-pair score and a dynamic-programming fit.

At a disc level the two endplates (cortical bone, brighter than the cancellous core) lie at equal
distances either side: close together where the disc is thin or blurred by thick slices (then the
level itself is bright), a few millimetres apart where the disc is thick and dark. Discs are *not*
reliably darker than the bodies' core in CT (about 100 HU in older patients, as bright as disc), so
the score looks for the pair, not for a minimum:

1. **Profiles.** At every millimetre ``s`` of the body axis (``classical.spine_axis``) and for tilts
   ``theta`` of -20 to +20 degrees in the sagittal plane (discs are wedge-shaped and the axis is smooth),
   the mean HU of a disk of radius ``r`` (a third of the body depth, 6-12 mm) perpendicular to the
   tilted normal is sampled at offsets ``t`` of -10 to +10 mm: ``P(s, theta, t)``.
2. **Endplate-pair score** ``E(s, theta) = max_d min(P(s, theta, +d), P(s, theta, -d)) - B(s)`` for
   ``d = 3 ... 6`` mm, where ``B`` is the running median of ``P(., ., 0)`` over ``baseline_mm`` (the
   cancellous level of the bodies nearby). The level's tilt is the ``theta`` that maximises it. The pair
   is at least 6 mm apart: with ``d = 0`` allowed, a single bright endplate scored like a disc and the
   levels sat on the upper endplate, 2-4 mm above the reference discs (LIDC-IDRI-0001); with ``d >= 3``
   they sit on the reference disc gaps, and a thin disc blurred into one bright band still scores.
3. **Dynamic programming** picks the increasing positions ``s_1 < ... < s_K`` (``K`` free) that maximise
   ``sum_k (E(s_k) - bias) - lam * sum_k log(g_k / g_{k-1})^2`` with gaps ``g_k = s_k - s_{k-1}`` in
   ``[min_height_mm, max_height_mm]``: a smooth vertebral-height prior in the spirit of Revy et al.'s
   DP (3.3), where heights may change slowly from cervical to lumbar but not jump.

Heights of 14-55 mm cover C3 to L5 with their discs (lumbar vertebra + disc reach 45-50 mm; with 48 mm
the DP split the lumbar vertebrae of the abdominal 3 mm example in two). Measured with
``Testing/benchmarks/vertebrae_eval.py``: on LIDC-IDRI-0001 (2.5 mm, C5-L3) 14 of the 15 levels lie between
two consecutive reference vertebrae (the C6/C7 level at the tilted top is missed; ``Testing/test_vertebrae.py``
asserts at least 13); on the abdominal 3 mm example (T11-S1) 6 levels for 6 reference discs, 3 of them within
3 mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.classical.spine_axis import SpineAxis


@dataclass
class DiscParams:
    tilts_deg: tuple = tuple(range(-20, 21, 5))
    offset_mm: float = 10.0            # profile half-length
    min_pair_mm: int = 3               # smallest half-distance between the endplates
    max_pair_mm: int = 6               # largest half-distance between the endplates
    baseline_mm: float = 25.0          # running-median window of the cancellous baseline
    min_height_mm: int = 14            # vertebra + disc height range (C3 ... L5)
    max_height_mm: int = 55
    smoothness: float = 20.0           # lam
    bias_hu: float = 25.0              # a level must be this much brighter than the baseline (HU)
    end_margin_mm: float = 5.0         # levels this close to the axis' ends are not trusted


@dataclass
class DiscLevels:
    """The disc levels found, bottom to top."""

    index: np.ndarray                  # (K,) positions on the axis (1 mm samples)
    centres: np.ndarray                # (K, 3) canonical mm
    normals: np.ndarray                # (K, 3) unit, superior, tilted to the disc
    scores: np.ndarray                 # (K,) endplate-pair score (HU above the baseline)


def _disk_offsets(radius: float, step: float = 2.0) -> np.ndarray:
    offsets = [(0.0, 0.0)]
    for r in np.arange(step, radius + 1e-6, step):
        n = max(int(2 * np.pi * r / 2.5), 1)
        offsets += [(r * np.cos(a), r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]
    return np.array(offsets)


def tilted_normals(axis: SpineAxis, theta) -> np.ndarray:
    """The axis tangent turned by ``theta`` (radians; one angle, or one per axis point as an (N, 1) array)
    about the lateral direction."""
    return np.cos(theta) * axis.tangent + np.sin(theta) * axis.anterior


def profiles(hu: np.ndarray, spacing_zyx, axis: SpineAxis, radius: float, params: DiscParams) -> np.ndarray:
    """``P[s, theta, t]``: mean HU of the tilted disks along the axis (step 1)."""
    disk = _disk_offsets(radius)
    offsets = np.arange(-params.offset_mm, params.offset_mm + 0.5, 1.0)
    spacing = np.asarray(spacing_zyx, float)
    out = np.zeros((len(axis.points), len(params.tilts_deg), offsets.size), np.float32)
    for i, theta in enumerate(np.deg2rad(params.tilts_deg)):
        normal = tilted_normals(axis, theta)
        in_plane = np.cross(normal, axis.lateral)
        points = (axis.points[:, None, None, :] + offsets[None, :, None, None] * normal[:, None, None, :]
                  + disk[None, None, :, 0, None] * axis.lateral[:, None, None, :]
                  + disk[None, None, :, 1, None] * in_plane[:, None, None, :])
        values = ndimage.map_coordinates(hu, (points / spacing).reshape(-1, 3).T, order=1, mode="nearest")
        out[:, i] = values.reshape(len(axis.points), offsets.size, len(disk)).mean(axis=2)
    return out


def endplate_score(profile: np.ndarray, params: DiscParams) -> np.ndarray:
    """``E[s, theta]`` (step 2)."""
    mid = profile.shape[2] // 2
    best = np.full(profile.shape[:2], -np.inf, np.float32)
    for d in range(params.min_pair_mm, params.max_pair_mm + 1):
        best = np.maximum(best, np.minimum(profile[:, :, mid + d], profile[:, :, mid - d]))
    baseline = ndimage.median_filter(profile[:, :, mid].mean(axis=1), size=int(params.baseline_mm) | 1, mode="nearest")
    return best - baseline[:, None]


def fit_levels(score: np.ndarray, params: DiscParams) -> list[int]:
    """The DP of step 3 on a 1 mm score curve; positions in increasing order."""
    n = score.size
    gaps = np.arange(params.min_height_mm, params.max_height_mm + 1)
    gain = score - params.bias_hu
    total = np.full((n, gaps.size), -np.inf)      # best sum with a level at i whose previous gap is gaps[j]
    previous = np.full((n, gaps.size), -1, int)   # index into gaps of the gap before (-1: i - g was the first level)
    log_ratio_sq = np.log(gaps[:, None] / gaps[None, :]) ** 2     # [this gap, previous gap]
    for i in range(params.min_height_mm, n):
        for j, g in enumerate(gaps):
            p = i - g
            if p < 0:
                break
            candidates = total[p] - params.smoothness * log_ratio_sq[j]
            jj = int(np.argmax(candidates))
            if candidates[jj] > gain[p]:
                total[i, j], previous[i, j] = candidates[jj] + gain[i], jj
            else:
                total[i, j], previous[i, j] = gain[p] + gain[i], -1
    single = int(np.argmax(gain))
    if not np.isfinite(total).any() or total.max() <= gain[single]:
        return [single] if gain[single] > 0 else []
    i, j = np.unravel_index(int(np.argmax(total)), total.shape)
    levels = [int(i)]
    while True:
        p = i - gaps[j]
        levels.append(int(p))
        if previous[i, j] < 0:
            break
        i, j = p, previous[i, j]
    return sorted(levels)


def find_discs(hu: np.ndarray, spacing_zyx, axis: SpineAxis, params: DiscParams | None = None) -> DiscLevels:
    """The disc levels along ``axis`` in the canonical CT ``hu`` (steps 1-3)."""
    params = params or DiscParams()
    if not 0 <= params.min_pair_mm <= params.max_pair_mm <= params.offset_mm:
        raise InputError(f"disc parameters: the endplate half-distances ({params.min_pair_mm}-{params.max_pair_mm} mm) "
                         f"must lie within the profile's half-length ({params.offset_mm:g} mm)")
    radius = float(np.clip(axis.body_depth_mm / 3.0, 6.0, 12.0))
    score = endplate_score(profiles(hu, spacing_zyx, axis, radius, params), params)
    best_tilt = np.deg2rad(np.asarray(params.tilts_deg, float))[np.argmax(score, axis=1)]
    curve = score.max(axis=1)
    margin = int(params.end_margin_mm)
    index = np.array([i for i in fit_levels(curve, params) if margin <= i < curve.size - margin], int)
    normals = tilted_normals(axis, best_tilt[:, None])[index]
    return DiscLevels(index, axis.points[index], normals, curve[index])
