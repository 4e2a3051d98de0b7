"""Saving and loading SpineSeg's nodes as files, and whole scenes as Slicer scene bundles (``.mrb``).

:func:`save_node` (``.seg.nrrd``, ``.nii.gz``/``.nrrd``, ``.mrk.json``, ``.tsv``), :func:`save_results` (a folder:
every node plus each segmentation as a label map with stable VerSe ids, and the scene as ``.mrb``),
:func:`write_scene_bundle`; :func:`load_segmentation`, :func:`load_markups`, :func:`load_table`,
:func:`read_scene_bundle`. Nothing existing is overwritten unless ``force=True`` (:func:`~SpineSegLib.core.files.
check_force`), and every file is written through :func:`~SpineSegLib.core.files.replaced_atomically`, so a failed
write leaves no half-written file. Runs in 3D Slicer and under ``slicer-core`` (storage nodes, no ``slicer.util``
file functions, which need the application).

Console use::

    from SpineSegLib.slicer import storage
    storage.save_node(seg, "out/vertebrae.seg.nrrd")
    storage.save_results("out/case1", [seg, curve, table], reference_volume=ct_node, scene=scene, bundle="case1.mrb")
    seg = storage.load_segmentation(scene, "out/vertebrae.seg.nrrd")
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import slicer

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.files import check_force, replaced_atomically
from SpineSegLib.core.image import write_image
from SpineSegLib.slicer.scene import subject_hierarchy_item
from SpineSegLib.slicer.segmentations import segmentation_to_image
from SpineSegLib.slicer.volumes import volume_to_image


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
    for path in paths:
        for target in [path, *_companions(path)]:
            check_force(target, force)


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
    suffix = next(s for s in suffixes if path.name.lower().endswith(s))
    storage = node.CreateDefaultStorageNode()
    with replaced_atomically(path, suffix) as tmp:
        companions = _companions(Path(tmp))      # written by the storage node beside tmp (a table's schema)
        try:
            storage.SetFileName(tmp)
            if node.IsA("vtkMRMLSegmentationNode"):
                storage.SetUseCompression(True)
            if not storage.WriteData(node):
                raise SpineSegError(f"Slicer could not write {node.GetName()!r} to {path}: "
                                    f"{storage.GetUserMessages().GetAllMessagesAsString()}")
            for written, target in zip(companions, _companions(path)):
                if written.exists():
                    with replaced_atomically(target) as tmp_target:
                        os.replace(written, tmp_target)   # handed over under replaced_atomically's own name
        finally:
            for leftover in companions:
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
    written = tmp_dir / path.name
    messages = slicer.vtkMRMLMessageCollection()
    url, root = scene.GetURL(), scene.GetRootDirectory()
    try:
        ok = scene.WriteToMRB(str(written), None, messages)
        if not ok or not written.exists():
            raise SpineSegError(f"Slicer could not write the scene bundle {path}: {messages.GetAllMessagesAsString()}")
        with replaced_atomically(path, ".mrb") as tmp:
            os.replace(written, tmp)
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


def _read_node(scene, path, storage_class: str, node_class: str, name: str, what: str):
    """A new ``node_class`` node read from ``path`` by a new ``storage_class`` node; both removed on failure,
    where the error names ``what`` the file should have been (with Slicer's own message, if any)."""
    storage = scene.AddNewNodeByClass(storage_class)
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        message = storage.GetUserMessages().GetAllMessagesAsString().strip()
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"{path}: not a readable {what}" + (f" ({message})" if message else ""))
    return node


def load_segmentation(scene, path, name: str | None = None):
    """Read a segmentation file (``.seg.nrrd``; also ``.nrrd``/``.nii.gz`` label maps Slicer can read as a
    segmentation) into a new segmentation node, with its segment names, colours, terminology and tags."""
    path = _existing(path)
    node = _read_node(scene, path, "vtkMRMLSegmentationStorageNode", "vtkMRMLSegmentationNode",
                      name or _base_name(path, (".seg.nrrd", ".nrrd")), "segmentation")
    node.CreateDefaultDisplayNodes()
    subject_hierarchy_item(node)
    return node


def load_markups(scene, path, name: str | None = None):
    """Read a ``.mrk.json`` file (curve, point list, ROI, ...) into a new markups node; the first markup of the
    file."""
    path = _existing(path)
    try:
        kind = json.loads(path.read_text(encoding="utf-8"))["markups"][0]["type"]
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
    node = _read_node(scene, path, "vtkMRMLTableStorageNode", "vtkMRMLTableNode",
                      name or _base_name(path, (".tsv", ".csv")), "table")
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
