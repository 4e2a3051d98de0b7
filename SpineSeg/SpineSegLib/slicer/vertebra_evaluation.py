"""Per-vertebra metrics of a segmentation against a reference, as a table node: what the IIS module's and the
SpineSeg (classical) module's Evaluate share.

:func:`evaluate` reads the reference (a segmentation or a label map,
:func:`~SpineSegLib.slicer.common.reference_image`) and calls :func:`evaluate_reference`, which computes
:func:`~SpineSegLib.evaluation.instance_metrics.evaluate_instance_images` (Dice, ASSD, HD95, detection and
identification per vertebra, Lessmann et al. 2019, 4.2) and writes one table per segmentation (evaluating again
updates it; the table's attribute ``SpineSeg.evaluation_of`` names the segmentation). Runs in 3D Slicer and under
``slicer-core``.

Console use::

    from SpineSegLib.slicer.vertebra_evaluation import evaluate
    table, result = evaluate(slicer.mrmlScene, getNode("CT vertebrae"), getNode("reference"), getNode("CT"))
    result.summary()["detection_rate"], table.GetAttribute("SpineSeg.id_accuracy")
"""

from __future__ import annotations

from typing import Optional

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.notes import collect_notes
from SpineSegLib.slicer.common import reference_image, rows_for_table
from SpineSegLib.slicer.scene import scene_transaction
from SpineSegLib.slicer.segmentations import TAG_COMPLETENESS, segment_labels, segment_tag, segmentation_to_image
from SpineSegLib.slicer.tables import add_table, set_table

EVALUATION_OF = "SpineSeg.evaluation_of"     # a table's attribute: the ID of the segmentation it evaluates


def evaluate(scene, segmentation_node, reference_node, volume_node, name: Optional[str] = None):
    """Per-vertebra metrics of a segmentation against a reference segmentation or label map: returns
    ``(table node, CaseResult)`` (:func:`evaluate_reference`)."""
    _check_segmentation(segmentation_node)
    with collect_notes() as notes:
        reference = reference_image(reference_node, volume_node)
    return evaluate_reference(scene, segmentation_node, reference, volume_node, name, notes)


def evaluate_reference(scene, segmentation_node, reference: Image, volume_node, name: Optional[str] = None,
                       notes=()):
    """Per-vertebra metrics (:mod:`SpineSegLib.evaluation.instance_metrics`) of a segmentation against a reference
    label map: returns ``(table node, CaseResult)``; one table per segmentation (evaluating again updates it); the
    table has one row per reference vertebra (and extra predictions), its summary is in the node's attributes
    (``SpineSeg.<summary key>``), and how the reference and the prediction were put on one grid
    (:mod:`SpineSegLib.core.grids`; ``notes``: how the reference was read), when they were not on one, in the
    attribute ``SpineSeg.grid_note``. The completeness a segment's tag records is scored against the reference's."""
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images

    _check_segmentation(segmentation_node)
    prediction = segmentation_to_image(segmentation_node, volume_node)
    completeness = {}
    for sid, label in segment_labels(segmentation_node, strict=False).items():
        value = segment_tag(segmentation_node.GetSegmentation().GetSegment(sid), TAG_COMPLETENESS)
        if value in ("complete", "incomplete"):
            completeness[label] = value == "complete"
    with collect_notes() as more:
        result = evaluate_instance_images(prediction, reference, pred_completeness=completeness or None)
    notes = list(notes) + more
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


def _check_segmentation(segmentation_node) -> None:
    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("no segmentation to evaluate: run the segmentation first, or choose one")
