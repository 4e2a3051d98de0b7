"""SpineSeg results in the MRML scene, second half of the bridge: markups, tables, saving and loading files.

Like :mod:`SpineSegLib.mrml_bridge` (volumes, segmentations, colours), every function takes the scene or nodes as
parameters and runs both inside 3D Slicer and under ``slicer-core``. Points are given and returned in **LPS mm**.

How results are shown:

* a centreline -> one markups curve (:func:`add_curve`; linear between the given points, small glyphs, no labels);
* per-slice lines or parabolas -> one curve per slice, gathered in a subject-hierarchy folder that hides or shows
  them together (:func:`add_curves`) -- each lies in its slice, so a slice view shows exactly its own;
* dynamic-programming points, landmarks -> one point list (:func:`add_points`);
* an IIS patch -> an oriented markups ROI box (:func:`add_box`);
* metrics or per-vertebra measurements -> a table node with typed columns (:func:`add_table`).

Files: :func:`save_node` (``.seg.nrrd``, ``.nii.gz``/``.nrrd``, ``.mrk.json``, ``.tsv``), :func:`save_results`
(a folder: every node plus each segmentation as a label map with stable VerSe ids, and the scene as ``.mrb``),
:func:`write_scene_bundle`; :func:`load_segmentation`, :func:`load_markups`, :func:`load_table`,
:func:`read_scene_bundle`. Nothing existing is overwritten unless ``force=True``, and files are written under a
temporary name and renamed, so a failed write leaves no half-written file.

Console use::

    from SpineSegLib import mrml_results as mr
    curve = mr.add_curve(scene, centreline_lps, "Centreline", next_to=ct_node)
    box = mr.add_box(scene, centre_lps=(10, -20, 30), size_mm=(96, 96, 64), name="patch 3")
    table = mr.add_table(scene, [{"vertebra": "L1", "volume_ml": 41.2, "complete": True}], "Vertebrae")
    mr.save_results("out/case1", [seg, curve, table], reference_volume=ct_node, scene=scene, bundle="case1.mrb")
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import slicer
import vtk

from .errors import InputError, OutputExistsError, SpineSegError
from .image import set_default_permissions, write_image
from .mrml_bridge import (add_folder, lps_to_ras, place_next_to, ras_to_lps, segmentation_to_image,
                          subject_hierarchy_item, volume_to_image, vtk_matrix)

UNIT_SUFFIXES = {"_mm3": "mm3", "_mm": "mm", "_ml": "mL", "_hu": "HU", "_deg": "deg"}


# -- markups ----------------------------------------------------------------------------------------------------
def _points(points_lps, what: str) -> np.ndarray:
    points = np.asarray(points_lps, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{what}: expected N x 3 LPS points, got an array of shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise InputError(f"{what}: the points hold NaN or infinite values")
    return points


def _set_points(node, points_lps) -> None:
    vtk_points = vtk.vtkPoints()
    for p in lps_to_ras(points_lps):
        vtk_points.InsertNextPoint(*p)
    node.SetControlPointPositionsWorld(vtk_points)


def set_control_points(node, points_lps) -> None:
    """Replace the control points of a markups node (curve, point list) with ``points_lps`` (N x 3, LPS mm), in
    one modification (e.g. lines that follow the slice the user scrolls to)."""
    points = _points(points_lps, node.GetName()) if len(points_lps) else np.zeros((0, 3))
    was = node.StartModify()
    try:
        _set_points(node, points)
    finally:
        node.EndModify(was)


def _style(node, colour, labels_visible: bool, glyph_scale: float | None = None) -> None:
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if colour is not None:
        display.SetSelectedColor(*colour)
        display.SetColor(*colour)
    display.SetPointLabelsVisibility(labels_visible)
    if glyph_scale is not None:
        display.SetGlyphScale(glyph_scale)


def add_curve(scene, points_lps, name: str = "Centreline", colour=(1.0, 0.85, 0.1), next_to=None,
              smooth: bool = False, locked: bool = False, parent_item: int | None = None):
    """A markups curve through ``points_lps`` (N x 3, LPS mm, N >= 2), one control point per point.

    ``smooth=False`` joins the points with straight segments (what was computed, nothing interpolated);
    ``True`` uses Slicer's default spline. Placed next to ``next_to`` (or in ``parent_item``) in the hierarchy.
    """
    points = _points(points_lps, name)
    if len(points) < 2:
        raise InputError(f"{name}: a curve needs at least 2 points, got {len(points)}")
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", name)
    if not smooth:
        node.SetCurveTypeToLinear()
    _set_points(node, points)
    _style(node, colour, labels_visible=False, glyph_scale=1.0 if len(points) > 20 else None)
    node.SetLocked(locked)
    _place(node, next_to, parent_item)
    return node


def add_curves(scene, curves_lps, folder_name: str, names=None, colour=(0.2, 0.9, 0.9), next_to=None,
               locked: bool = True):
    """One curve per item of ``curves_lps`` (a list of N x 3 LPS arrays, e.g. a parabola per axial slice) in a new
    subject-hierarchy folder ``folder_name``. ``names`` default to ``"<folder_name> <i>"``. Returns
    ``(folder_item, nodes)``; the folder shows or hides them all at once."""
    folder = add_folder(scene, folder_name, next_to)
    names = list(names) if names is not None else [f"{folder_name} {i}" for i in range(len(curves_lps))]
    if len(names) != len(curves_lps):
        raise InputError(f"{folder_name}: {len(names)} names for {len(curves_lps)} curves")
    nodes = [add_curve(scene, points, name, colour, locked=locked, parent_item=folder)
             for points, name in zip(curves_lps, names)]
    return folder, nodes


def add_points(scene, points_lps, name: str = "Points", labels=None, colour=(1.0, 0.3, 0.3), next_to=None,
               locked: bool = True):
    """A markups point list with one control point per row of ``points_lps`` (LPS mm). ``labels`` (one string per
    point) are shown; without them the points are unlabelled."""
    points = _points(points_lps, name) if len(points_lps) else np.zeros((0, 3))
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    _set_points(node, points)
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(points):
            raise InputError(f"{name}: {len(labels)} labels for {len(points)} points")
        for i, label in enumerate(labels):
            node.SetNthControlPointLabel(i, str(label))
    _style(node, colour, labels_visible=labels is not None, glyph_scale=1.5 if len(points) > 20 else None)
    node.SetLocked(locked)
    _place(node, next_to, None)
    return node


def control_points_lps(node) -> np.ndarray:
    """The control points of a markups node as N x 3 LPS mm (world coordinates)."""
    out = np.zeros((node.GetNumberOfControlPoints(), 3))
    for i in range(len(out)):
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, p)
        out[i] = p
    return ras_to_lps(out)


def add_box(scene, centre_lps, size_mm, axes_lps=None, name: str = "Patch", colour=(0.3, 0.6, 1.0), next_to=None,
            locked: bool = True):
    """An oriented markups ROI box: centre (LPS mm), edge lengths ``size_mm`` (mm) along the box axes, whose unit
    directions are the COLUMNS of ``axes_lps`` (3 x 3, LPS; default: the L, P, S axes).

    A left-handed set of axes gets its third axis reversed (the same box); non-orthonormal axes raise InputError.
    """
    matrix, size = _box_matrix(centre_lps, size_mm, axes_lps, name)
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    node.SetAndObserveObjectToNodeMatrix(vtk_matrix(matrix))
    node.SetSize(*size)
    _style(node, colour, labels_visible=False)
    node.SetLocked(locked)
    _place(node, next_to, None)
    return node


def set_box(node, centre_lps, size_mm, axes_lps=None) -> None:
    """Move an existing ROI node (from :func:`add_box`) to a new box, in one modification (a patch that moves
    while the IIS traversal steps)."""
    matrix, size = _box_matrix(centre_lps, size_mm, axes_lps, node.GetName())
    was = node.StartModify()
    try:
        node.SetAndObserveObjectToNodeMatrix(vtk_matrix(matrix))
        node.SetSize(*size)
    finally:
        node.EndModify(was)


def _box_matrix(centre_lps, size_mm, axes_lps, name: str):
    centre = np.asarray(centre_lps, dtype=float).reshape(3)
    size = np.asarray(size_mm, dtype=float).reshape(3)
    axes = np.eye(3) if axes_lps is None else np.asarray(axes_lps, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(centre)) or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise InputError(f"{name}: a box needs a finite centre and positive sizes, got {centre}, {size}")
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-6):
        raise InputError(f"{name}: the box axes must be orthonormal unit vectors (columns of a 3 x 3 matrix)")
    axes_ras = lps_to_ras(axes.T).T
    if np.linalg.det(axes_ras) < 0:
        axes_ras[:, 2] *= -1
    matrix = np.eye(4)
    matrix[:3, :3] = axes_ras
    matrix[:3, 3] = lps_to_ras(centre)
    return matrix, size


def box_lps(node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre, size_mm, axes)`` of a markups ROI node, LPS (axes as columns), as :func:`add_box` takes them."""
    matrix = node.GetObjectToWorldMatrix()
    m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    axes_ras = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    centre, size = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    node.GetCenterWorld(centre)
    node.GetSizeWorld(size)
    return ras_to_lps(centre), np.array(size, dtype=float), lps_to_ras(axes_ras.T).T


