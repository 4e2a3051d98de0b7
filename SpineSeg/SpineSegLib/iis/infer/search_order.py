"""Where the IIS traversal looks when it has nothing to follow: the order of the search positions.

The paper slides the patch by half its size until a fragment appears; it is silent on the order in
3-D. What this module chooses (and why):

* **Initial search.** Patch centres form a grid with half-patch steps on every axis
  (``patches.axis_positions``). Levels along z are visited in traversal direction (bottom first for
  ``up``); inside a level the (y, x) columns are ordered by their distance in mm from the *column
  centre* -- the start point if one is given, else the middle of the axial plane -- because the
  spine runs near the middle of the body, so the first hit comes after a few steps instead of a
  full raster. With a start point the search begins at its level (levels beyond it against the
  traversal direction are not searched).
* **Sliding after a vertebra** (:meth:`SearchOrder.after`): levels beyond the last vertebra in
  traversal direction, each level only the columns within ``fallback_columns`` half-patch steps of
  that vertebra's column (default 1: a 3 x 3 neighbourhood, centre first; None: whole levels). The
  spine does not jump sideways by more than half a patch between neighbouring vertebrae, and a
  whole-level raster at the end of every spine would cost up to 25 passes per level.

Console use::

    from SpineSegLib.iis.infer.search_order import SearchOrder
    order = SearchOrder(grid.image.shape, grid.image.spacing, (64, 64, 64), (32, 32, 32), "up")
    list(order.initial())[:3]          # the first patch centres [z, y, x] of the search
    list(order.after((40, 60, 60)))    # sliding on from a vertebra centred there
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.iis.infer.patches import axis_positions, round_half_up


def start_voxel(image: Image, start_voxel=None, start_lps=None) -> Optional[tuple]:
    """The model-grid voxel ``[z, y, x]`` of a start point given as a voxel or in LPS mm (None: no start
    point); a point outside the image is refused."""
    if start_voxel is not None:
        zyx = round_half_up(start_voxel)
    elif start_lps is not None:
        ijk = image.lps_to_index(np.asarray(start_lps, dtype=float))
        zyx = round_half_up(ijk[::-1])
    else:
        return None
    if not all(0 <= c < n for c, n in zip(zyx, image.shape)):
        where = f"LPS {tuple(round(float(v), 1) for v in start_lps)} mm" if start_lps is not None else f"voxel {zyx}"
        raise InputError(f"the start point ({where}) lies outside the image")
    return zyx


class SearchOrder:
    """Search positions (patch centres ``[z, y, x]``) on a model grid of ``shape`` and ``spacing`` (x, y, z mm).

    ``step``: ``[z, y, x]`` voxels between neighbouring positions; ``start``: the start voxel or None;
    ``fallback_columns``: the column radius (in steps) of the sliding after a vertebra, None for whole levels.
    """

    def __init__(self, shape, spacing, patch_size, step, direction: str = "up", start: Optional[tuple] = None,
                 fallback_columns: Optional[int] = 1):
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(spacing)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.step = tuple(int(s) for s in step)
        self.up = direction == "up"
        self.start = start
        self.fallback_columns = fallback_columns

    def levels(self) -> list[int]:
        """Patch centres along z, in traversal direction."""
        zs = axis_positions(self.shape[0], self.patch_size[0], self.step[0])
        return zs if self.up else zs[::-1]

    def columns(self, centre_yx, radius_steps: Optional[int]) -> list[tuple]:
        """(y, x) patch columns ordered by distance (mm) from ``centre_yx``."""
        if radius_steps is None:
            ys = axis_positions(self.shape[1], self.patch_size[1], self.step[1])
            xs = axis_positions(self.shape[2], self.patch_size[2], self.step[2])
            cols = [(y, x) for y in ys for x in xs]
        else:
            # neighbouring columns half a patch away; one that clamping at the volume's edge pulls
            # back to less than half a step from the centre shows nothing new and is left out
            ys, xs = [], []
            for values, axis, centre in ((ys, 1, centre_yx[0]), (xs, 2, centre_yx[1])):
                for a in range(-radius_steps, radius_steps + 1):
                    c = self.clamp_centre(int(centre) + a * self.step[axis], axis)
                    if (a == 0 or abs(c - centre) >= self.step[axis] / 2) and c not in values:
                        values.append(c)
            cols = [(y, x) for y in ys for x in xs]
        sy, sx = self.spacing[1], self.spacing[0]
        return sorted(cols, key=lambda c: (math.hypot((c[0] - centre_yx[0]) * sy, (c[1] - centre_yx[1]) * sx), c))

    def clamp_centre(self, c: int, axis: int) -> int:
        """The nearest patch centre along ``axis`` whose patch stays inside the volume (centred when it cannot)."""
        n, p = self.shape[axis], self.patch_size[axis]
        if n <= p:
            return n // 2
        return int(min(max(c, p // 2), n - p + p // 2))

    def initial(self) -> Iterator[tuple]:
        """The initial search: from the start point's level onward (else all levels), nearest columns first."""
        if self.start is not None:
            centre = self.start[1:]
            levels = [z for z in self.levels() if (z >= self.start[0] - self.step[0] // 2 if self.up
                                                   else z <= self.start[0] + self.step[0] // 2)]
        else:
            centre = (self.shape[1] / 2.0, self.shape[2] / 2.0)
            levels = self.levels()
        columns = self.columns(centre, None)
        for z in levels:
            for y, x in columns:
                yield (z, y, x)

    def after(self, centre_voxel: tuple) -> Iterator[tuple]:
        """Sliding onward from the vertebra centred at ``centre_voxel`` (see the module docstring)."""
        zc = centre_voxel[0]
        s = self.step[0]
        first, last = self.clamp_centre(0, 0), self.clamp_centre(self.shape[0], 0)
        levels = []
        k = 1
        while True:
            z = zc + k * s if self.up else zc - k * s
            if (self.up and z >= last) or (not self.up and z <= first):
                end = last if self.up else first
                if (self.up and end > zc) or (not self.up and end < zc):
                    levels.append(end)
                break
            levels.append(z)
            k += 1
        columns = self.columns(centre_voxel[1:], self.fallback_columns)
        for z in levels:
            for y, x in columns:
                yield (z, y, x)
