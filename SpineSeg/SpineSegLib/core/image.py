"""The image type of SpineSeg and its file I/O.

An :class:`Image` is a 3-D numpy array plus the geometry that places it in the patient: spacing,
origin and direction, in the conventions of ITK/SimpleITK and DICOM:

* ``array`` is indexed ``[k, j, i]`` (slice, row, column), as ``sitk.GetArrayFromImage`` and
  Slicer's ``arrayFromVolume`` return it;
* ``spacing`` (mm), ``origin`` (mm) and the columns of ``direction`` are given in ``(i, j, k)`` order;
* physical coordinates are **LPS** (x to the patient's left, y posterior, z superior), so that
  ``point_lps = origin + direction @ (spacing * (i, j, k))``. Slicer shows RAS: negate x and y.

Reading accepts NIfTI, NRRD, MHA/MHD and DICOM series folders (the folder's largest series is
read); writing accepts ``.nii``, ``.nii.gz``, ``.nrrd`` and ``.mha``. Files are written
atomically and an existing file is never replaced unless ``force=True``.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    ct = read_image("LIDC-IDRI-0001/")          # a DICOM folder, or a .nii.gz / .nrrd / .mha file
    print(ct.shape, ct.spacing, ct.orientation)  # (133, 512, 512) (0.703, 0.703, 2.5) 'LAS'
    write_image(ct.with_array(ct.array > 150), "bone.nii.gz")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import check_force, replaced_atomically

WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


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
    image, a 2-D or 4-D image, a folder without DICOM images.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        img = _read_dicom_folder(path)
    else:
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError:
            raise InputError(f"{path}: not a readable image (expected NIfTI, NRRD, MHA or a DICOM folder)") from None
    dim = img.GetDimension()
    if dim == 2 or (dim == 3 and 1 in img.GetSize()[:2]):
        raise InputError(f"{path}: is a 2-D image ({'x'.join(map(str, img.GetSize()))}); a 3-D volume is needed")
    if dim != 3:
        raise InputError(f"{path}: is a {dim}-D image; a 3-D volume is needed")
    try:
        return Image.from_sitk(img)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _read_dicom_folder(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder)) or ()
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series")
    files = max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    if len(files) < 2:
        raise InputError(f"{folder}: the DICOM series has a single slice; a 3-D volume is needed")
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"{folder}: the DICOM series could not be read ({first})") from None


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
