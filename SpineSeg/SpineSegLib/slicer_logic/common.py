"""What both SpineSeg Slicer logics share: checking the input node, keeping the scene consistent when a run
fails or is cancelled, reading a reference (segmentation or label map), exporting.

Qt-free: MRML (through :mod:`SpineSegLib.mrml_bridge`), vtk and numpy only -- runs in 3D Slicer and under
``slicer-core``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import slicer
import vtk

from .. import mrml_bridge as mb
from .. import mrml_results as mr
from ..errors import InputError, SpineSegError
from ..image import Image, write_image


def check_volume_node(node, what: str = "input volume", min_slices: int = 2) -> Image:
    """The voxels of a scalar volume node as an :class:`Image`, or an :class:`InputError` that names the problem:
    nothing selected, a label map, a segmentation, a vector volume, an empty node, a single slice."""
    if node is None:
        raise InputError(f"no {what} selected: choose a CT or MR volume")
    if not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"{node.GetName()!r} is a {node.GetClassName()}, not a volume: choose a CT or MR volume "
                         f"as the {what}")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{node.GetName()!r} is a label map: choose the scan (a scalar volume) as the {what}; "
                         "a label map can serve as the reference for evaluation")
    image = mb.volume_to_image(node)     # raises for empty nodes, vector volumes, non-linear transforms
    flat = [n for n in image.size if n < min_slices]
    if flat:
        size = " x ".join(str(n) for n in image.size)
        raise InputError(f"{node.GetName()!r} is a 2-D image ({size} voxels): SpineSeg needs a 3-D volume with at "
                         f"least {min_slices} slices along every axis")
    if image.array.dtype.kind not in "iuf":
        raise InputError(f"{node.GetName()!r} holds {image.array.dtype} voxels; a scalar volume is needed")
    return image


def reference_image(node, reference_volume) -> Image:
    """A reference (a segmentation node with vertebra segments, or a label map / scalar volume with ids) as an
    id image on ``reference_volume``'s grid when it is a segmentation, else on its own grid."""
    if node is None:
        raise InputError("no reference selected: choose a segmentation or a label map")
    if node.IsA("vtkMRMLSegmentationNode"):
        return mb.segmentation_to_image(node, reference_volume)
    if node.IsA("vtkMRMLVolumeNode"):
        image = mb.volume_to_image(node)
        if image.array.dtype.kind == "f" and np.any(image.array != np.round(image.array)):
            raise InputError(f"reference {node.GetName()!r} holds fractional values; a label map holds integer ids")
        return image
    raise InputError(f"reference {node.GetName()!r} is a {node.GetClassName()}; choose a segmentation or a label map")


def _items(scene) -> set:
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    ids = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
    return {ids.GetId(i) for i in range(ids.GetNumberOfIds())}


def _node_ids(scene) -> list:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


@contextlib.contextmanager
def scene_transaction(scene):
    """Undo what a failed block added: nodes (and subject-hierarchy folders) created inside the block are
    removed when it raises (an error, or :class:`~SpineSegLib.progress.Cancelled`), so the scene holds no
    half-made results. Nodes that existed before are never touched."""
    before_nodes = set(_node_ids(scene))
    before_items = _items(scene)
    try:
        yield
    except BaseException:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        for node_id in reversed(_node_ids(scene)):
            if node_id not in before_nodes:
                node = scene.GetNodeByID(node_id)
                if node is not None and not node.IsA("vtkMRMLSubjectHierarchyNode"):
                    remove_node(node)
        for item in sorted(_items(scene) - before_items, reverse=True):
            if item in _items(scene):        # removing a folder removes its children too
                sh.RemoveItem(item, False, False)
        raise


def remove_node(node) -> None:
    """Remove a node with its display and storage nodes and its subject-hierarchy item (a data node removed
    from the scene alone can leave a stale item behind under slicer-core)."""
    if node is None or node.GetScene() is None:
        return
    scene = node.GetScene()
    extra = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        extra += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if hasattr(node, "GetStorageNode") and node.GetStorageNode() is not None:
        extra.append(node.GetStorageNode())
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node) if sh is not None else 0
    if item:
        sh.RemoveItem(item, False, False)   # the item first: with removeDataNode=True slicer-core keeps a stale item
    if node.GetScene() is scene:
        scene.RemoveNode(node)
    for e in extra:
        if e is not None and e.GetScene() is scene:
            scene.RemoveNode(e)


def remove_nodes(*nodes) -> None:
    """:func:`remove_node` for each node; None and already removed nodes are skipped."""
    for node in nodes:
        remove_node(node)


def export_labelmap(segmentation_node, path, reference_volume=None, force: bool = False) -> Path:
    """Write a segmentation as a label map file with stable VerSe ids on ``reference_volume``'s grid."""
    return write_image(mb.segmentation_to_image(segmentation_node, reference_volume), path, force=force)


def export_node(node, path, force: bool = False) -> Path:
    """Write a segmentation (``.seg.nrrd``), table (``.tsv``/``.csv``), markups or volume node."""
    return mr.save_node(node, path, force=force)


def rows_for_table(rows: list[dict]) -> list[dict]:
    """Rows with NaN-free, table-friendly values (None for missing numbers keeps a column numeric)."""
    out = []
    for row in rows:
        clean = {}
        for key, value in row.items():
            if isinstance(value, (np.floating, float)) and not np.isfinite(value):
                clean[key] = None
            elif isinstance(value, np.generic):
                clean[key] = value.item()
            else:
                clean[key] = value
        out.append(clean)
    return out


class SpineSegLogicError(SpineSegError):
    """A problem in the Slicer logic the user can fix (wrong node, nothing to export ...)."""
