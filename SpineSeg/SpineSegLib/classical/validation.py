"""Checks that a volume is a CT the classical pipeline can work on; each failure is one clear line.

Console use::

    from SpineSegLib.classical.validation import check_ct
    check_ct(ct, params)          # raises InputError naming the problem
"""

from __future__ import annotations

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.modality import ct_encoding_problem

AIR_HU = -500.0          # air and lung lie below this in a CT in Hounsfield units
MIN_AIR_FRACTION = 0.01  # a CT of the trunk has at least this much air around or inside the body ...
TISSUE_HU = (-200.0, 120.0)  # ... and a crop inside the body (no air) mostly fat and soft tissue
MIN_TISSUE_FRACTION = 0.25


def check_ct(image, params, spacing_zyx=None) -> None:
    """Raise :class:`InputError` unless ``image`` (canonical or not) looks like a usable CT volume."""
    array = image.array
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"the volume holds {array.dtype} values; a CT in Hounsfield units is needed")
    if array.size == 0:
        raise InputError("the volume is empty")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            bad = array.size - int(np.count_nonzero(finite))
            raise InputError(f"the volume contains {bad} NaN or infinite voxels")
    lo, hi = float(array.min()), float(array.max())
    if lo == hi:
        raise InputError(f"the volume is constant ({lo:g} everywhere)")
    if lo >= 0:
        problem = ct_encoding_problem(array)     # HU + 1024 without its rescale, or windowed to 0-255
        if problem:
            raise InputError(problem)
        raise InputError(f"the intensities range over {lo:g}..{hi:g} with nothing negative: this does not look like a CT in "
                         "Hounsfield units (an MR or an unscaled image?)")
    # extent along the axis that points superior-inferior
    direction = np.abs(np.asarray(image.direction))
    axis_z = int(np.argmax(direction[2]))          # image axis (i, j, k) closest to z
    slices = image.size[axis_z]
    extent_z = slices * image.spacing[axis_z]
    if slices < params.min_slices:
        raise InputError(f"the volume has only {slices} axial slices; the classical pipeline needs at least {params.min_slices}")
    if extent_z < params.min_extent_z_mm:
        raise InputError(f"the volume covers only {extent_z:.1f} mm from head to foot; at least {params.min_extent_z_mm:g} mm are needed")
    fov = [image.size[a] * image.spacing[a] for a in range(3) if a != axis_z]
    if min(fov) < params.min_fov_mm:
        raise InputError(f"the axial field of view is only {fov[0]:.0f} x {fov[1]:.0f} mm; the classical pipeline needs at "
                         f"least {params.min_fov_mm:g} mm each way (a cross-section of the trunk)")
    sample = array[::2, ::2, ::2]          # every 8th voxel is plenty for a fraction
    air = float(np.count_nonzero(sample <= AIR_HU)) / sample.size
    if air < MIN_AIR_FRACTION:
        # a crop inside the body around the spine is a legitimate partial field of view (the whole
        # volume is then the body); it still has to look like tissue in Hounsfield units
        tissue = float(np.count_nonzero((sample >= TISSUE_HU[0]) & (sample <= TISSUE_HU[1]))) / sample.size
        if tissue < MIN_TISSUE_FRACTION:
            raise InputError(f"no air (<= {AIR_HU:g} HU) and only {100 * tissue:.0f}% fat or soft tissue "
                             f"({TISSUE_HU[0]:g}..{TISSUE_HU[1]:g} HU) in the volume (range {lo:g}..{hi:g}): "
                             "not a CT in Hounsfield units")
    if hi < params.bone_threshold_hu:
        raise InputError(f"no voxel reaches the bone threshold of {params.bone_threshold_hu:g} HU (maximum {hi:g}): no bone in this CT")
