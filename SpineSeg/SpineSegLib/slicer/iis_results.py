"""What a finished IIS run puts into the scene (evaluating it: :mod:`SpineSegLib.slicer.vertebra_evaluation`).

* :func:`import_result`: a label map and the IIS table rows -> a segmentation with one named, coloured,
  terminology-coded segment per vertebra (incomplete ones flagged, drawn at half opacity) and a per-vertebra table
  (:func:`vertebra_rows`: volume, mean intensity, completeness, regressed label, vertebral body heights), added in
  one scene transaction.

Runs in 3D Slicer and under ``slicer-core``; :class:`~SpineSegLib.slicer.iis_logic.IISLogic` calls these.

Console use::

    from SpineSegLib.slicer import iis_results
    out = iis_results.import_result(scene, volume_node, image, read_image("vertebrae.nii"),
                                    [{"id": 20, "complete": True, "completeness": 0.98, "regressed_label": 20.1}], "ct")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.slicer.common import rows_for_table
from SpineSegLib.slicer.scene import scene_transaction
from SpineSegLib.slicer.segmentations import labelmap_to_segmentation
from SpineSegLib.slicer.tables import add_table


@dataclass
class IISOutputs:
    """What a finished run added to the scene."""

    segmentation: object                 # vtkMRMLSegmentationNode
    table: object                        # vtkMRMLTableNode, one row per vertebra
    rows: list                           # the table's rows as dicts
    labels: Image                        # the label map (input grid)
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def nodes(self) -> list:
        return [self.segmentation, self.table]


def vertebra_rows(labels: Image, image: Image, records: list[dict], modality: str) -> list[dict]:
    """One row per vertebra of ``labels``: id, name, volume (ml), mean HU (CT) / mean intensity (MR),
    completeness (probability and flag), regressed label, and the anterior / middle / posterior vertebral
    body heights (mm, :mod:`SpineSegLib.evaluation.measurements`). ``records``: the IIS table rows (``id``,
    ``complete``, ``completeness``, ``regressed_label``, ``traversal_index``) of the vertebrae in ``labels``."""
    from SpineSegLib.evaluation.measurements import measure_vertebrae

    by_id = {int(r["id"]): r for r in records}
    mean_key = "mean_hu" if modality == "ct" else "mean_intensity"
    rows = []
    for m in measure_vertebrae(labels, image):
        r = by_id.get(m.label, {})
        rows.append({
            "label": m.label, "name": m.name, "volume_ml": round(m.volume_ml, 3),
            mean_key: round(m.mean_intensity, 1),
            "completeness": None if r.get("completeness") is None else round(float(r["completeness"]), 4),
            "complete": None if r.get("complete") is None else _truthy(r["complete"]),
            "regressed_label": None if r.get("regressed_label") is None else round(float(r["regressed_label"]), 2),
            "anterior_height_mm": _round(m.anterior_height_mm), "middle_height_mm": _round(m.middle_height_mm),
            "posterior_height_mm": _round(m.posterior_height_mm), "body_depth_mm": _round(m.body_depth_mm),
            "traversal_index": None if r.get("traversal_index") is None else int(r["traversal_index"]),
        })
    return rows


COLUMN_DESCRIPTIONS = {
    "label": "VerSe id of the vertebra (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 S1, 28 T13)",
    "volume_ml": "volume of the segment",
    "mean_hu": "mean CT value inside the segment",
    "mean_intensity": "mean image intensity inside the segment",
    "completeness": "probability that the vertebra lies completely inside the scan (network)",
    "complete": "classified as completely visible (incomplete ones are flagged in the segmentation)",
    "regressed_label": "anatomical label the network regressed (1 = C1 ... 24 = L5)",
    "anterior_height_mm": "vertebral body height along the spine's local axis, anterior third (median)",
    "middle_height_mm": "vertebral body height along the spine's local axis, middle third (median)",
    "posterior_height_mm": "vertebral body height along the spine's local axis, posterior third (median)",
    "body_depth_mm": "anterior-posterior extent of the vertebral body where it is at least half its height",
    "traversal_index": "order in which the traversal found the vertebra",
}


def _round(v: float, digits: int = 2):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def import_result(scene, volume_node, image: Image, labels: Image, records: list[dict], modality: str,
                  name: Optional[str] = None, info: Optional[dict] = None) -> IISOutputs:
    """The segmentation and per-vertebra table for a label map + IIS table rows, in one transaction."""
    if not labels.same_grid(image):
        raise SpineSegError("the IIS result does not lie on the input's grid")
    present = {int(v) for v in np.unique(labels.array) if v}
    records = [r for r in records if int(r["id"]) in present]
    base = name or f"{volume_node.GetName()} vertebrae"
    with scene_transaction(scene):
        vertebrae = {int(r["id"]): {"complete": _truthy(r["complete"]),
                                    "completeness_probability": float(r["completeness"]),
                                    "regressed_label": float(r["regressed_label"])}
                     for r in records if int(r["id"]) in VERTEBRAE}
        segmentation = labelmap_to_segmentation(scene, labels, reference_volume=volume_node, name=base,
                                                vertebrae=vertebrae)
        rows = vertebra_rows(labels, image, records, modality)
        table = add_table(scene, rows_for_table(rows), base + " table", descriptions=COLUMN_DESCRIPTIONS,
                          units={"mean_hu": "HU"}, next_to=volume_node)
    return IISOutputs(segmentation, table, rows, labels, info=dict(info or {}))
