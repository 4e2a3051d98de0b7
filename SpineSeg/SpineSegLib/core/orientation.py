"""Exact, invertible reorientation of an image to the canonical LPS array layout.

Algorithms work on ``canonical.image.array`` indexed ``[z, y, x]`` where x grows towards the
patient's left, y towards posterior and z towards superior (ITK orientation code ``'LPS'``): an
axial slice is ``array[z]``, shown with anterior at the top and posterior at the bottom, as in
the figures of Revy et al. Only axes are permuted and flipped, never resampled, so results map
back onto the input grid voxel for voxel with :meth:`Canonical.restore`.

Console use::

    from SpineSegLib.core.orientation import to_canonical
    can = to_canonical(ct)                 # ct: SpineSegLib.core.image.Image, any orientation
    bone = can.image.array > 150           # [z, y, x] in LPS
    mask = ct.with_array(can.restore(bone))  # back on the input grid, exactly
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from SpineSegLib.core.image import Image


@dataclass
class Canonical:
    """An image reoriented to LPS plus what is needed to undo it."""

    image: Image            # the reoriented image; its geometry is exact (a permuted/flipped copy)
    permutation: tuple      # canonical ijk axis a comes from original ijk axis permutation[a]
    flips: tuple            # canonical axis a is reversed relative to the original
    original_shape: tuple   # numpy shape of the original array

    def restore(self, array: np.ndarray) -> np.ndarray:
        """Map an array on the canonical grid back onto the original grid (exact inverse)."""
        array = np.asarray(array)
        if array.shape != self.image.shape:
            raise ValueError(f"array shape {array.shape} does not match the canonical grid {self.image.shape}")
        for a in range(3):
            if self.flips[a]:
                array = np.flip(array, axis=2 - a)
        # canonical numpy axis n holds original numpy axis 2 - permutation[2 - n]
        source = [2 - self.permutation[2 - n] for n in range(3)]
        return np.ascontiguousarray(np.transpose(array, np.argsort(source)))


def axis_permutation(direction: np.ndarray) -> tuple[tuple, tuple]:
    """For each LPS axis, the image axis (i, j or k) closest to it and whether it points the other way."""
    d = np.abs(np.asarray(direction))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(d[a, p[a]] for a in range(3)))
    flips = tuple(bool(direction[a, best[a]] < 0) for a in range(3))
    return tuple(best), flips


def to_canonical(image: Image) -> Canonical:
    """Reorient ``image`` so that its array is indexed ``[z, y, x]`` with x->L, y->P, z->S."""
    perm, flips = axis_permutation(image.direction)
    source = [2 - perm[2 - n] for n in range(3)]
    array = np.transpose(image.array, source)
    for a in range(3):
        if flips[a]:
            array = np.flip(array, axis=2 - a)
    array = np.ascontiguousarray(array)

    spacing = tuple(image.spacing[perm[a]] for a in range(3))
    direction = np.stack([image.direction[:, perm[a]] * (-1 if flips[a] else 1) for a in range(3)], axis=1)
    first_voxel = np.zeros(3)
    for a in range(3):
        if flips[a]:
            first_voxel[perm[a]] = image.size[perm[a]] - 1
    origin = image.index_to_lps(first_voxel)
    canonical = Image(array, spacing, origin, direction)
    return Canonical(canonical, perm, flips, image.shape)
