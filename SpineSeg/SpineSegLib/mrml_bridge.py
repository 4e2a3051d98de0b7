"""The bridge between SpineSeg results and Slicer's MRML scene (the only backend module that imports ``slicer``).

Every function takes the scene or the nodes it works on as parameters, so the same code runs inside 3D Slicer
(``slicer.mrmlScene``) and under the ``slicer-core`` wheel in tests (a scene from :func:`new_scene`). Only MRML
classes, the static calls of Slicer's module logics, vtk and numpy are used -- nothing that needs ``slicer.app``.

Conventions
-----------
* :class:`~SpineSegLib.image.Image` geometry is LPS; MRML is RAS. Volume nodes get exactly the spacing, origin and
  direction of the image with x and y negated; arrays keep the numpy order ``[k, j, i]``.
* Every point given to this module (centrelines, curves, boxes) is in LPS millimetres, as the rest of SpineSeg uses;
  markups nodes hold RAS internally (their ``.mrk.json`` files say LPS again).
* One segment per vertebra, named, coloured and coded from :mod:`SpineSegLib.labels`. Its Slicer terminology tag
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

Console use (in Slicer's Python console, or under slicer-core with ``scene = new_scene()``)::

    from SpineSegLib import mrml_bridge as mb
    from SpineSegLib.image import read_image
    scene = slicer.mrmlScene
    ct = mb.image_to_volume(scene, read_image("ct.nii.gz"), "CT")
    seg = mb.labelmap_to_segmentation(scene, read_image("vertebrae.nii.gz"), reference_volume=ct,
                                      vertebrae={22: {"complete": False}})
    ids = mb.segmentation_to_image(seg, reference_volume=ct)        # Image with VerSe ids, on the CT grid
    mb.segment_labels(seg)                                            # {segment id: VerSe id}

Markups, tables and files are in :mod:`SpineSegLib.mrml_results`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .errors import InputError, OutputExistsError, SpineSegError
from .image import Image, replaced_atomically
from .labels import CATEGORY_CODE, VERTEBRAE, colour_table_rows, name_of

#: diag(-1, -1, 1): maps LPS to RAS and back
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

TERMINOLOGY_CONTEXT = "Segmentation category and type - SpineSeg"
REGION_CONTEXT = "Anatomic codes - DICOM master list"
TAG_LABEL = "SpineSeg.Label"
TAG_COMPLETENESS = "SpineSeg.Completeness"
TAG_PREFIX = "SpineSeg."
STATUS_TAG = "Segmentation.Status"      # Slicer's segment status (vtkSlicerSegmentationsModuleLogic.GetStatusTagName)
INCOMPLETE_OPACITY = 0.5
COLOUR_TABLE_NAME = "SpineSeg vertebrae"
COLOUR_TABLE_ROLE = "SpineSeg.ColourTable"   # node attribute marking the scene's SpineSeg colour table

_SEGMENTATIONS = slicer.vtkSlicerSegmentationsModuleLogic
_TERMINOLOGIES = slicer.vtkSlicerTerminologiesModuleLogic


# -- scene ------------------------------------------------------------------------------------------------------
def new_scene():
    """A MRML scene with the logics SpineSeg needs registered: colours, segmentations, markups, subject hierarchy.

    For tests and scripts outside Slicer (inside Slicer use ``slicer.mrmlScene``). The segmentations logic must be
    registered before any segmentation node is created, or closed-surface conversion is silently unavailable. The
    logics are kept alive on ``scene.spineseg_logics``.
    """
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkMRMLApplicationLogic()   # creates the selection and interaction nodes markups need
    app_logic.SetMRMLScene(scene)
    logics = [app_logic]
    for cls in (slicer.vtkMRMLColorLogic, slicer.vtkSlicerSegmentationsModuleLogic, slicer.vtkSlicerMarkupsLogic,
                slicer.vtkSlicerSubjectHierarchyModuleLogic):
        logic = cls()
        if hasattr(logic, "SetMRMLApplicationLogic"):
            logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        logics.append(logic)
    scene.spineseg_logics = logics
    return scene


def _scene_of(node):
    scene = node.GetScene() if node is not None else None
    if scene is None:
        raise SpineSegError(f"node {node.GetName() if node else None!r} is not in a MRML scene")
    return scene


def _remove_nodes(scene, *nodes):
    for node in nodes:
        if node is not None and node.GetScene() is scene:
            scene.RemoveNode(node)


# -- geometry ---------------------------------------------------------------------------------------------------
def lps_to_ras(points) -> np.ndarray:
    """LPS points (N x 3 or 3) to RAS (the same with x and y negated); also RAS to LPS."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


