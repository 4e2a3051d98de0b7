"""Reading a DICOM series folder: which series to read, and whether its slices make a regular grid.

ITK (GDCM) reads any list of slices as a regular grid: it takes the first slice's position, the spacing
``(last - first) / (n - 1)`` and the slice normal as the third axis, printing at most a warning. A folder that is not
one clean series is then read wrong without a word. Here, before any pixel is decoded, the slice headers are checked:

* **several series** (different SeriesInstanceUID): the largest CT series is read, or the largest series when none
  is CT, and a note says so (:func:`SpineSegLib.core.notes.note`: one line ``spineseg: note: ...`` on the command
  line);
* **mixed orientations** (ImageOrientationPatient differs between slices, e.g. a localizer in the series): refused;
* **duplicate slices** (two files at the same position, closer than :data:`DUPLICATE_MM`): dropped with a note when
  their pixels are identical (a file copied twice), else refused;
* **missing slices** (a gap larger than :data:`GAP_FACTOR` times the usual, i.e. median, spacing): refused;
* **uneven spacing** (a slice farther than :data:`UNEVEN_FRACTION` of the spacing from the regular grid ITK would
  assume): refused;
* **gantry tilt** (the slice positions drift in the slice plane, by more than :data:`TILT_PIXELS` pixel over the
  stack: the slices are not perpendicular to the stack direction, and a regular grid would be sheared): refused.

Each refusal is one :class:`InputError` line naming the problem. Slices without position or orientation tags are
read as ITK orders them (nothing to check). Tolerances are this module's choice, not a DICOM rule.

Console use::

    from SpineSegLib.core.dicom import read_dicom_folder
    img = read_dicom_folder(Path("study/"))      # a SimpleITK image; InputError for a broken series
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.notes import note

MODALITY, DESCRIPTION, POSITION, ORIENTATION, PIXEL_SPACING = (
    "0008|0060", "0008|103e", "0020|0032", "0020|0037", "0028|0030")

#: two slices closer than this (mm, along the slice normal) are at the same position
DUPLICATE_MM = 0.01
#: a gap wider than this many times the usual (median) spacing means missing slices
GAP_FACTOR = 1.5
#: the largest distance of a slice from the regular grid ITK assumes, as a fraction of the spacing
UNEVEN_FRACTION = 0.1
#: the largest in-plane drift of the slice positions over the whole stack, in pixels
TILT_PIXELS = 0.5
#: the largest difference between two slices' direction cosines that counts as the same orientation
ORIENTATION_TOL = 1e-4


@dataclass(frozen=True)
class Series:
    """One series of a folder: its UID, its files in GDCM's slice order, modality and description."""

    uid: str
    files: tuple
    modality: str = ""
    description: str = ""

    def label(self) -> str:
        what = f"'{self.description}'" if self.description else (f"series {self.uid}" if self.uid else "no UID")
        return f"{self.modality or 'unknown modality'}, {len(self.files)} slices, {what}"


def read_dicom_folder(folder: Path) -> sitk.Image:
    """Read the series of ``folder`` that :func:`choose_series` picks, after :func:`checked_slices`."""
    chosen = choose_series(folder, list_series(folder))
    files = checked_slices(folder, chosen.files)
    if len(files) < 2:
        raise InputError(f"{folder}: the DICOM series has a single slice; a 3-D volume is needed")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)   # spacing already checked here; ITK's warning is noise
    try:
        return reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"{folder}: the DICOM series could not be read ({first})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def list_series(folder: Path) -> list[Series]:
    """The DICOM series in ``folder`` (not its subfolders); modality and description only when there are several."""
    reader = sitk.ImageSeriesReader()
    uids = reader.GetGDCMSeriesIDs(str(folder)) or ()
    if not uids:
        raise InputError(f"{folder}: folder holds no DICOM series")
    series = []
    for uid in uids:
        files = tuple(reader.GetGDCMSeriesFileNames(str(folder), uid))
        tags = slice_header(files[0]) if len(uids) > 1 and files else {}
        series.append(Series(uid, files, tags.get(MODALITY, "").strip(), tags.get(DESCRIPTION, "").strip()))
    return series


def choose_series(folder: Path, series: list[Series]) -> Series:
    """The largest CT series (the largest series when none is CT); a note says which when there was a choice."""
    if len(series) == 1:
        return series[0]
    cts = [s for s in series if s.modality.upper() == "CT"]
    chosen = max(cts or series, key=lambda s: len(s.files))      # the first of equals
    listing = "; ".join(s.label() for s in sorted(series, key=lambda s: -len(s.files)))
    if cts:
        note(f"{folder}: holds {len(series)} DICOM series ({listing}); read the largest CT series "
             f"({chosen.label()})")
    else:
        note(f"{folder}: holds {len(series)} DICOM series, none of them CT ({listing}); read the largest "
             f"({chosen.label()})")
    return chosen


