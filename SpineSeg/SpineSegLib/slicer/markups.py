"""Markups in the scene for SpineSeg's geometric results; every point is given and returned in **LPS mm**.

How results are shown:

* a centreline -> one markups curve (:func:`add_curve`; linear between the given points, small glyphs, no labels);
* per-slice lines or parabolas -> one curve per slice, gathered in a subject-hierarchy folder that hides or shows
  them together (:func:`add_curves`) -- each lies in its slice, so a slice view shows exactly its own;
* dynamic-programming points, landmarks -> one point list (:func:`add_points`);
* an IIS patch -> an oriented markups ROI box (:func:`add_box`).

Runs in 3D Slicer and under ``slicer-core``.

Console use::

    from SpineSegLib.slicer import markups
    curve = markups.add_curve(scene, centreline_lps, "Centreline", next_to=ct_node)
    box = markups.add_box(scene, centre_lps=(10, -20, 30), size_mm=(96, 96, 64), name="patch 3")
    markups.control_points_lps(curve)        # N x 3, LPS mm
"""

from __future__ import annotations

import numpy as np
import vtk

from SpineSegLib.core.errors import InputError
from SpineSegLib.slicer.scene import add_folder, place
from SpineSegLib.slicer.volumes import lps_to_ras, ras_to_lps, vtk_matrix


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
    place(node, next_to, parent_item)
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
    place(node, next_to)
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
    place(node, next_to)
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