def _place(node, next_to, parent_item) -> None:
    if next_to is not None:
        place_next_to(node, next_to)
    else:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
        item = subject_hierarchy_item(node, parent_item)
        if parent_item:
            sh.SetItemParent(item, parent_item)


# -- tables -----------------------------------------------------------------------------------------------------
def add_table(scene, data, name: str = "Measurements", units: dict | None = None, descriptions: dict | None = None,
              next_to=None):
    """A table node from ``data``: a list of row dicts (e.g. one per vertebra), a dict of equal-length column lists,
    or a flat dict of scalars (one row). Columns keep their first-seen order and get a type each:
    all bools -> ``bit``, all integers -> ``int``, numbers -> ``double`` (missing = NaN), anything else ->
    ``string`` (missing = ""). Units come from ``units`` or the column suffix (``_mm``, ``_mm3``, ``_ml``, ``_hu``).
    """
    columns = _columns(data, name)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetUseColumnTitleAsColumnHeader(True)
    _fill_table(node, columns, units, descriptions)
    _place(node, next_to, None)
    return node


def set_table(node, data, units: dict | None = None, descriptions: dict | None = None) -> None:
    """Replace the content of an existing table node with ``data`` (the forms :func:`add_table` takes)."""
    columns = _columns(data, node.GetName())
    was = node.StartModify()
    try:
        node.RemoveAllColumns()
        _fill_table(node, columns, units, descriptions)
    finally:
        node.EndModify(was)