def slice_header(file) -> dict:
    """The tags of one DICOM file this module uses (absent when the file lacks them)."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(file))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {tag: reader.GetMetaData(tag) for tag in (MODALITY, DESCRIPTION, POSITION, ORIENTATION, PIXEL_SPACING)
            if reader.HasMetaDataKey(tag)}


# -- the slices of one series ------------------------------------------------------------------------------
def checked_slices(folder: Path, files) -> tuple:
    """``files`` without exact duplicates, after refusing mixed orientations, different slices at one position,
    missing slices, uneven spacing and gantry tilt (see the module docstring)."""
    headers = [slice_header(f) for f in files]
    if len(files) < 2 or any(POSITION not in h or ORIENTATION not in h for h in headers):
        return tuple(files)
    try:
        positions = np.array([_numbers(h[POSITION], 3) for h in headers])
        orientations = np.array([_numbers(h[ORIENTATION], 6) for h in headers])
        pixel = min(_numbers(headers[0].get(PIXEL_SPACING, "1\\1"), 2))
    except ValueError:
        return tuple(files)
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOL:
        kinds = len({tuple(np.round(o, 3)) for o in orientations})
        raise InputError(f"{folder}: the slices of the DICOM series have {kinds} different orientations "
                         f"(ImageOrientationPatient): a localizer or another series is mixed in")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    normal /= np.linalg.norm(normal)
    keep = _without_duplicates(folder, list(files), positions @ normal)
    problem = stack_problem(positions[keep], normal, pixel) if len(keep) > 1 else None
    if problem:
        raise InputError(f"{folder}: {problem}")
    return tuple(files[i] for i in keep)


def _numbers(text: str, count: int) -> list[float]:
    values = [float(v) for v in text.strip().split("\\")]
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(text)
    return values


def _without_duplicates(folder: Path, files: list, along: np.ndarray) -> list[int]:
    """Indices of ``files`` to read: all but one of each set of exact duplicates (identical pixels at the same
    position; the file whose name sorts first is kept, the others are noted); different slices at one position
    are refused."""
    order = np.argsort(along, kind="stable")
    dropped = []
    for a, b in zip(order[:-1], order[1:]):
        if abs(along[b] - along[a]) >= DUPLICATE_MM:
            continue
        first, second = sorted((int(a), int(b)), key=lambda i: Path(files[i]).name)   # keep the first name
        if not _same_pixels(files[first], files[second]):
            raise InputError(f"{folder}: two different slices at the same position ({along[a]:.2f} mm along the "
                             f"stack: {Path(files[first]).name} and {Path(files[second]).name}); the folder mixes "
                             f"two acquisitions or reconstructions")
        dropped.append(second)
    if dropped:
        names = ", ".join(Path(files[i]).name for i in sorted(dropped)[:3]) + (", ..." if len(dropped) > 3 else "")
        note(f"{folder}: dropped {len(dropped)} duplicate slice file(s) with the same position and pixels as "
             f"another slice ({names})")
    dropped_set = set(dropped)
    return [i for i in range(len(files)) if i not in dropped_set]


def _same_pixels(a, b) -> bool:
    try:
        return np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(a))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(b))))
    except RuntimeError:
        return False


def stack_problem(positions: np.ndarray, normal: np.ndarray, pixel_mm: float) -> str | None:
    """What keeps slices at ``positions`` (N x 3, mm, LPS; distinct) with slice ``normal`` from being a regular
    grid: missing slices, uneven spacing or gantry tilt, as a phrase; ``None`` when they are one."""
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    along = positions @ normal
    gaps = np.diff(along)
    usual = float(np.median(gaps))
    wide = gaps > GAP_FACTOR * usual
    if wide.any():
        k = int(np.argmax(gaps))
        return (f"missing slices in the DICOM series: {int(wide.sum())} gap(s) wider than {GAP_FACTOR}x the usual "
                f"spacing of {usual:.3g} mm, the widest {gaps[k]:.3g} mm between {along[k]:.1f} and "
                f"{along[k + 1]:.1f} mm along the stack (about {max(round(gaps[k] / usual) - 1, 1)} slice(s) missing)")
    spacing = (along[-1] - along[0]) / (len(along) - 1)
    off = float(np.abs(along - (along[0] + spacing * np.arange(len(along)))).max())
    if off > UNEVEN_FRACTION * spacing:
        return (f"uneven slice spacing in the DICOM series: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm; read "
                f"as a regular grid of {spacing:.3g} mm a slice would lie {off:.2g} mm off (tolerance "
                f"{UNEVEN_FRACTION:.0%} of the spacing)")
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = float(np.linalg.norm(in_plane, axis=1).max())
    if drift > TILT_PIXELS * pixel_mm:
        angle = math.degrees(math.atan2(float(np.linalg.norm(in_plane[-1])), float(along[-1] - along[0])))
        return (f"gantry tilt in the DICOM series: the slices are not perpendicular to the stack direction (tilted "
                f"{angle:.1f} deg, shifted up to {drift:.3g} mm in the slice plane); read as a regular grid the "
                f"volume would be sheared: resample it to a regular grid first (e.g. 3D Slicer's DICOM import "
                f"with acquisition geometry regularization)")
    return None
