"""Whether a label map fits its image: the same grid (or one it may be put on), label ids.

Every label version of a dataset lies exactly on its image's grid. A label map saved on another grid is
put there by :func:`SpineSegLib.core.grids.conform`, the rule every command shares: the same voxels with
permuted or flipped axes, or the same voxel lattice with another extent, are mapped exactly; another grid
whose field of view overlaps the image's substantially is resampled (nearest neighbour), with a warning
naming the spacings and the overlap; anything else is refused, naming the overlap. Values must be
non-negative integers (at most 65535); ids outside the VerSe table are kept with a warning.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.annotation.conformance import conform_label, image_grid
    label, warnings = conform_label(read_image("edited.nii.gz"), image_grid("images/07.nii.gz"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.grids import conform, relate
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.core.resample import resample_to_grid
from SpineSegLib.evaluation.label_maps import label_ids

#: ids a label map may hold without a warning (vertebrae, discs/endplates of vertebrae, spinal canal)
KNOWN_IDS = set(VERTEBRAE) | {100 + v for v in VERTEBRAE} | {200 + v for v in VERTEBRAE} | {61}


def exactly_on_grid(label: Image, reference: Image) -> Image | None:
    """``label`` on ``reference``'s grid when the two hold the same voxels (axes permuted or
    flipped allowed), else None. Never interpolates."""
    kind = relate(label, reference).kind
    if kind == "same":
        return reference.with_array(label.array)
    return resample_to_grid(label, reference, label=True) if kind == "axes" else None  # exact: flips, permutations


def _on_reference_grid(label, reference: Image, what: str, warnings: list) -> Image:
    if isinstance(label, np.ndarray):
        if label.shape != reference.shape:
            raise InputError(f"{what} has shape {label.shape[::-1]} (x, y, z) but the image has "
                             f"{reference.shape[::-1]}; it must lie on the image's grid")
        return reference.with_array(label)
    if not isinstance(label, Image):
        raise InputError(f"{what} must be an Image or a numpy array, not {type(label).__name__}")
    mapped, note = conform(label, reference, label=True, what=what, onto="the image")
    if note:
        warnings.append(note)
    return mapped


def _integer_ids(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{what} holds NaN or infinite values")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise InputError(f"{what} holds non-integer values (a probability map or an interpolated label map?)")
        arr = rounded
    if arr.size and arr.min() < 0:
        raise InputError(f"{what} holds negative values ({int(arr.min())}); label ids are 0 (background) or positive")
    top = int(arr.max()) if arr.size else 0
    if top > 65535:
        raise InputError(f"{what} holds ids up to {top}; at most 65535 are supported")
    return arr.astype(np.uint8 if top < 256 else np.uint16, copy=False)


def conform_label(label, reference: Image, what: str = "the label map") -> tuple[Image, list]:
    """Check ``label`` (an Image, or an array on ``reference``'s grid) against the image grid and
    return it there as uint8/uint16 plus a list of warnings (how it was put on the grid, unknown ids).
    Raises :class:`InputError` when the grids differ and barely overlap (:mod:`SpineSegLib.core.grids`),
    or the values are not label ids."""
    warnings: list = []
    label = _on_reference_grid(label, reference, what, warnings)
    arr = _integer_ids(np.asarray(label.array), what)
    unknown = [v for v in label_ids(arr) if v not in KNOWN_IDS]
    if unknown:
        warnings.append(f"{what} holds ids outside the VerSe label table: {', '.join(map(str, unknown[:10]))}")
    return reference.with_array(arr), warnings


def image_grid(path) -> Image:
    """The geometry of an image file without reading its voxels (an Image with a zero-stride array)."""
    path = Path(path)
    if path.is_dir():
        return read_image(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{path}: not a readable image") from None
    size = reader.GetSize()
    if len(size) != 3:
        raise InputError(f"{path}: is a {len(size)}-D image; a 3-D volume is needed")
    arr = np.broadcast_to(np.uint8(0), tuple(reversed(size)))
    return Image(arr, reader.GetSpacing(), reader.GetOrigin(), np.array(reader.GetDirection()).reshape(3, 3))
