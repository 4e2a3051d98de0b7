"""What both SpineSeg Slicer logics share: checking the input node, reading a reference (segmentation or label
map), exporting, table-friendly rows. (Keeping the scene consistent when a run fails: :mod:`SpineSegLib.slicer.scene`.)

Qt-free: MRML (through :mod:`SpineSegLib.slicer.volumes` and :mod:`~SpineSegLib.slicer.segmentations`) and numpy
only -- runs in 3D Slicer and under ``slicer-core``.

Console use::

    from SpineSegLib.slicer.common import check_volume_node, export_labelmap
    image = check_volume_node(getNode("CTChest"))          # an Image, or an InputError naming the problem
    export_labelmap(getNode("Vertebrae"), "vertebrae.nii.gz", getNode("CTChest"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core import notes
from SpineSegLib.core.grids import check
from SpineSegLib.core.grids import note as grid_note
from SpineSegLib.core.image import Image, write_image
from SpineSegLib.slicer.segmentations import segmentation_to_image
from SpineSegLib.slicer.storage import save_node
from SpineSegLib.slicer.volumes import volume_to_image


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
    image = volume_to_image(node)     # raises for empty nodes, vector volumes, non-linear transforms
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
    id image on ``reference_volume``'s grid when it is a segmentation, else on its own grid.

    A segmentation is rasterised by Slicer onto the volume's grid; the grid it was drawn on must be one
    :mod:`SpineSegLib.core.grids` accepts there (else :class:`InputError`, naming the overlap); a note
    (:mod:`SpineSegLib.core.notes`) tells when it differs. (A segmentation under a transform is placed by it.)"""
    if node is None:
        raise InputError("no reference selected: choose a segmentation or a label map")
    if node.IsA("vtkMRMLSegmentationNode"):
        image = segmentation_to_image(node, reference_volume)
        if reference_volume is not None and node.GetParentTransformNode() is None:
            own = segmentation_to_image(node)      # on the segmentation's own geometry
            what, onto = f"reference {node.GetName()!r}", "the volume"
            relation = check(own, image, what=what, onto=onto)
            if relation.kind != "same":
                notes.note(grid_note(relation, own, image, what, onto))
        return image
    if node.IsA("vtkMRMLVolumeNode"):
        image = volume_to_image(node)
        if image.array.dtype.kind == "f" and np.any(image.array != np.round(image.array)):
            raise InputError(f"reference {node.GetName()!r} holds fractional values; a label map holds integer ids")
        return image
    raise InputError(f"reference {node.GetName()!r} is a {node.GetClassName()}; choose a segmentation or a label map")


def export_labelmap(segmentation_node, path, reference_volume=None, force: bool = False) -> Path:
    """Write a segmentation as a label map file with stable VerSe ids on ``reference_volume``'s grid."""
    return write_image(segmentation_to_image(segmentation_node, reference_volume), path, force=force)


def export_node(node, path, force: bool = False) -> Path:
    """Write a segmentation (``.seg.nrrd``), table (``.tsv``/``.csv``), markups or volume node."""
    return save_node(node, path, force=force)


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