def _fill_table(node, columns: dict, units, descriptions) -> None:
    for column, values in columns.items():
        node.AddColumn(_vtk_column(column, values))
        unit = (units or {}).get(column) or next((u for s, u in UNIT_SUFFIXES.items() if column.lower().endswith(s)),
                                                 None)
        if unit:
            node.SetColumnUnitLabel(column, unit)
        if descriptions and column in descriptions:
            node.SetColumnDescription(column, descriptions[column])


def _columns(data, name: str) -> dict:
    if isinstance(data, Mapping):
        values = list(data.values())
        if values and all(isinstance(v, (list, tuple, np.ndarray)) for v in values):
            lengths = {len(v) for v in values}
            if len(lengths) > 1:
                raise InputError(f"{name}: table columns of different lengths {sorted(lengths)}")
            return {str(k): list(v) for k, v in data.items()}
        rows = [data]
    else:
        rows = list(data)
    if not all(isinstance(r, Mapping) for r in rows):
        raise InputError(f"{name}: a table needs a list of dicts, a dict of columns or a dict of values")
    keys = list(dict.fromkeys(str(k) for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _vtk_column(column: str, values: list):
    present = [v for v in values if not _missing(v)]
    is_bool = lambda v: isinstance(v, (bool, np.bool_))  # noqa: E731
    is_int = lambda v: isinstance(v, (int, np.integer)) and not is_bool(v)  # noqa: E731
    is_number = lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not is_bool(v)  # noqa: E731
    if present and len(present) == len(values) and all(is_bool(v) for v in present):
        array = vtk.vtkBitArray()
        convert = lambda v: int(bool(v))  # noqa: E731
    elif present and len(present) == len(values) and all(is_int(v) for v in present) \
            and all(-2**31 <= int(v) < 2**31 for v in present):
        array = vtk.vtkIntArray()
        convert = int
    elif present and all(is_number(v) for v in present):
        array = vtk.vtkDoubleArray()
        convert = lambda v: float("nan") if _missing(v) else float(v)  # noqa: E731
    else:
        array = vtk.vtkStringArray()
        convert = lambda v: "" if _missing(v) else str(v)  # noqa: E731
    array.SetName(column)
    for value in values:
        array.InsertNextValue(convert(value))
    return array


def table_rows(node) -> list[dict]:
    """The rows of a table node as dicts with Python values (bit -> bool, integer types -> int, real -> float)."""
    table = node.GetTable()
    out = [{} for _ in range(table.GetNumberOfRows())]
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        name = array.GetName()
        for r in range(len(out)):
            value = array.GetValue(r)
            if isinstance(array, vtk.vtkBitArray):
                value = bool(value)
            elif isinstance(array, vtk.vtkStringArray):
                value = str(value)
            elif array.GetDataType() in (vtk.VTK_FLOAT, vtk.VTK_DOUBLE):
                value = float(value)
            else:
                value = int(value)
            out[r][name] = value
    return out


# -- writing ----------------------------------------------------------------------------------------------------
def default_extension(node) -> str:
    """The file suffix SpineSeg writes ``node`` with."""
    if node.IsA("vtkMRMLSegmentationNode"):
        return ".seg.nrrd"
    if node.IsA("vtkMRMLVolumeNode"):
        return ".nii.gz"
    if node.IsA("vtkMRMLMarkupsNode"):
        return ".mrk.json"
    if node.IsA("vtkMRMLTableNode"):
        return ".tsv"
    raise InputError(f"SpineSeg does not know how to save a {node.GetClassName()} ({node.GetName()!r})")


def safe_file_name(name: str) -> str:
    """``name`` with the characters that are unsafe in file names replaced by ``_``."""
    safe = re.sub(r"[^A-Za-z0-9 ._()+-]", "_", name).strip(" .")
    return safe or "unnamed"


def _companions(path: Path) -> list[Path]:
    """Files written beside ``path`` (a table's column schema)."""
    if path.name.lower().endswith(".tsv"):
        return [path.with_name(path.name[:-4] + ".schema.tsv")]
    if path.name.lower().endswith(".csv"):
        return [path.with_name(path.name[:-4] + ".schema.csv")]
    return []


def _check_targets(paths, force: bool) -> None:
    if force:
        return
    existing = [str(p) for path in paths for p in [path, *_companions(path)] if p.exists()]
    if existing:
        raise OutputExistsError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; "
                                "pass force=True (--force) to overwrite")


def save_node(node, path, force: bool = False) -> Path:
    """Write one node: segmentation -> ``.seg.nrrd``, volume -> ``.nii.gz``/``.nii``/``.nrrd``/``.mha``, markups ->
    ``.mrk.json``, table -> ``.tsv``/``.csv`` (plus its ``.schema`` file). Atomic; refuses to overwrite unless
    ``force``. The node's own storage settings are left untouched."""
    path = Path(path)
    if node.IsA("vtkMRMLVolumeNode"):
        return write_image(volume_to_image(node), path, force=force)
    expected = {"vtkMRMLSegmentationNode": (".seg.nrrd",), "vtkMRMLMarkupsNode": (".mrk.json",),
                "vtkMRMLTableNode": (".tsv", ".csv")}
    suffixes = next((s for cls, s in expected.items() if node.IsA(cls)), None)
    if suffixes is None:
        default_extension(node)  # raises for unknown node types
    if not path.name.lower().endswith(suffixes):
        raise InputError(f"{path}: a {node.GetClassName()} is saved as {' or '.join(suffixes)}")
    _check_targets([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = next(s for s in suffixes if path.name.lower().endswith(s))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    storage = node.CreateDefaultStorageNode()
    try:
        storage.SetFileName(str(tmp))
        if node.IsA("vtkMRMLSegmentationNode"):
            storage.SetUseCompression(True)
        if not storage.WriteData(node):
            raise SpineSegError(f"Slicer could not write {node.GetName()!r} to {path}: "
                                f"{storage.GetUserMessages().GetAllMessagesAsString()}")
        for src, dst in zip([tmp, *_companions(tmp)], [path, *_companions(path)]):
            if src.exists():
                set_default_permissions(src)
                os.replace(src, dst)
    finally:
        for leftover in [tmp, *_companions(tmp)]:
            if leftover.exists():
                leftover.unlink()
    return path


def write_scene_bundle(scene, path, force: bool = False) -> Path:
    """Write the whole scene (every node with its data) as a Slicer scene bundle ``.mrb``."""
    path = Path(path)
    if not path.name.lower().endswith(".mrb"):
        raise InputError(f"{path}: a scene bundle is saved as .mrb")
    _check_targets([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written under its final name in a hidden temporary folder beside it (the bundle's inner folder is named after
    # the file), then moved into place
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    tmp = tmp_dir / path.name
    messages = slicer.vtkMRMLMessageCollection()
    url, root = scene.GetURL(), scene.GetRootDirectory()
    try:
        ok = scene.WriteToMRB(str(tmp), None, messages)
        if not ok or not tmp.exists():
            raise SpineSegError(f"Slicer could not write the scene bundle {path}: {messages.GetAllMessagesAsString()}")
        set_default_permissions(tmp)
        os.replace(tmp, path)
    finally:
        scene.SetURL(url)
        scene.SetRootDirectory(root)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def save_results(folder, nodes, reference_volume=None, scene=None, bundle: str | None = None,
                 force: bool = False) -> dict[str, Path]:
    """Save result nodes into ``folder``, named after the nodes, and return ``{what: path}``.

    Each segmentation is written twice: ``<name>.seg.nrrd`` (segments with names, colours, codes, tags) and
    ``<name>.nii.gz``, a label map with stable VerSe ids on ``reference_volume``'s grid. ``bundle`` (e.g.
    ``"case.mrb"``) also writes the whole ``scene``. Every target is checked before anything is written: with an
    existing file and no ``force`` nothing is written at all; label maps are exported before the first write, so a
    segmentation that cannot be exported stops the save early too.
    """
    folder = Path(folder)
    jobs = []   # (key, path, writer)
    for node in nodes:
        base = folder / safe_file_name(node.GetName())
        jobs.append((node.GetName(), Path(str(base) + default_extension(node)),
                     lambda p, n=node: save_node(n, p, force=True)))
        if node.IsA("vtkMRMLSegmentationNode"):
            ids = segmentation_to_image(node, reference_volume)
            jobs.append((node.GetName() + " label map", Path(str(base) + ".nii.gz"),
                         lambda p, image=ids: write_image(image, p, force=True)))
    if bundle:
        if scene is None:
            raise InputError("save_results: pass the scene to write a scene bundle")
        jobs.append(("scene", folder / bundle, lambda p: write_scene_bundle(scene, p, force=True)))
    paths = [path for _, path, _ in jobs]
    duplicates = sorted({str(p) for p in paths if paths.count(p) > 1})
    if duplicates:
        raise InputError(f"save_results: several results would be written to {', '.join(duplicates)}; rename the nodes")
    _check_targets(paths, force)
    folder.mkdir(parents=True, exist_ok=True)
    return {key: writer(path) for key, path, writer in jobs}


# -- reading ----------------------------------------------------------------------------------------------------
def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return path


def _base_name(path: Path, suffixes) -> str:
    name = path.name
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_segmentation(scene, path, name: str | None = None):
    """Read a segmentation file (``.seg.nrrd``; also ``.nrrd``/``.nii.gz`` label maps Slicer can read as a
    segmentation) into a new segmentation node, with its segment names, colours, terminology and tags."""
    path = _existing(path)
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or _base_name(path, (".seg.nrrd", ".nrrd")))
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        message = storage.GetUserMessages().GetAllMessagesAsString()
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"{path}: not a readable segmentation ({message.strip() or 'Slicer could not read it'})")
    node.CreateDefaultDisplayNodes()
    subject_hierarchy_item(node)
    return node


def load_markups(scene, path, name: str | None = None):
    """Read a ``.mrk.json`` file (curve, point list, ROI, ...) into a new markups node; the first markup of the
    file."""
    path = _existing(path)
    try:
        kind = json.loads(path.read_text())["markups"][0]["type"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InputError(f"{path}: not a Slicer markups (.mrk.json) file") from None
    cls = "vtkMRMLMarkupsROIJsonStorageNode" if kind == "ROI" else \
        "vtkMRMLMarkupsPlaneJsonStorageNode" if kind == "Plane" else "vtkMRMLMarkupsJsonStorageNode"
    storage = scene.AddNewNodeByClass(cls)
    node = storage.AddNewMarkupsNodeFromFile(str(path), name or _base_name(path, (".mrk.json", ".json")))
    if node is None:
        scene.RemoveNode(storage)
        raise InputError(f"{path}: Slicer could not read the markups in it")
    subject_hierarchy_item(node)
    return node


def load_table(scene, path, name: str | None = None):
    """Read a ``.tsv``/``.csv`` table (with its ``.schema`` file when present, for column types)."""
    path = _existing(path)
    storage = scene.AddNewNodeByClass("vtkMRMLTableStorageNode")
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name or _base_name(path, (".tsv", ".csv")))
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"{path}: not a readable table")
    subject_hierarchy_item(node)
    return node


def read_scene_bundle(scene, path) -> None:
    """Add the content of a ``.mrb`` scene bundle to ``scene`` (its nodes, with their data)."""
    path = _existing(path)
    if scene.GetDataIOManager() is None or scene.GetCacheManager() is None:
        # Slicer's application sets these up; a bare scene (slicer-core) needs them to unpack a bundle
        cache_dir = Path(tempfile.gettempdir()) / "spineseg-slicer-cache"
        cache_dir.mkdir(exist_ok=True)
        (cache_dir / ".slicer-cache").touch()    # the sentinel the cache manager looks for
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(str(cache_dir))
        data_io = slicer.vtkDataIOManager()
        data_io.SetCacheManager(cache)
        scene.SetCacheManager(cache)
        scene.SetDataIOManager(data_io)
        scene.spineseg_data_io = (cache, data_io)
    messages = slicer.vtkMRMLMessageCollection()
    if not scene.ReadFromMRB(str(path), False, messages):
        raise InputError(f"{path}: not a readable scene bundle ({messages.GetAllMessagesAsString().strip()})")
