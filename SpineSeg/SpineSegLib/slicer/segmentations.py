"""Label maps <-> segmentation nodes: one named, coloured, coded segment per vertebra, exported with stable ids.

Conventions
-----------
* One segment per vertebra, named, coloured and coded from :mod:`SpineSegLib.core.labels`. Its Slicer terminology tag
  (``TerminologyEntry``) reads, e.g. for L1::

      Segmentation category and type - SpineSeg~SCT^123037004^Anatomical Structure~SCT^66794005^L1 vertebra~^^~
      Anatomic codes - DICOM master list~^^~^^

  SpineSeg's own tags: ``SpineSeg.Label`` (the id the segment was created with), ``SpineSeg.Completeness``
  (``complete`` / ``incomplete``) and ``SpineSeg.<key>`` for further per-vertebra values (e.g.
  ``SpineSeg.RegressedLabel``). An incomplete vertebra (cut by the field of view) keeps its name; it is marked with
  Slicer's segment status "flagged" (shown in the segment list) and drawn at half opacity.
* Exported label values are stable: a segment's id is found, in this order, from (1) its terminology (the codes of
  the SpineSeg table), (2) its name when it is a table name (``"L1"`` -> 20), (3) its ``SpineSeg.Label`` tag (ids
  outside the table, e.g. discs). (1) and (2) are what Slicer's own export with the SpineSeg colour table does, so
  the GUI and scripts give the same ids. A segment whose terminology and name name different vertebrae, two
  segments with the same id, and a segment that none of the three identifies are errors (nothing is guessed).

Only the static calls of Slicer's segmentations logic are used, so this runs in 3D Slicer and under ``slicer-core``.

Console use (Slicer's Python console, or ``slicer-core`` with ``scene = new_scene()``)::

    from SpineSegLib.slicer import segmentations as sg
    seg = sg.labelmap_to_segmentation(scene, read_image("vertebrae.nii.gz"), reference_volume=ct,
                                      vertebrae={22: {"complete": False}})
    ids = sg.segmentation_to_image(seg, reference_volume=ct)        # Image with VerSe ids, on the CT grid
    sg.segment_labels(seg)                                            # {segment id: VerSe id}
"""

from __future__ import annotations

import re

import numpy as np
import slicer
import vtk

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE, name_of
from SpineSegLib.slicer.colours import COLOUR_TABLE_ROLE, fill_colour_table, terminology_entry, vertebra_colour_table
from SpineSegLib.slicer.scene import place_next_to, scene_of
from SpineSegLib.slicer.volumes import image_to_volume, volume_to_image

TAG_LABEL = "SpineSeg.Label"
TAG_COMPLETENESS = "SpineSeg.Completeness"
TAG_PREFIX = "SpineSeg."
STATUS_TAG = "Segmentation.Status"      # Slicer's segment status (vtkSlicerSegmentationsModuleLogic.GetStatusTagName)
INCOMPLETE_OPACITY = 0.5

_SEGMENTATIONS = slicer.vtkSlicerSegmentationsModuleLogic
_TERMINOLOGIES = slicer.vtkSlicerTerminologiesModuleLogic


def _remove_nodes(scene, *nodes):
    for node in nodes:
        if node is not None and node.GetScene() is scene:
            scene.RemoveNode(node)


def _label_array(label_image: Image) -> Image:
    """``label_image`` with whole, non-negative ids of a type Slicer imports (InputError otherwise)."""
    array = np.asarray(label_image.array)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError("a label map must hold whole numbers; this one holds fractions or NaNs")
    elif array.dtype.kind not in "iub":
        raise InputError(f"a label map must hold integers, not {array.dtype}")
    if array.size and array.min() < 0:
        raise InputError(f"a label map must not hold negative labels (found {int(array.min())})")
    if array.dtype.kind == "f" or array.dtype.itemsize == 8:
        array = array.astype(np.int32)
    return label_image.with_array(array)


