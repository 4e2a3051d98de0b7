"""Ribs and pelvis beside each vertebra: the anatomical evidence that names the vertebrae.

T1-T12 carry ribs; the lowest rib-bearing vertebra is T12 (its rib articulates with T12 alone, so the
assignment is exact there, unlike the upper ribs whose heads sit on the disc between two vertebrae). The
sacrum meets the iliac bones at the sacro-iliac joints. Both show as bone beside the spine mask that
reaches far laterally:

1. a box around the spine (``LATERAL_MM`` either side of the body axis, from ``FRONT_MM`` in front of it
   to ``BACK_MM`` behind it) keeps the sternum and the front of the rib cage out, so that ribs stay apart;
2. bone (>= ``bone_hu``) in the box, minus the spine mask grown by ``GAP_MM``, split into 26-connected
   components;
3. a component that comes within ``CONTACT_MM`` of the spine mask and reaches ``REACH_MM`` or more from
   the body axis (lumbar transverse processes end at about 45 mm) is a **rib** of the vertebra that holds
   most of its contact voxels, on the side where they lie; one that is also tall (``TALL_MM``) and large
   (``MERGED_ML``) is either ribs joined through posterior bone the mask left out (it touches vertebrae all
   along the thorax) or, when it touches only the lowest ``PELVIS_SEGMENTS`` vertebrae, an **ilium**.

All in the canonical frame (``classical.spine_axis``). The box and the contact band keep this to a few
hundred milliseconds on a chest CT (a whole-volume search took 18 s in an earlier probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from SpineSegLib.classical.morphology import block_any
from SpineSegLib.classical.discs import DiscLevels
from SpineSegLib.classical.separation import POSTERIOR_SLOPE, segment_of
from SpineSegLib.classical.spine_axis import SpineAxis

LATERAL_MM, FRONT_MM, BACK_MM = 110.0, 40.0, 90.0
GAP_MM, CONTACT_MM = 1.5, 5.0
COARSE_MM = 2.0
REACH_MM = 60.0
TALL_MM, MERGED_ML = 45.0, 25.0
PELVIS_SEGMENTS = 3


@dataclass
class LateralBone:
    """Per vertebra segment (1 = lowest): ribs on each side and contact with the pelvis."""

    rib_left: dict = field(default_factory=dict)      # {segment: reach mm}
    rib_right: dict = field(default_factory=dict)
    pelvis: dict = field(default_factory=dict)        # {segment: volume (ml) of a tall, large bone touching
                                                      #  only the lowest PELVIS_SEGMENTS segments: an ilium}

    def beside_pelvis(self, segment: int) -> bool:
        return segment in self.pelvis

    def has_rib(self, segment: int) -> tuple[bool, bool]:
        return segment in self.rib_left, segment in self.rib_right


def _box(shape, spacing, axis: SpineAxis) -> tuple[slice, slice, slice]:
    p = axis.points / np.asarray(spacing)
    z0, z1 = int(max(p[:, 0].min() - 2, 0)), int(min(p[:, 0].max() + 3, shape[0]))
    y0 = int(max((axis.points[:, 1].min() - FRONT_MM) / spacing[1], 0))
    y1 = int(min((axis.points[:, 1].max() + BACK_MM) / spacing[1] + 1, shape[1]))
    x0 = int(max((axis.points[:, 2].min() - LATERAL_MM) / spacing[2], 0))
    x1 = int(min((axis.points[:, 2].max() + LATERAL_MM) / spacing[2] + 1, shape[2]))
    return slice(z0, z1), slice(y0, y1), slice(x0, x1)


def lateral_bone(hu: np.ndarray, spine_mask: np.ndarray, spacing_zyx, axis: SpineAxis, discs: DiscLevels,
                 bone_hu: float = 150.0, posterior_slope: float = POSTERIOR_SLOPE) -> LateralBone:
    """Ribs and pelvis beside the vertebra segments (numbered as ``separation.segment_of`` numbers them) of
    the canonical spine mask. Works on a grid of about 2 mm in-plane."""
    spacing = np.asarray(spacing_zyx, float)
    box = _box(hu.shape, spacing, axis)
    f = max(1, int(round(COARSE_MM / spacing[1])))
    coarse = spacing * [1, f, f]
    bone = block_any(hu[box] >= bone_hu, f, f)
    spine = block_any(spine_mask[box], f, f)
    distance = ndimage.distance_transform_edt(~spine, sampling=coarse)
    comps, n = ndimage.label(bone & (distance > GAP_MM), np.ones((3, 3, 3), bool))
    found = LateralBone()
    # mm of a coarse voxel's centre: box start + block centre
    offset = np.array([box[0].start, box[1].start + (f - 1) / 2.0, box[2].start + (f - 1) / 2.0]) * spacing
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    for c, obj in enumerate(ndimage.find_objects(comps), start=1):
        local = comps[obj] == c
        touching = local & (distance[obj] <= CONTACT_MM)
        if not touching.any():
            continue
        corner = np.array([s.start for s in obj])
        points = (np.argwhere(local) + corner) * coarse + offset
        near = axis.nearest(points)
        side = np.einsum("ij,ij->i", points - axis.points[near], axis.lateral[near])
        reach = float(np.abs(side).max())
        if reach < REACH_MM:
            continue
        contact = (np.argwhere(touching) + corner) * coarse + offset
        owners = segment_of(contact, axis, discs, posterior_slope)
        height, volume = (obj[0].stop - obj[0].start) * spacing[0], sizes[c] * np.prod(coarse) / 1000.0
        if height >= TALL_MM and volume >= MERGED_ML:
            if owners.max() <= PELVIS_SEGMENTS:     # beside the lowest vertebrae only: an ilium
                for seg in np.unique(owners):
                    found.pelvis[int(seg)] = max(found.pelvis.get(int(seg), 0.0), float(volume))
            continue    # ribs joined through posterior bone the mask left out, or an ilium: no single owner
        owner = int(np.bincount(owners).argmax())
        table = found.rib_left if side[np.abs(side).argmax()] > 0 else found.rib_right
        table[owner] = max(table.get(owner, 0.0), reach)
    return found