ras_to_lps = lps_to_ras


def vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    m = np.asarray(m, dtype=float)
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            out.SetElement(r, c, float(m[r, c]))
    return out


def numpy_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


# -- volumes ----------------------------------------------------------------------------------------------------
def image_to_volume(scene, image: Image, name: str = "volume", labelmap: bool = False, node=None, colour_table=None):
    """Add ``image`` to ``scene`` as a scalar volume node (or a label map node), geometry exact.

    ``node``: an existing volume node to fill instead of a new one. Label maps are shown with ``colour_table``
    (default: the scene's SpineSeg vertebra table). Boolean arrays become uint8; 64-bit integers become int32
    (Slicer does not display 64-bit volumes; values outside int32 raise :class:`InputError`).
    """
    array = _volume_array(image.array)
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name)
    set_volume_geometry(node, image)
    slicer.util.updateVolumeFromArray(node, array)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        colour_table = colour_table or vertebra_colour_table(scene)
        node.GetDisplayNode().SetAndObserveColorNodeID(colour_table.GetID())
    return node


def _volume_array(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
            raise InputError("the image holds 64-bit integers outside the int32 range; Slicer volumes cannot hold them")
        return array.astype(np.int32)
    if array.dtype.kind not in "iuf":
        raise InputError(f"cannot make a volume from an array of type {array.dtype}")
    return np.ascontiguousarray(array)


def set_volume_geometry(node, image: Image) -> None:
    """Give a volume node the grid of ``image``: spacing, origin and directions set directly (no matrix
    decomposition), so :func:`volume_to_image` gives the very same numbers back."""
    node.SetSpacing(*image.spacing)
    node.SetOrigin(*lps_to_ras(image.origin))
    node.SetIJKToRASDirectionMatrix(vtk_matrix(LPS_TO_RAS @ image.direction))


def volume_to_image(node) -> Image:
    """The voxels and geometry of a scalar or label map volume node as an :class:`Image` (a copy).

    A volume under a linear transform is returned where it is shown (the transform applied to its geometry); a
    non-linear or non-rigid one must be hardened and resampled first (:class:`InputError`).
    """
    if node is None or not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"expected a volume node, got {node.GetClassName() if node else None}")
    data = node.GetImageData()
    if data is None or data.GetPointData().GetScalars() is None:
        raise InputError(f"volume {node.GetName()!r} holds no voxels")
    if data.GetNumberOfScalarComponents() != 1:
        raise InputError(f"volume {node.GetName()!r} has {data.GetNumberOfScalarComponents()} components per voxel; "
                         "a scalar volume is needed")
    shape = tuple(reversed(data.GetDimensions()))
    array = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(shape).copy()

    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    direction_ras = numpy_matrix(directions)[:3, :3]
    spacing = np.array(node.GetSpacing(), dtype=float)
    origin_ras = np.array(node.GetOrigin(), dtype=float)

    transform = node.GetParentTransformNode()
    if transform is not None:
        if not transform.IsTransformToWorldLinear():
            raise InputError(f"volume {node.GetName()!r} is under a non-linear transform; harden it first")
        to_world = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(to_world)
        to_world = numpy_matrix(to_world)
        columns = to_world[:3, :3] @ direction_ras @ np.diag(spacing)
        origin_ras = to_world[:3, :3] @ origin_ras + to_world[:3, 3]
        spacing = np.linalg.norm(columns, axis=0)
        direction_ras = columns / spacing
        if not np.allclose(direction_ras.T @ direction_ras, np.eye(3), atol=1e-6):
            raise InputError(f"volume {node.GetName()!r} is under a transform that shears it; harden and resample it")
    return Image(array, tuple(spacing), tuple(lps_to_ras(origin_ras)), LPS_TO_RAS @ direction_ras)


# -- colours and terminology ------------------------------------------------------------------------------------
def terminology_entry(label: int) -> str:
    """Slicer's terminology string (the ``TerminologyEntry`` segment tag) of a vertebra id of the label table."""
    v = VERTEBRAE[int(label)]
    scheme, code, meaning = CATEGORY_CODE
    region = f"SCT^{v.region_code[0]}^{v.region_code[1]}" if v.region_code else "^^"
    return (f"{TERMINOLOGY_CONTEXT}~{scheme}^{code}^{meaning}~SCT^{v.snomed_code}^{v.snomed_meaning}~^^~"
            f"{REGION_CONTEXT}~{region}~^^")


