"""The MRML scene itself: a scene with the logics SpineSeg needs, the subject hierarchy (where nodes are shown in the
Data module), and keeping the scene consistent -- a failed block adds nothing, removed nodes leave nothing behind.

Runs in 3D Slicer (``slicer.mrmlScene``) and under ``slicer-core`` (a scene from :func:`new_scene`).

Console use (``slicer-core``; in Slicer use ``slicer.mrmlScene``)::

    from SpineSegLib.slicer.scene import new_scene, add_folder, scene_transaction
    scene = new_scene()
    folder = add_folder(scene, "SpineSeg results")
    with scene_transaction(scene):       # nodes added here are removed again if the block raises
        ...
"""

from __future__ import annotations

import contextlib

import slicer
import vtk

from SpineSegLib.core.errors import SpineSegError


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


def scene_of(node):
    """The scene ``node`` is in; :class:`SpineSegError` when it is in none."""
    scene = node.GetScene() if node is not None else None
    if scene is None:
        raise SpineSegError(f"node {node.GetName() if node else None!r} is not in a MRML scene")
    return scene


# -- subject hierarchy ------------------------------------------------------------------------------------------
def subject_hierarchy_item(node, parent_item: int | None = None) -> int:
    """The subject hierarchy item of ``node``, created (under ``parent_item`` or the scene) when missing -- Slicer's
    GUI creates items for new nodes, slicer-core does not."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene_of(node))
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(parent_item or sh.GetSceneItemID(), node)
    return item


def place_next_to(node, reference_node) -> int:
    """Move ``node`` beside ``reference_node`` in the subject hierarchy (same parent: patient/study/folder)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene_of(node))
    parent = sh.GetItemParent(subject_hierarchy_item(reference_node))
    item = subject_hierarchy_item(node, parent)
    sh.SetItemParent(item, parent)
    return item


def place(node, next_to=None, parent_item: int | None = None) -> None:
    """Give a new node its subject hierarchy item: beside ``next_to``, else under ``parent_item``, else the scene."""
    if next_to is not None:
        place_next_to(node, next_to)
    else:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
        item = subject_hierarchy_item(node, parent_item)
        if parent_item:
            sh.SetItemParent(item, parent_item)


def add_folder(scene, name: str, next_to=None) -> int:
    """A subject hierarchy folder (beside ``next_to`` when given); returns its item id."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(subject_hierarchy_item(next_to)) if next_to is not None else sh.GetSceneItemID()
    return sh.CreateFolderItem(parent, name)


# -- consistency ------------------------------------------------------------------------------------------------
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
    removed when it raises (an error, or :class:`~SpineSegLib.core.progress.Cancelled`), so the scene holds no
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
