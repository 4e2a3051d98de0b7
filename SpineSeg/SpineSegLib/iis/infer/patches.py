"""Where a traversal patch lies, and cutting it out of the model grid.

A patch is a box of ``patch_size`` voxels ``[z, y, x]`` of the model grid centred at a voxel; it may
reach beyond the volume, and those parts are padding (``pad_value`` for the image, 0 for the
memory). Patch centres along an axis come in half-patch steps, the first patch starting at 0 and the
last ending at the volume's end (:func:`axis_positions`), so every voxel is seen.

Console use::

    from SpineSegLib.iis.infer.patches import axis_positions, extract_patch, make_box
    box = make_box(grid.image, (40, 60, 60), (64, 64, 64))   # grid: preprocess.to_model_grid(...)
    patch = extract_patch(grid.image.array, box, -1.0)          # [64, 64, 64], padded outside
    box.centre_lps, box.size_mm                                 # what a Slicer ROI shows
    axis_positions(300, 128, 64)                                # [64, 128, 192, 236]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from SpineSegLib.core.image import Image


@dataclass
class PatchBox:
    """Where a patch lies: on the model grid (voxels, ``[z, y, x]``) and in the patient (LPS mm).

    ``centre_lps``/``size_mm``/``axes_lps`` describe the box a Slicer ROI shows (size along the
    patch axes i, j, k = x, y, z of the model grid; ``axes_lps`` columns are those axes' unit
    vectors in LPS -- Slicer RAS: negate the first two coordinates). ``start_voxel`` may be
    negative and ``start + size`` may pass the volume's end: those parts are padding.
    """

    centre_voxel: tuple
    start_voxel: tuple
    size_voxels: tuple
    centre_lps: tuple
    size_mm: tuple
    axes_lps: tuple
    origin_lps: tuple        # LPS of the patch's first voxel
    spacing_mm: tuple        # (i, j, k)

    def clipped(self, shape) -> tuple[tuple, tuple]:
        """``(grid_slices, patch_slices)`` of the part of the patch inside a volume of ``shape``."""
        grid, patch = [], []
        for s, n, size in zip(self.start_voxel, self.size_voxels, shape):
            lo, hi = max(s, 0), min(s + n, size)
            hi = max(hi, lo)
            grid.append(slice(lo, hi))
            patch.append(slice(lo - s, hi - s))
        return tuple(grid), tuple(patch)

    def image(self, array: np.ndarray) -> Image:
        """``array`` (patch-shaped, ``[z, y, x]``) as an :class:`Image` with the patch's geometry."""
        return Image(array, self.spacing_mm, self.origin_lps, np.asarray(self.axes_lps, dtype=float).T)

    def to_dict(self) -> dict:
        return {
            "centre_lps": [round(float(v), 3) for v in self.centre_lps],
            "size_mm": [round(float(v), 3) for v in self.size_mm],
            "axes_lps": [[round(float(v), 6) for v in axis] for axis in self.axes_lps],
            "origin_lps": [round(float(v), 3) for v in self.origin_lps],
            "spacing_mm": [round(float(v), 6) for v in self.spacing_mm],
            "centre_voxel_zyx": [int(v) for v in self.centre_voxel],
            "start_voxel_zyx": [int(v) for v in self.start_voxel],
            "size_voxels_zyx": [int(v) for v in self.size_voxels],
        }


def make_box(grid: Image, centre, patch_size) -> PatchBox:
    """The box of a patch of ``patch_size`` ``[z, y, x]`` centred at voxel ``centre`` of ``grid``."""
    centre = tuple(int(c) for c in centre)
    size = tuple(int(p) for p in patch_size)
    start = tuple(c - p // 2 for c, p in zip(centre, size))
    geometric_centre_ijk = [start[2 - a] + (size[2 - a] - 1) / 2.0 for a in range(3)]
    axes = tuple(tuple(float(v) for v in grid.direction[:, a]) for a in range(3))
    return PatchBox(
        centre_voxel=centre,
        start_voxel=start,
        size_voxels=size,
        centre_lps=tuple(float(v) for v in grid.index_to_lps(geometric_centre_ijk)),
        size_mm=tuple(size[2 - a] * grid.spacing[a] for a in range(3)),
        axes_lps=axes,
        origin_lps=tuple(float(v) for v in grid.index_to_lps([start[2], start[1], start[0]])),
        spacing_mm=tuple(grid.spacing),
    )


def extract_patch(array: np.ndarray, box: PatchBox, pad_value) -> np.ndarray:
    """The patch of ``array`` under ``box``; parts outside the volume hold ``pad_value``."""
    out = np.full(box.size_voxels, pad_value, dtype=array.dtype)
    grid, patch = box.clipped(array.shape)
    out[patch] = array[grid]
    return out


def axis_positions(n: int, p: int, step: int) -> list[int]:
    """Patch centres along one axis of length ``n`` with patch ``p`` and ``step``: the first patch
    starts at 0, the last ends at ``n`` (a volume shorter than the patch gets one, centred)."""
    if n <= p:
        return [n // 2]  # one patch, padded on both sides
    last = n - p + p // 2
    out = list(range(p // 2, last + 1, max(1, step)))
    if out[-1] != last:
        out.append(last)
    return out


def round_half_up(values) -> tuple:
    """Voxel coordinates rounded to the nearest integer, halves upward (``np.round`` rounds them to even)."""
    return tuple(int(math.floor(float(v) + 0.5)) for v in values)


def bbox_slices(mask: np.ndarray, margin: int = 0) -> tuple:
    """Slices of the bounding box of ``mask`` grown by ``margin`` (clipped to the array; empty for an empty mask)."""
    idx = np.nonzero(mask)
    if not idx[0].size:
        return tuple(slice(0, 0) for _ in mask.shape)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + 1 + margin, n))
                 for i, n in zip(idx, mask.shape))
