"""The image type of SpineSeg and its file I/O.

An :class:`Image` is a 3-D numpy array plus the geometry that places it in the patient: spacing,
origin and direction, in the conventions of ITK/SimpleITK and DICOM:

* ``array`` is indexed ``[k, j, i]`` (slice, row, column), as ``sitk.GetArrayFromImage`` and
  Slicer's ``arrayFromVolume`` return it;
* ``spacing`` (mm), ``origin`` (mm) and the columns of ``direction`` are given in ``(i, j, k)`` order;
* physical coordinates are **LPS** (x to the patient's left, y posterior, z superior), so that
  ``point_lps = origin + direction @ (spacing * (i, j, k))``. Slicer shows RAS: negate x and y.

Reading accepts NIfTI, NRRD, MHA/MHD and DICOM series folders; writing accepts ``.nii``, ``.nii.gz``,
``.nrrd`` and ``.mha``. Files are written atomically and an existing file is never replaced unless
``force=True``.

What is read is checked, and refused with one :class:`InputError` line naming the problem:

* a file must hold all the data its header describes (a ``.nii.gz`` cut short is otherwise read with
  zeros in place of the missing voxels): "truncated or corrupt file", see :mod:`SpineSegLib.core.integrity`;
* a DICOM folder must give one regular grid: several series (the largest CT series is read, with a
  note), missing or duplicate slices, uneven spacing and gantry tilt, see :mod:`SpineSegLib.core.dicom`;
* the voxels must be finite (no NaN or infinity in a float image), the spacing positive and the
  axis directions orthonormal (the last two for every :class:`Image`, however it was made).

Notes (a choice made while reading, not an error) are :class:`SpineSegLib.core.notes.InputNote`
warnings; the command line prints each as ``spineseg: note: ...``.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    ct = read_image("LIDC-IDRI-0001/")          # a DICOM folder, or a .nii.gz / .nrrd / .mha file
    print(ct.shape, ct.spacing, ct.orientation)  # (133, 512, 512) (0.703, 0.703, 2.5) 'LAS'
    write_image(ct.with_array(ct.array > 150), "bone.nii.gz")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegLib.core.dicom import read_dicom_folder
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import check_force, replaced_atomically
from SpineSegLib.core.integrity import check_after_read, check_before_read, describe_read_failure, nonfinite_error

WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
#: the largest deviation of ``direction.T @ direction`` from the identity accepted as orthonormal
ORTHONORMAL_TOL = 1e-3


@dataclass
class Image:
    """A 3-D volume with its geometry (see the module docstring for the conventions)."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise InputError(f"an Image must be 3-D, got an array of shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise InputError(f"the voxel spacing must be positive, got {' x '.join(f'{s:g}' for s in self.spacing)} mm")
        if not (np.isfinite(self.direction).all()
                and np.abs(self.direction.T @ self.direction - np.eye(3)).max() <= ORTHONORMAL_TOL):
            raise InputError("the axis directions are not orthonormal (a sheared or scaled grid; direction "
                             f"matrix {' '.join(f'{v:.3g}' for v in self.direction.ravel())})")

    # -- geometry ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape in numpy order ``(k, j, i)``."""
        return tuple(self.array.shape)

    @property
    def size(self) -> tuple[int, int, int]:
        """Grid size in ITK order ``(i, j, k)``."""
        return tuple(reversed(self.array.shape))

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Voxel spacing in numpy axis order ``(k, j, i)`` (on a canonical image: z, y, x)."""
        return tuple(reversed(self.spacing))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def orientation(self) -> str:
        """Three-letter code of the direction each array axis ``i, j, k`` points to (ITK/DICOM style,
        e.g. ``'LPS'`` or ``'LAS'``): the letter is where the axis *points*."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for c in range(3):
            axis = int(np.argmax(np.abs(self.direction[:, c])))
            code += letters[axis][0 if self.direction[axis, c] > 0 else 1]
        return code

    def index_to_lps_matrix(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous ``(i, j, k, 1)`` indices to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def index_to_lps(self, ijk) -> np.ndarray:
        """Continuous ``(i, j, k)`` index (N x 3 or 3) to LPS points in mm."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def lps_to_index(self, lps) -> np.ndarray:
        """LPS points in mm (N x 3 or 3) to continuous ``(i, j, k)`` indices."""
        lps = np.asarray(lps, dtype=float) - np.asarray(self.origin)
        inv = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return lps @ inv.T

    def same_grid(self, other: "Image", tol: float = 1e-4) -> bool:
        """True when both images sample exactly the same voxels (shape, spacing, origin, direction)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol * 10)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def with_array(self, array: np.ndarray) -> "Image":
        """A new image on this image's grid holding ``array`` (same shape required)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape}")
        return Image(array, self.spacing, self.origin, self.direction.copy())

    # -- SimpleITK --------------------------------------------------------------------------
    @classmethod
    def from_sitk(cls, img: sitk.Image) -> "Image":
        if img.GetDimension() != 3:
            raise InputError(f"expected a 3-D image, got a {img.GetDimension()}-D one")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components per voxel"
            )
        return cls(
            sitk.GetArrayFromImage(img),
            img.GetSpacing(),
            img.GetOrigin(),
            np.array(img.GetDirection()).reshape(3, 3),
        )

    def to_sitk(self) -> sitk.Image:
        arr = self.array
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(self.direction.ravel()))
        return img


# -- reading -------------------------------------------------------------------------------
def read_image(path) -> Image:
    """Read a 3-D scalar image from a file or a DICOM series folder.

    Raises :class:`InputError` naming the problem: missing path, a file that is not a medical
    image, a truncated or corrupt file, a DICOM folder that is not one regular series, a 2-D or
    4-D image, NaN or infinite voxels, zero or negative spacing, non-orthonormal axes (see the
    module docstring). A choice made on the way (which DICOM series) is issued as a note.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    img = read_dicom_folder(path) if path.is_dir() else _read_file(path)
    dim = img.GetDimension()
    if dim == 2 or (dim == 3 and 1 in img.GetSize()[:2]):
        raise InputError(f"{path}: is a 2-D image ({'x'.join(map(str, img.GetSize()))}); a 3-D volume is needed")
    if dim != 3:
        raise InputError(f"{path}: is a {dim}-D image; a 3-D volume is needed")
    try:
        image = Image.from_sitk(img)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    _check_finite(path, image.array)
    return image


