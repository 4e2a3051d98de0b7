"""Resampling onto another grid or voxel size; grids whose voxel centres coincide (axes permuted or
flipped, other extent) are mapped exactly, by copying voxels (no interpolation).

Whether two grids *should* be mapped onto each other at all is decided in :mod:`SpineSegLib.core.grids`.

Console use::

    from SpineSegLib.core.resample import resample_to_grid
    label_on_ct = resample_to_grid(label, ct, label=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from SpineSegLib.core.image import Image

#: how far (in voxels, at the grid's far corner) a voxel centre may lie from the other grid's lattice
#: and still count as the same point: far below what nearest-neighbour resampling would round away
LATTICE_TOLERANCE_VOXELS = 0.05


@dataclass(frozen=True)
class LatticeMap:
    """Reference ITK axis ``a`` runs along image axis ``axes[a]`` (reversed when ``signs[a] < 0``):
    image index ``m[axes[a]] = signs[a] * r[a] + offsets[a]`` for reference index ``r``."""

    axes: tuple
    signs: tuple
    offsets: tuple
    covers: bool        # every reference voxel is a voxel of the image
    same_voxels: bool   # ... and the image has no others (the same voxels, maybe in another axis order)


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

    Grids whose voxel centres coincide (axes permuted or flipped, any extent) are mapped exactly, without
    interpolation; reference voxels outside ``image`` get ``default`` (None: 0 for label maps, else the
    image's minimum). Only ``reference``'s geometry is used (its array may be a zero-stride placeholder).
    """
    if image.same_grid(reference):
        return reference.with_array(image.array.copy())
    lattice = lattice_map(image, reference)
    if default is None and not (lattice is not None and lattice.covers):
        default = 0 if label else float(np.min(image.array))
    if lattice is not None:
        return reference.with_array(_copy_on_lattice(image, reference, lattice, default))
    source = image.to_sitk()
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in reference.size])
    f.SetOutputSpacing(reference.spacing)
    f.SetOutputOrigin(reference.origin)
    f.SetOutputDirection(tuple(reference.direction.ravel()))
    f.SetInterpolator(sitk.sitkNearestNeighbor if label else sitk.sitkLinear)
    f.SetDefaultPixelValue(float(default))
    f.SetOutputPixelType(source.GetPixelID())
    return reference.with_array(sitk.GetArrayFromImage(f.Execute(source)))


def lattice_map(image: Image, reference: Image) -> LatticeMap | None:
    """How ``reference``'s voxel centres sit on ``image``'s lattice when every one of them is a voxel
    centre of that lattice (same spacing and axes up to order and sign, origins a whole number of voxels
    apart), else None."""
    # image index m = A r + c for reference index r
    to_image = np.linalg.inv(image.direction @ np.diag(image.spacing))
    a = to_image @ reference.direction @ np.diag(reference.spacing)
    c = image.lps_to_index(reference.origin)
    r = np.rint(a)
    if not (np.abs(r).sum(axis=0) == 1).all() or not (np.abs(r).sum(axis=1) == 1).all():
        return None          # not a signed permutation: other spacing or rotated axes
    drift = np.abs(a - r) @ (np.asarray(reference.size) - 1) + np.abs(c - np.rint(c))
    if drift.max() > LATTICE_TOLERANCE_VOXELS:
        return None
    axes = tuple(int(np.flatnonzero(r[:, k])[0]) for k in range(3))
    signs = tuple(int(r[axes[k], k]) for k in range(3))
    offsets = tuple(int(np.rint(c[axes[k]])) for k in range(3))
    ends = [(o, o + s * (n - 1)) for s, o, n in zip(signs, offsets, reference.size)]
    covers = all(min(e) >= 0 and max(e) < image.size[ax] for ax, e in zip(axes, ends))
    return LatticeMap(axes, signs, offsets, covers, covers and np.prod(image.size) == np.prod(reference.size))


def _copy_on_lattice(image: Image, reference: Image, lattice: LatticeMap, default) -> np.ndarray:
    """``image``'s voxels placed on ``reference``'s grid by :func:`lattice_map` (no interpolation)."""
    # numpy axis n of the reference is ITK axis 2 - n; bring the image's axes into that order
    array = np.transpose(image.array, [2 - lattice.axes[2 - n] for n in range(3)])
    out_slices, in_slices = [], []
    for n in range(3):
        k = 2 - n
        s, o, size_in, size_out = lattice.signs[k], lattice.offsets[k], image.size[lattice.axes[k]], reference.size[k]
        # reference indices r with 0 <= s * r + o < size_in
        lo, hi = (max(0, -o), min(size_out, size_in - o)) if s > 0 else (max(0, o - size_in + 1), min(size_out, o + 1))
        if hi <= lo:
            return np.full(reference.shape, default, dtype=image.array.dtype)
        first, last = s * lo + o, s * (hi - 1) + o
        out_slices.append(slice(lo, hi))
        in_slices.append(slice(first, last + 1) if s > 0 else slice(first, last - 1 if last > 0 else None, -1))
    if lattice.covers:
        return np.ascontiguousarray(array[tuple(in_slices)])
    out = np.full(reference.shape, default, dtype=image.array.dtype)
    out[tuple(out_slices)] = array[tuple(in_slices)]
    return out
