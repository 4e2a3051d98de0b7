"""What a finished IIS run puts into the scene, and how a result is evaluated there.

* :func:`import_result`: a label map and the IIS table rows -> a segmentation with one named, coloured,
  terminology-coded segment per vertebra (incomplete ones flagged, drawn at half opacity) and a per-vertebra table
  (:func:`vertebra_rows`: volume, mean intensity, completeness, regressed label, vertebral body heights), added in
  one scene transaction;
* :func:`evaluate`: per-vertebra metrics of a segmentation against a reference, as a table node.

Runs in 3D Slicer and under ``slicer-core``; :class:`~SpineSegLib.slicer.iis_logic.IISLogic` calls these.

Console use::

    from SpineSegLib.slicer import iis_results
    out = iis_results.import_result(scene, volume_node, image, read_image("vertebrae.nii"),
                                    [{"id": 20, "complete": True, "completeness": 0.98, "regressed_label": 20.1}], "ct")
    table, result = iis_results.evaluate(scene, out.segmentation, reference_node, volume_node)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.image import Image
from SpineSegLib.core.notes import collect_notes
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.slicer.common import reference_image, rows_for_table
from SpineSegLib.slicer.scene import scene_transaction
from SpineSegLib.slicer.segmentations import (TAG_COMPLETENESS, labelmap_to_segmentation, segment_labels, segment_tag,
                                              segmentation_to_image)
from SpineSegLib.slicer.tables import add_table, set_table

EVALUATION_OF = "SpineSeg.evaluation_of"     # a table's attribute: the ID of the segmentation it evaluates


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


def evaluate(scene, segmentation_node, reference_node, volume_node, name: Optional[str] = None):
    """Per-vertebra metrics (:mod:`SpineSegLib.evaluation.instance_metrics`) of a segmentation against a reference
    segmentation or label map: returns ``(table node, CaseResult)``; one table per segmentation (evaluating again
    updates it); the table has one row per reference
    vertebra (and extra predictions) followed by nothing else, its summary is in the node's attributes, and how
    the reference and the prediction were put on one grid (:mod:`SpineSegLib.core.grids`), when they were not on
    one, in the attribute ``SpineSeg.grid_note``."""
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images

    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("no segmentation to evaluate: run the segmentation first, or choose one")
    with collect_notes() as notes:
        reference = reference_image(reference_node, volume_node)
    prediction = segmentation_to_image(segmentation_node, volume_node)
    completeness = {}
    for sid, label in segment_labels(segmentation_node, strict=False).items():
        value = segment_tag(segmentation_node.GetSegmentation().GetSegment(sid), TAG_COMPLETENESS)
        if value in ("complete", "incomplete"):
            completeness[label] = value == "complete"
    with collect_notes() as more:
        result = evaluate_instance_images(prediction, reference, pred_completeness=completeness or None)
    notes += more
    rows = rows_for_table(result.to_rows())
    with scene_transaction(scene):
        table = evaluation_table(scene, segmentation_node)
        if table is None:
            table = add_table(scene, rows, name or f"{segmentation_node.GetName()} evaluation", next_to=volume_node)
            table.SetAttribute(EVALUATION_OF, segmentation_node.GetID())
        else:                                     # evaluated again: the same table, updated
            set_table(table, rows)
            for key in [k for k in table.GetAttributeNames() if k.startswith("SpineSeg.") and k != EVALUATION_OF]:
                table.RemoveAttribute(key)
        for key, value in result.summary().items():
            table.SetAttribute(f"SpineSeg.{key}", str(value))
        if notes:
            table.SetAttribute("SpineSeg.grid_note", "; ".join(notes))
    return table, result


def evaluation_table(scene, segmentation_node):
    """The table an earlier :func:`evaluate` of ``segmentation_node`` made (None when there is none)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
        table = scene.GetNthNodeByClass(i, "vtkMRMLTableNode")
        if table.GetAttribute(EVALUATION_OF) == segmentation_node.GetID():
            return table
    return None