def _read_file(path: Path) -> sitk.Image:
    """ITK's read of one file, between the checks that it holds the data its header describes."""
    layout = check_before_read(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        describe_read_failure(path)
        text = str(exc)
        if "orthonormal" in text:
            raise InputError(f"{path}: the axis directions in its header are not orthonormal (a sheared grid)") \
                from None
        if "spacing" in text and "Refusing" in text:
            raise InputError(f"{path}: zero voxel spacing in its header; every spacing must be positive") from None
        raise InputError(f"{path}: not a readable image (expected NIfTI, NRRD, MHA or a DICOM folder)") from None
    check_after_read(path, layout, sitk.GetArrayViewFromImage(img))
    return img


def _check_finite(path: Path, array: np.ndarray) -> None:
    """Refuse NaN and infinite voxels. The minimum and maximum are NaN / infinite exactly when some voxel is, so
    a good float image costs two passes and no copy; only a bad one is counted, a slice at a time."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return
    if np.isfinite(array.min()) and np.isfinite(array.max()):
        return
    bad = sum(int(array[k].size - np.count_nonzero(np.isfinite(array[k]))) for k in range(array.shape[0]))
    raise nonfinite_error(path, bad, array.size)


# -- writing -------------------------------------------------------------------------------
def output_suffix(path) -> str:
    name = str(path).lower()
    for suffix in WRITABLE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise InputError(f"{path}: unsupported output format (use one of {', '.join(WRITABLE_SUFFIXES)})")


def check_writable(path, force: bool = False) -> Path:
    """Raise unless ``path`` may be written: known suffix, and no existing file unless ``force``."""
    path = Path(path)
    output_suffix(path)
    return check_force(path, force)


def write_image(image: Image, path, force: bool = False, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format from the suffix), atomically.

    Boolean arrays are written as uint8. An existing file is kept unless ``force`` is true,
    and a failed write never leaves a half-written file in its place.
    """
    path = check_writable(path, force)
    with replaced_atomically(path, output_suffix(path)) as tmp:
        sitk.WriteImage(image.to_sitk(), tmp, useCompression=compress)
    return path
