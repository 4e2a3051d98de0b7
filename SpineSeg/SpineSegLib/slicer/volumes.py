"""Images <-> volume nodes, with exact geometry, and the LPS/RAS convention every SpineSeg MRML module follows.

Conventions
-----------
* :class:`~SpineSegLib.core.image.Image` geometry is LPS; MRML is RAS. Volume nodes get exactly the spacing, origin
  and direction of the image with x and y negated; arrays keep the numpy order ``[k, j, i]``.
* Every point given to or returned by SpineSeg's MRML modules (centrelines, curves, boxes) is in LPS millimetres, as
  the rest of SpineSeg uses; markups nodes hold RAS internally (their ``.mrk.json`` files say LPS again).

Console use (Slicer's Python console, or ``slicer-core`` with ``scene = new_scene()``)::

    from SpineSegLib.slicer.volumes import image_to_volume, volume_to_image
    from SpineSegLib.core.image import read_image
    ct = image_to_volume(slicer.mrmlScene, read_image("ct.nii.gz"), "CT")
    labels = image_to_volume(slicer.mrmlScene, read_image("vertebrae.nii.gz"), "ids", labelmap=True)
    volume_to_image(ct)                  # the same Image back, voxel for voxel
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.slicer.colours import vertebra_colour_table

#: diag(-1, -1, 1): maps LPS to RAS and back
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(points) -> np.ndarray:
    """LPS points (N x 3 or 3) to RAS (the same with x and y negated); also RAS to LPS."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


ras_to_lps = lps_to_ras


def vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    """A numpy 4 x 4 (or smaller) matrix as a ``vtkMatrix4x4``."""
    out = vtk.vtkMatrix4x4()
    m = np.asarray(m, dtype=float)
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            out.SetElement(r, c, float(m[r, c]))
    return out


def numpy_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a numpy 4 x 4 array."""
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


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