def labelmap_to_segmentation(scene, label_image: Image, reference_volume=None, name: str = "Vertebrae",
                             vertebrae: dict | None = None, node=None):
    """A segmentation node with one segment per label id of ``label_image`` (an instance label map).

    Segments are named, coloured and terminology-coded from the label table (ids outside it become "label <id>",
    grey, uncoded) and tagged ``SpineSeg.Label``; ``vertebrae`` adds per-vertebra values,
    ``{label: {"complete": False, "regressed_label": 19.7, ...}}`` (see :func:`annotate_segments`). With
    ``reference_volume`` the segmentation takes its geometry as reference and is placed next to it in the subject
    hierarchy. ``node``: an existing segmentation node to add the segments to.
    """
    label_image = _label_array(label_image)
    present = [int(v) for v in np.unique(label_image.array) if v]
    import_colours = fill_colour_table(scene.AddNewNodeByClass("vtkMRMLColorTableNode", name + " import"),
                                       {v: name_of(v) for v in present})
    label_node = image_to_volume(scene, label_image, name + " labels", labelmap=True, colour_table=import_colours)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    before = _segment_ids(node)
    messages = slicer.vtkMRMLMessageCollection()
    try:
        ok = _SEGMENTATIONS.ImportLabelmapToSegmentationNode(label_node, node, "", messages)
    finally:
        _remove_nodes(scene, label_node.GetDisplayNode(), label_node, import_colours)
    # the table the Segmentations module offers when the user exports: the fixed SpineSeg ids
    node.SetLabelmapConversionColorTableNodeID(vertebra_colour_table(scene).GetID())
    if not ok:
        raise SpineSegError(f"Slicer could not import the label map into {name!r}: {messages.GetAllMessagesAsString()}")
    for segment_id in _segment_ids(node):
        if segment_id not in before:
            _name_segment(node, segment_id)
    if vertebrae:
        annotate_segments(node, vertebrae)
    if reference_volume is not None:
        place_next_to(node, reference_volume)
    return node


