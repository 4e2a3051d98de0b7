"""Completeness flags (is a vertebra completely inside the scan): derived from a reference label map, or
read from JSON (see :mod:`SpineSegLib.evaluation.instance_metrics` for how they are scored).

Console use::

    from SpineSegLib.evaluation.completeness import read_completeness, reference_completeness
    reference_completeness(read_image("vertebrae.nii.gz"))     # {16: False, 17: True, ...}
    read_completeness("flags.json")                           # {20: True, 21: False}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import by_name
from SpineSegLib.evaluation.label_maps import label_array


def reference_completeness(labels, spacing=(1.0, 1.0, 1.0), margin_mm: float = 0.0) -> dict[int, bool]:
    """Completeness flags derived from a reference label map: ``{id: complete}``.

    A vertebra is incomplete when one of its voxels lies on the outermost voxel layer of the
    grid (it is cut by the field of view), or -- with ``margin_mm`` > 0 -- within ``margin_mm`` of
    that layer (distance between voxel centres along the axis). ``labels`` is an :class:`Image`
    or an array ``[k, j, i]`` with ``spacing`` in ``(i, j, k)`` order.
    """
    if isinstance(labels, Image):
        labels, spacing = labels.array, labels.spacing
    labels = label_array(labels, "reference")
    boxes = ndimage.find_objects(labels)
    return completeness_from_boxes(boxes, labels.shape, tuple(reversed([float(s) for s in spacing])), margin_mm)


def completeness_from_boxes(boxes, shape, spacing_zyx, margin_mm) -> dict[int, bool]:
    flags = {}
    for idx, box in enumerate(boxes):
        if box is None:
            continue
        complete = True
        for s, n, sp in zip(box, shape, spacing_zyx):
            if s.start * sp <= margin_mm or (n - s.stop) * sp <= margin_mm:
                complete = False
        flags[idx + 1] = complete
    return flags


def parse_completeness(data, source: str = "completeness flags") -> dict[int, bool]:
    """Completeness flags from JSON-like data: ``{"20": true, "L2": false}`` (ids or names),
    ``[{"label": 20, "complete": true}, ...]`` (``id`` works for ``label``), or either of these
    under a top-level ``"completeness"`` key. Numbers are probabilities: >= 0.5 means complete."""
    if isinstance(data, dict) and "completeness" in data:
        data = data["completeness"]
    items = []
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        for entry in data:
            if not isinstance(entry, dict) or "complete" not in entry or not ({"label", "id"} & set(entry)):
                raise InputError(f"{source}: list entries need 'label' (or 'id') and 'complete', got {entry!r}")
            items.append((entry.get("label", entry.get("id")), entry["complete"]))
    else:
        raise InputError(f"{source}: expected an object {{id: true/false}} or a list, got {type(data).__name__}")
    flags = {}
    for key, value in items:
        try:
            label = int(key)
        except (TypeError, ValueError):
            try:
                label = by_name(str(key)).label
            except KeyError:
                raise InputError(f"{source}: {key!r} is neither a label id nor a vertebra name") from None
        if isinstance(value, bool):
            flags[label] = value
        elif isinstance(value, (int, float)) and not math.isnan(value):
            flags[label] = bool(value >= 0.5)
        else:
            raise InputError(f"{source}: flag of {key!r} must be true/false or a probability, got {value!r}")
    return flags


def read_completeness(path) -> dict[int, bool]:
    """:func:`parse_completeness` of a JSON file; :class:`InputError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such completeness file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    return parse_completeness(data, str(path))