def fill_colour_table(node, extra: dict | None = None):
    """Make ``node`` (a ``vtkMRMLColorTableNode``) the SpineSeg vertebra table: index = VerSe id, name, colour and
    terminology from :mod:`SpineSegLib.labels`; 0 is a transparent "Background". ``extra`` adds ``{id: name}``
    entries (grey, no terminology) for ids outside the table."""
    extra = {int(k): v for k, v in (extra or {}).items() if int(k) not in VERTEBRAE and int(k) > 0}
    size = max([max(VERTEBRAE) + 1, *[k + 1 for k in extra]])
    node.SetTypeToUser()
    node.SetNumberOfColors(size)
    node.GetLookupTable().SetRange(0, size - 1)
    node.SetColor(0, "Background", 0.0, 0.0, 0.0, 0.0)
    scheme, code, meaning = CATEGORY_CODE
    for v in VERTEBRAE.values():
        node.SetColor(v.label, v.name, *(c / 255.0 for c in v.color_255), 1.0)   # 8-bit, as in the files
        region = ("SCT", *v.region_code) if v.region_code else ("", "", "")
        node.SetTerminology(v.label, scheme, code, meaning, "SCT", v.snomed_code, v.snomed_meaning, "", "", "", *region)
    for label, name in extra.items():
        node.SetColor(label, name, 0.6, 0.6, 0.6, 1.0)
    return node


def vertebra_colour_table(scene):
    """The scene's SpineSeg vertebra colour table node (created on first use, found again by its attribute).

    For display and for users' own exports in the GUI; :func:`segmentation_to_labelmap` builds its own copy from
    :mod:`SpineSegLib.labels` each time, so edits to this node never change exported ids.
    """
    nodes = scene.GetNodesByClass("vtkMRMLColorTableNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetAttribute(COLOUR_TABLE_ROLE) == "vertebrae":
            return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOUR_TABLE_NAME)
    node.SetAttribute(COLOUR_TABLE_ROLE, "vertebrae")
    return fill_colour_table(node)


LABEL_RESOURCES = ("SpineSeg-vertebrae.ctbl", "SpineSeg-vertebrae.csv", "SpineSeg-vertebrae.term.json")


def terminology_json() -> dict:
    """The SpineSeg vertebrae as a Slicer terminology context (``.term.json``, dcmqi segment-context schema):
    one type per vertebra with its SNOMED CT code, colour and ``3dSlicerLabel`` (the name, e.g. ``"L1"``).
    T13 and L6 share the type "Vertebra" and differ by anatomic region (see :mod:`SpineSegLib.labels`), so the
    context lists that type once, and the selector shows the anatomic region."""
    scheme, code, meaning = CATEGORY_CODE
    types, seen = [], set()
    for v in sorted(VERTEBRAE.values(), key=lambda v: v.order):
        if v.snomed_code in seen:
            continue
        seen.add(v.snomed_code)
        generic = v.region_code is not None
        types.append({"CodeMeaning": v.snomed_meaning, "CodingSchemeDesignator": "SCT", "CodeValue": v.snomed_code,
                      "SNOMEDCTConceptID": v.snomed_code, "3dSlicerLabel": "Vertebra" if generic else v.name,
                      "recommendedDisplayRGBValue": [200, 200, 200] if generic else list(v.color_255)})
    return {"SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
            "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
            "SegmentationCodes": {"Category": [{"CodeMeaning": meaning, "CodingSchemeDesignator": scheme,
                                                "CodeValue": code, "showAnatomy": True, "Type": types}]}}


