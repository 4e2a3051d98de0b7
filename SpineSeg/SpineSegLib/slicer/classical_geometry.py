"""The classical pipeline's result rebuilt on the Slicer side from the engine's result event: the spine mask (read
once from the file the child wrote) and the geometry the child sent (centerline, bounding lines and parabola fits
per axial slice, LPS mm, full precision; ``spineseg engine`` writes it with ``classical_geometry``).

Console use::

    from SpineSegLib.slicer.classical_geometry import classical_result
    result = classical_result(read_image(event.labels_path), event.geometry)
    result.slices[10].h1                  # (2, 3) LPS segment, as segment_spine gives it
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from SpineSegLib.classical.geometry import BoundingLines, SliceParabola
from SpineSegLib.classical.params import ClassicalParams
from SpineSegLib.classical.result import ClassicalResult
from SpineSegLib.core.image import Image


def _value(value):
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return np.asarray(value, dtype=float)
    return value


def _typed(cls, record: dict):
    entry = cls(**{f.name: _value(record[f.name]) for f in fields(cls)})
    entry.slice_index = int(entry.slice_index)
    return entry


def classical_result(mask: Image, geometry: dict) -> ClassicalResult:
    """A :class:`~SpineSegLib.classical.result.ClassicalResult` of the mask and the event's geometry (no bone or
    aorta mask: the Slicer side does not show them)."""
    g = geometry
    slices = [_typed(BoundingLines, record) for record in g["slices"]]
    parabolas = [_typed(SliceParabola, record) for record in g["parabolas"]]
    points = lambda key: np.asarray(g[key], dtype=float).reshape(-1, 3)   # noqa: E731
    return ClassicalResult(
        mask=mask, bone_mask=None, aorta_mask=None, contrast=bool(g["contrast"]),
        aorta_median_hu=_value(g["aorta_median_hu"]), aorta_length_mm=float(g["aorta_length_mm"]),
        centerline_points_lps=points("centerline_points_lps"),
        centerline_inliers=np.asarray(g["centerline_inliers"], dtype=bool),
        centerline_curve_lps=points("centerline_curve_lps"), centerline_centres_lps=points("centerline_centres_lps"),
        slices=slices, parabolas=parabolas, params=ClassicalParams.from_dict(g.get("params") or {}))
