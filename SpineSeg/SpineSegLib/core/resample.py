"""Resampling onto another grid or voxel size; grids that differ only by axis order or flips are
mapped exactly (no interpolation).

Console use::

    from SpineSegLib.core.resample import resample_to_grid
    label_on_ct = resample_to_grid(label, ct, label=True)
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from SpineSegLib.core.image import Image
from SpineSegLib.core.orientation import to_canonical


def resample_to_spacing(image: Image, spacing, label: bool = False, default=None) -> Image:
    """Resample onto a grid with the given ``(i, j, k)`` spacing covering the same extent."""
    spacing = np.asarray(spacing, dtype=float)
    size = np.maximum(1, np.round(np.asarray(image.size) * np.asarray(image.spacing) / spacing)).astype(int)
    # keep the centre of the field of view in place
    old_centre = (np.asarray(image.size) - 1) / 2.0
    new_centre = (size - 1) / 2.0
    centre_lps = image.index_to_lps(old_centre)
    origin = centre_lps - image.direction @ (spacing * new_centre)
    ref = Image(np.zeros(tuple(reversed(size)), dtype=np.uint8), spacing, origin, image.direction)
    return resample_to_grid(image, ref, label=label, default=default)


def resample_to_grid(image: Image, reference: Image, label: bool = False, default=None) -> Image:
    """Resample ``image`` onto ``reference``'s grid (nearest neighbour for label maps, else linear).

    Grids that are the same up to permuted or flipped axes are mapped exactly, without interpolation.
    """
    if image.same_grid(reference):
        return reference.with_array(image.array.copy())
    exact = _exact_axis_mapping(image, reference)
    if exact is not None:
        return reference.with_array(exact)
    if default is None:
        default = 0 if label else float(np.min(image.array))
    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    out = sitk.Resample(image.to_sitk(), reference.to_sitk(), sitk.Transform(), interp, float(default),
                        image.to_sitk().GetPixelID())
    return reference.with_array(sitk.GetArrayFromImage(out))


def _exact_axis_mapping(image: Image, reference: Image):
    """The array of ``image`` rearranged onto ``reference`` if the two grids hold the same voxel
    centres (axes permuted and/or flipped), else None."""
    if sorted(image.shape) != sorted(reference.shape):
        return None
    a, b = to_canonical(image), to_canonical(reference)
    if not a.image.same_grid(b.image, tol=1e-3):
        return None
    return b.restore(a.image.array)