def write_label_resources(folder, force: bool = False) -> list[Path]:
    """Write the label table for Slicer and other tools into ``folder``: ``SpineSeg-vertebrae.ctbl`` (id, name,
    colour), ``SpineSeg-vertebrae.csv`` (Slicer >= 5.8 colour table with terminology codes) and
    ``SpineSeg-vertebrae.term.json`` (a terminology context for Slicer's terminology selector). Generated from
    :mod:`SpineSegLib.labels` only -- regenerate, never edit::

        python -m SpineSegLib.mrml_bridge Resources/Labels --force
    """
    folder = Path(folder)
    paths = [folder / name for name in LABEL_RESOURCES]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise OutputExistsError(f"{', '.join(existing)} exist; pass force=True (--force) to overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    ctbl = ["# SpineSeg vertebra labels (VerSe / CTSpine1K ids), generated from SpineSegLib/labels.py",
            "0 Background 0 0 0 0", *[f"{label} {name} {r} {g} {b} 255" for label, name, r, g, b in colour_table_rows()]]
    _write_atomic(paths[0], lambda tmp: Path(tmp).write_text("\n".join(ctbl) + "\n"))

    def write_csv(tmp):
        storage = slicer.vtkMRMLColorTableStorageNode()
        storage.SetFileName(tmp)
        if not storage.WriteData(fill_colour_table(slicer.vtkMRMLColorTableNode())):
            raise SpineSegError(f"Slicer could not write the colour table {paths[1]}")

    _write_atomic(paths[1], write_csv)
    _write_atomic(paths[2], lambda tmp: Path(tmp).write_text(json.dumps(terminology_json(), indent=2) + "\n"))
    return paths


def _write_atomic(path: Path, write) -> None:
    with replaced_atomically(path, "".join(path.suffixes)) as tmp:
        write(tmp)


# -- segmentations ----------------------------------------------------------------------------------------------
def labelmap_to_segmentation(scene, label_image: Image, reference_volume=None, name: str = "Vertebrae",
                             vertebrae: dict | None = None, node=None):
    """A segmentation node with one segment per label id of ``label_image`` (an instance label map).

    Segments are named, coloured and terminology-coded from the label table (ids outside it become "label <id>",
    grey, uncoded) and tagged ``SpineSeg.Label``; ``vertebrae`` adds per-vertebra values,
    ``{label: {"complete": False, "regressed_label": 19.7, ...}}`` (see :func:`annotate_segments`). With
    ``reference_volume`` the segmentation takes its geometry as reference and is placed next to it in the subject
    hierarchy. ``node``: an existing segmentation node to add the segments to.
    """
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
    label_image = label_image.with_array(array)

    present = [int(v) for v in np.unique(array) if v]
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

    display = node.GetDisplayNode()
    for segment_id in _segment_ids(node):
        if segment_id in before:
            continue
        segment = node.GetSegmentation().GetSegment(segment_id)
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
        display.SetSegmentVisibility(segment_id, True)
    if vertebrae:
        annotate_segments(node, vertebrae)
    if reference_volume is not None:
        place_next_to(node, reference_volume)
    return node


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
    :mod:`SpineSegLib.labels` (plus entries for ids outside it), and checks that Slicer chose the same ids.
    """
    scene = _scene_of(segmentation_node)
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
    scene = _scene_of(segmentation_node)
    node = segmentation_to_labelmap(segmentation_node, reference_volume, segment_ids)
    try:
        return volume_to_image(node)
    finally:
        display = node.GetDisplayNode()
        colours = display.GetColorNode() if display is not None else None
        _remove_nodes(scene, display, node)
        if colours is not None and colours.GetType() == colours.User and not colours.GetAttribute(COLOUR_TABLE_ROLE):
            _remove_nodes(scene, colours)


# -- subject hierarchy ------------------------------------------------------------------------------------------
def subject_hierarchy_item(node, parent_item: int | None = None) -> int:
    """The subject hierarchy item of ``node``, created (under ``parent_item`` or the scene) when missing -- Slicer's
    GUI creates items for new nodes, slicer-core does not."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(_scene_of(node))
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(parent_item or sh.GetSceneItemID(), node)
    return item


def place_next_to(node, reference_node) -> int:
    """Move ``node`` beside ``reference_node`` in the subject hierarchy (same parent: patient/study/folder)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(_scene_of(node))
    parent = sh.GetItemParent(subject_hierarchy_item(reference_node))
    item = subject_hierarchy_item(node, parent)
    sh.SetItemParent(item, parent)
    return item


def add_folder(scene, name: str, next_to=None) -> int:
    """A subject hierarchy folder (beside ``next_to`` when given); returns its item id."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(subject_hierarchy_item(next_to)) if next_to is not None else sh.GetSceneItemID()
    return sh.CreateFolderItem(parent, name)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write SpineSeg's label colour tables and terminology.")
    parser.add_argument("folder", help="output folder, e.g. Resources/Labels")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    arguments = parser.parse_args()
    for written in write_label_resources(arguments.folder, force=arguments.force):
        print(written)
