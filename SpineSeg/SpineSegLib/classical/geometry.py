"""The geometric intermediates of the classical pipeline as named types, and their move to LPS millimetres.

* :class:`LinePositions` -- the nine bounding lines of Revy et al. (section 3.2, Figure 3) on every axial
  slice of the grid they were found on: rows for H1-H3, columns for V1-V6 (voxel indices, NaN where a
  slice has none);
* :class:`BoundingLines` -- the nine lines of one slice as LPS segments (what
  :class:`~SpineSegLib.classical.result.ClassicalResult` holds per slice);
* :class:`SliceParabola` -- the chosen parabola and the DP points of one slice in LPS (section 3.3);
* :class:`CropFrame` -- (slice, row, column) of a crop of the canonical volume -> LPS millimetres.

Console use::

    from SpineSegLib.classical.geometry import LINE_NAMES
    entry = result.slices[10]              # a BoundingLines
    entry.h1                               # (2, 3) LPS segment of H1, from V1 to V6
    entry.segments()["V3"]                 # every line by name, in LINE_NAMES order
    result.parabolas[0].dp_points          # (Q, 3) LPS
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from SpineSegLib.core.image import Image

LINE_NAMES = ("H1", "H2", "H3", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass
class LinePositions:
    """Per axial slice the rows of H1-H3 and the columns of V1-V6 (float voxel indices, NaN where a slice
    has no lines); ``valid`` marks the slices with lines of their own."""

    h1: np.ndarray          # (nz,) top (front) of the vertebral body
    h2: np.ndarray          # (nz,) one third of the way from H1 to H3
    h3: np.ndarray          # (nz,) end of the spinous process
    v1: np.ndarray          # (nz,) V2 shifted outwards (the cut to the right)
    v2: np.ndarray          # (nz,) right edge of the vertebral body
    v3: np.ndarray          # (nz,) centre column of the cut mask
    v4: np.ndarray          # (nz,) centre column of the rough mask
    v5: np.ndarray          # (nz,) left edge of the vertebral body
    v6: np.ndarray          # (nz,) V5 shifted outwards (the cut to the left)
    valid: np.ndarray       # (nz,) bool

    @classmethod
    def empty(cls, nz: int) -> "LinePositions":
        return cls(*(np.full(nz, np.nan) for _ in LINE_NAMES), valid=np.zeros(nz, bool))


@dataclass(frozen=True)
class CropFrame:
    """Positions (slice k, row, column) in a crop of the canonical volume that starts at row ``row0`` and
    column ``col0`` -> LPS millimetres (canonical index (i, j, k) = (column + col0, row + row0, k))."""

    image: Image            # the canonical image
    row0: int
    col0: int

    def lps(self, k, rows, cols) -> np.ndarray:
        ijk = np.stack([np.asarray(cols, float) + self.col0, np.asarray(rows, float) + self.row0,
                        np.broadcast_to(np.asarray(k, float), np.shape(rows))], axis=-1)
        return self.image.index_to_lps(ijk)


@dataclass
class BoundingLines:
    """The nine bounding lines of one axial slice, each a (2, 3) LPS segment: the H lines run from V1 to V6
    on their row, the V lines from H1 to H3 on their column."""

    slice_index: int        # canonical slice index
    z_mm: float             # LPS z of the slice
    h1: np.ndarray
    h2: np.ndarray
    h3: np.ndarray
    v1: np.ndarray
    v2: np.ndarray
    v3: np.ndarray
    v4: np.ndarray
    v5: np.ndarray
    v6: np.ndarray

    @classmethod
    def from_positions(cls, lines: LinePositions, k: int, frame: CropFrame) -> "BoundingLines":
        """The segments of slice ``k`` of ``lines`` (found on ``frame``'s crop)."""
        left, right = lines.v1[k], lines.v6[k]
        top, end = lines.h1[k], lines.h3[k]
        segments = {}
        for name in LINE_NAMES:
            position = getattr(lines, name.lower())[k]
            if name.startswith("H"):
                segments[name.lower()] = frame.lps(k, [position, position], [left, right])
            else:
                segments[name.lower()] = frame.lps(k, [top, end], [position, position])
        z_mm = float(frame.lps(k, [0.0], [0.0])[0, 2])
        return cls(int(k), z_mm, **segments)

    def segments(self) -> dict[str, np.ndarray]:
        """Line name -> (2, 3) LPS segment, in :data:`LINE_NAMES` order."""
        return {name: getattr(self, name.lower()) for name in LINE_NAMES}

    def to_json_dict(self) -> dict:
        return {"slice": self.slice_index, "z_mm": self.z_mm, "lines": self.segments()}


@dataclass
class SliceParabola:
    """The parabola fit of one axial slice in LPS millimetres."""

    slice_index: int        # canonical slice index
    z_mm: float             # LPS z of the slice
    centre: np.ndarray      # (3,) c = (H2, V3)
    halfwidth_mm: float     # half-width of the chosen parabola at its height
    height_mm: float        # the family's height (H2 - H1)
    edge_score: float       # mean directional gradient of the mask along the parabola (per mm; the lower, the clearer)
    parabola: np.ndarray    # (Q, 3) the chosen parabola
    dp_points: np.ndarray   # (Q, 3) the DP-fitted points

    @classmethod
    def from_fit(cls, fit, frame: CropFrame) -> "SliceParabola":
        """A :class:`~SpineSegLib.classical.parabola.ParabolaFit` (found on ``frame``'s crop) in LPS."""
        k = fit.slice_index
        centre = frame.lps(k, [fit.centre[0]], [fit.centre[1]])[0]
        return cls(
            slice_index=int(k),
            z_mm=float(centre[2]),
            centre=centre,
            halfwidth_mm=fit.halfwidth_mm, height_mm=fit.height_mm, edge_score=fit.score,
            parabola=frame.lps(k, fit.parabola[:, 0], fit.parabola[:, 1]),
            dp_points=frame.lps(k, fit.points[:, 0], fit.points[:, 1]),
        )

    def to_json_dict(self) -> dict:
        return {"slice": self.slice_index, "z_mm": self.z_mm, "centre": self.centre, "halfwidth_mm": self.halfwidth_mm,
                "height_mm": self.height_mm, "edge_score": self.edge_score, "parabola": self.parabola,
                "dp_points": self.dp_points}