def _name_segment(segmentation_node, segment_id: str) -> None:
    """Name, colour and code a newly imported segment from its label value (see the module docstring)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    label = int(segment.GetLabelValue())
    segment.SetName(name_of(label))
    segment.SetTag(TAG_LABEL, str(label))
    if label in VERTEBRAE:
        segment.SetColor(*VERTEBRAE[label].color)
        segment.SetTerminology(terminology_entry(label))
        segment.SetNameAutoGenerated(True)
        segment.SetColorAutoGenerated(True)
    else:
        segment.SetColor(0.6, 0.6, 0.6)
        segment.RemoveTag(segment.GetTerminologyEntryTagName())
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
    segmentation_node.GetDisplayNode().SetSegmentVisibility(segment_id, True)


def annotate_segments(segmentation_node, vertebrae: dict) -> None:
    """Store per-vertebra values on the segments, found by label id: ``{label: {key: value}}``.

    ``"complete": False`` tags the segment ``SpineSeg.Completeness = incomplete``, sets Slicer's segment status to
    "flagged" and draws it at half opacity (``True`` tags it ``complete``); any other key is stored as the tag
    ``SpineSeg.<Key>`` (``regressed_label`` -> ``SpineSeg.RegressedLabel``), numbers written with ``repr``.
    Raises :class:`SpineSegError` for a label with no segment. From an IIS result::

        annotate_segments(seg, {r.id: {"complete": r.complete, "completeness_probability": r.completeness,
                                       "regressed_label": r.regressed_label} for r in result.instances if r.in_output})
    """
    by_label = {label: sid for sid, label in segment_labels(segmentation_node, strict=False).items()}
    display = segmentation_node.GetDisplayNode()
    for label, values in vertebrae.items():
        segment_id = by_label.get(int(label))
        if segment_id is None:
            raise SpineSegError(f"segmentation {segmentation_node.GetName()!r} has no segment for {name_of(label)}")
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        for key, value in dict(values).items():
            if key == "complete":
                complete = bool(value)
                segment.SetTag(TAG_COMPLETENESS, "complete" if complete else "incomplete")
                if not complete:
                    segment.SetTag(STATUS_TAG, "flagged")
                    if display is not None:
                        display.SetSegmentOpacity(segment_id, INCOMPLETE_OPACITY)
            else:
                segment.SetTag(TAG_PREFIX + _camel(key), _tag_value(value))


def segment_tag(segment, key: str, default=None):
    """The value of a tag of a ``vtkSegment`` (``default`` when it has none)."""
    value = vtk.reference("")
    return str(value.get()) if segment.GetTag(key, value) else default


def _camel(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\s]+", str(key)) if part)


def _tag_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _segment_ids(segmentation_node) -> list[str]:
    ids = vtk.vtkStringArray()
    segmentation_node.GetSegmentation().GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]


def segment_label(segment, table=None) -> int | None:
    """The label id of a ``vtkSegment`` by the SpineSeg rule (module docstring): terminology, then a table name,
    then the ``SpineSeg.Label`` tag; None when none of them gives one. Raises :class:`SpineSegError` when the
    terminology and the name name different vertebrae."""
    if table is None:
        table = fill_colour_table(slicer.vtkMRMLColorTableNode())
    by_terminology = -1
    if segment.HasTerminology():
        by_terminology = _TERMINOLOGIES.GetColorIndexByTerminology(table, segment.GetTerminology())
    by_name = table.GetColorIndexByName(segment.GetName() or "")
    by_terminology = by_terminology if by_terminology > 0 else None
    by_name = by_name if by_name > 0 else None
    if by_terminology and by_name and by_terminology != by_name:
        raise SpineSegError(
            f"segment {segment.GetName()!r} is coded as {name_of(by_terminology)} (terminology) but named "
            f"{name_of(by_name)}; make them agree (rename it, or pick its terminology) before exporting")
    if by_terminology or by_name:
        return by_terminology or by_name
    tag = segment_tag(segment, TAG_LABEL, "")
    return int(tag) if tag.strip().isdigit() and int(tag) > 0 else None


def segment_labels(segmentation_node, segment_ids=None, strict: bool = True) -> dict[str, int]:
    """``{segment id: label id}`` by :func:`segment_label`. ``strict`` raises :class:`SpineSegError` for a segment
    without an id, one whose terminology and name disagree, and two segments with the same id; otherwise such
    segments are left out."""
    table = fill_colour_table(slicer.vtkMRMLColorTableNode())
    segmentation = segmentation_node.GetSegmentation()
    labels, seen = {}, {}
    for segment_id in segment_ids if segment_ids is not None else _segment_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        if segment is None:
            raise SpineSegError(f"segmentation {segmentation_node.GetName()!r} has no segment {segment_id!r}")
        try:
            label = segment_label(segment, table)
        except SpineSegError:
            if strict:
                raise
            continue
        if label is None:
            if strict:
                raise SpineSegError(
                    f"cannot tell which vertebra segment {segment.GetName()!r} is: name it C1 ... L5, T13, L6 or S1, "
                    "or pick its terminology")
            continue
        if label in seen:
            if strict:
                raise SpineSegError(f"segments {seen[label]!r} and {segment.GetName()!r} are both {name_of(label)} "
                                    f"(id {label}); rename or merge one of them")
            continue
        seen[label] = segment.GetName()
        labels[segment_id] = label
    return labels


def segmentation_to_labelmap(segmentation_node, reference_volume=None, segment_ids=None, name: str | None = None,
                             node=None):
    """Export segments to a label map volume node with stable VerSe ids (the rule in the module docstring).

    On ``reference_volume``'s grid when given (the usual case: exactly the input's voxels), else on the
    segmentation's reference geometry. Uses Slicer's ``ExportSegmentsToLabelmapNode`` with a colour table built from
    :mod:`SpineSegLib.core.labels` (plus entries for ids outside it), and checks that Slicer chose the same ids.
    """
    scene = scene_of(segmentation_node)
    segment_ids = list(segment_ids) if segment_ids is not None else _segment_ids(segmentation_node)
    labels = segment_labels(segmentation_node, segment_ids)
    segmentation = segmentation_node.GetSegmentation()
    extra = {label: segmentation.GetSegment(sid).GetName() for sid, label in labels.items() if label not in VERTEBRAE}
    if len(set(extra.values())) != len(extra):
        raise SpineSegError(f"segments outside the label table must have distinct names to export them: {extra}")
    table = fill_colour_table(scene.AddNewNodeByClass("vtkMRMLColorTableNode", "SpineSeg export"), extra)
    table.SetHideFromEditors(True)
    ids = vtk.vtkStringArray()
    for sid in segment_ids:
        ids.InsertNextValue(sid)
    try:
        chosen = vtk.vtkIntArray()
        _SEGMENTATIONS.GetLabelValuesFromColorNode(segmentation_node, table, ids, chosen)
        chosen = {sid: chosen.GetValue(i) for i, sid in enumerate(segment_ids)}
        if chosen != labels:
            raise SpineSegError(f"Slicer would export other ids than SpineSeg's rule gives: {chosen} != {labels}")
        if node is None:
            node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name or segmentation_node.GetName() + " ids")
        elif node.GetDisplayNode() is not None and node.GetDisplayNode().GetColorNode() is not None \
                and node.GetDisplayNode().GetColorNode().GetAttribute(COLOUR_TABLE_ROLE):
            # Slicer writes the segment names and colours into the label map's own colour table: never into ours
            node.GetDisplayNode().SetAndObserveColorNodeID("")
        mode = slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        if not _SEGMENTATIONS.ExportSegmentsToLabelmapNode(segmentation_node, ids, node, reference_volume, mode, table):
            raise SpineSegError(f"Slicer could not export segmentation {segmentation_node.GetName()!r} to a label map")
    finally:
        _remove_nodes(scene, table)
    return node


def segmentation_to_image(segmentation_node, reference_volume=None, segment_ids=None) -> Image:
    """:func:`segmentation_to_labelmap` as an :class:`Image` (the temporary nodes are removed)."""
    scene = scene_of(segmentation_node)
    node = segmentation_to_labelmap(segmentation_node, reference_volume, segment_ids)
    try:
        return volume_to_image(node)
    finally:
        display = node.GetDisplayNode()
        colours = display.GetColorNode() if display is not None else None
        _remove_nodes(scene, display, node)
        if colours is not None and colours.GetType() == colours.User and not colours.GetAttribute(COLOUR_TABLE_ROLE):
            _remove_nodes(scene, colours)
