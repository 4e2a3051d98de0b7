"""The rough spine mask (Revy et al., section 3.2, first half).

1. the centerline is dilated (a disk per axial slice) to make a seed that surely touches the
   vertebra;
2. a 2-D morphological reconstruction by dilation of that seed inside the bone mask, slice by
   slice: the bone pieces the seed touches (pieces closer than ``gap`` count as touching);
3. spinous-process recovery: the mask is dilated across axial slices (M_R), intersected with the
   bone mask (M_B), and a reconstruction with a limited number of iterations grows the mask inside
   M_R & M_B, so that a spinous process that is detached from its vertebra in one slice is taken
   back from the slices next to it, without running into the ribs.

Arrays are canonical ``[z, y, x]``; positions are voxel indices.

Console use::

    from SpineSegLib.classical.reconstruction import centerline_seed, reconstruct, recover_spinous
    seed = centerline_seed(bone.shape, centres, use, radius_px=(11.4, 11.4))
    rough = recover_spinous(reconstruct(bone, seed), bone, z_slices=2, iterations=9)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SpineSegLib.classical.morphology import SLICE_CONNECTIVITY_8, disk, keep_components_hit, per_slice


def centerline_seed(shape, centres: np.ndarray, use: np.ndarray, radius_px: tuple[float, float]) -> np.ndarray:
    """A disk of ``radius_px`` (y, x) around each slice's centre (``use`` marks the slices that get one)."""
    seed = np.zeros(shape, bool)
    footprint = disk(*radius_px)
    ry, rx = footprint.shape[0] // 2, footprint.shape[1] // 2
    for k in np.flatnonzero(use):
        cy, cx = int(round(centres[k, 0])), int(round(centres[k, 1]))
        y0, x0 = cy - ry, cx - rx
        ys = slice(max(y0, 0), min(cy + ry + 1, shape[1]))
        xs = slice(max(x0, 0), min(cx + rx + 1, shape[2]))
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        seed[k, ys, xs] |= footprint[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return seed


def midline_seed(shape, centres: np.ndarray, h3: np.ndarray, use: np.ndarray, halfwidth_px: int = 0,
                 front_px: int = 0) -> np.ndarray:
    """A band of columns (``centre +- halfwidth_px``) from ``front_px`` in front of the centre back to
    the end of the spinous process (H3), per slice (ours: seeds the body and the vertebral arch on
    slices where they are not joined, or where the centre fell into the canal)."""
    seed = np.zeros(shape, bool)
    for k in np.flatnonzero(use & np.isfinite(h3)):
        cy, cx = int(round(centres[k, 0])), int(round(centres[k, 1]))
        seed[k, max(cy - front_px, 0):min(int(h3[k]) + 1, shape[1]),
             max(cx - halfwidth_px, 0):max(cx + halfwidth_px + 1, 0)] = True
    return seed


def reconstruct(bone: np.ndarray, seed: np.ndarray, gap_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2-D reconstruction by dilation of ``seed`` in ``bone``, every slice at once.

    With a gap, pieces of bone closer than it are joined first (the components are taken on the
    bone mask dilated by half the gap, then cut back to the bone mask).
    """
    if max(gap_px) > 0:
        grown = ndimage.binary_dilation(bone, structure=per_slice(disk(gap_px[0] / 2.0, gap_px[1] / 2.0)))
        return keep_components_hit(grown, seed & grown) & bone
    return keep_components_hit(bone, seed, SLICE_CONNECTIVITY_8)


def recover_spinous(mask: np.ndarray, bone: np.ndarray, z_slices: int, iterations: int) -> np.ndarray:
    """Grow ``mask`` by at most ``iterations`` steps (6-connected, in 3-D) inside
    ``(mask dilated by z_slices across slices) & bone``."""
    if z_slices <= 0 or iterations <= 0 or not mask.any():
        return mask.copy()
    across = ndimage.binary_dilation(mask, structure=np.ones((2 * z_slices + 1, 1, 1), bool))
    base = (across & bone) | mask
    return ndimage.binary_dilation(mask, structure=ndimage.generate_binary_structure(3, 1),
                                   iterations=iterations, mask=base)
