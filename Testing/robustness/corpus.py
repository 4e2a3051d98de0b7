"""The robustness corpus: damaged, re-encoded and re-gridded variants of two real scans (issue 13).

Every variant is derived here, in code, from files that are already at hand -- the bundled LIDC-IDRI-0001
sample at 2.5 mm (``SpineSegLib/resources/samples/LIDC-IDRI-0001-2.5mm``, itself derived from
``../shared/data/ct/lidc-idri-0001``), that scan's full-resolution vertebra labels and MyoSegmenTUM case 01
from ``../shared/data`` -- so nothing derived is committed. The corpus is built with SimpleITK and numpy
only (never with SpineSeg's own reader), so a reader bug cannot hide in the corpus itself.

Three groups of variants (``corpus.json`` lists each with how it was made and what SpineSeg should do):

* ``ct``: the CT and its vertebra labels, changed alike (``<group>/<name>/image.nii.gz`` or a DICOM folder
  ``<group>/<name>/<name>/``, plus ``vertebrae.nii.gz`` on the same grid);
* ``labels``: label maps to compare with / store for the unchanged CT (``labels/<name>/vertebrae.nii.gz``
  beside a link to the unchanged CT, so that the dataset commands pair them by name);
* ``mr``: MyoSegmenTUM case 01 and its body labels (1-5 = L1-L5, top-down).

``geometry`` says how a variant's voxels relate to the original's: ``exact`` (the same voxels, perhaps in
another axis order or encoding), ``crop`` (a sub-block of the same voxels), ``same-array`` (the same array
placed with a rotated direction matrix: answers compare index by index), ``resampled`` (interpolated onto
another grid) or ``broken`` (no answer to compare). ``expect`` is what a correct SpineSeg does, and ``reason``
what its refusal must name (:data:`REASONS`).

Console use::

    python Testing/robustness/corpus.py /tmp/corpus          # builds it (a few seconds), prints the list
    from robustness.corpus import build_corpus
    variants = build_corpus("/tmp/corpus")                   # [Variant], also written to corpus.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))
SAMPLE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm"
MR_CASE = ("mr", "vertebral-bodies-myosegmentum", "01")
CORPUS_VERSION = 3

#: what a correct SpineSeg does with a variant
SAME, REFUSE, SAME_OR_REFUSE, NOTE_OR_REFUSE = "same", "refuse", "same or refuse", "same with a note, or refuse"
TILT_DEG = 15.0          # oblique variants: rotation about the patient's left-right axis (a gantry-tilt-like plane)
TRUNCATED_BYTES = 100_000  # as in issue 13: the first 100 kB of the file


#: what a refusal of a variant must mention (else it sends the user looking in the wrong place)
REASONS = {
    "truncated": r"truncat|corrupt|incomplete|damaged",
    "offset-uint16": r"Hounsfield|unscaled|rescal|offset|uint16",
    "uint8-window": r"Hounsfield|CT|MR|window|intensit",
    "nans": r"NaN|not a number|finite",
    "nan-inf-nrrd": r"NaN|not a number|finite|inf",
    "dicom-two-series": r"series",
    "dicom-missing-slice": r"slice|spacing|missing|gap",
    "no-spine": r"spine|vertebra",
    "tiny": r"small|too few|at least|field of view",
    "empty": r"empty|no label|no vertebra|nothing",
    "unrelated": r"grid|overlap|field of view|same scan",
}


@dataclass
class Variant:
    name: str
    group: str                 # ct | labels | mr
    how: str                   # how it was derived (printed in the table legend)
    geometry: str              # exact | crop | same-array | resampled | broken
    expect: str                # SAME | REFUSE | SAME_OR_REFUSE | NOTE_OR_REFUSE
    image: str                 # path relative to the corpus root (file or DICOM folder)
    labels: str                # label map relative to the corpus root
    content: str = "reference"  # labels group: what the label map holds (reference | empty | other)
    reason: str = ""           # a refusal must name this cause (regular expression), e.g. a truncated file

    def __post_init__(self):
        self.reason = self.reason or REASONS.get(self.name, "")

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"



# -- small SimpleITK helpers ------------------------------------------------------------------------------
def _like(array: np.ndarray, spacing, origin, direction) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(d) for d in np.asarray(direction).ravel()))
    return img


def _geometry(img: sitk.Image):
    return np.array(img.GetSpacing()), np.array(img.GetOrigin()), np.array(img.GetDirection()).reshape(3, 3)


def _write(img: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def permuted(img: sitk.Image) -> sitk.Image:
    """The same voxels with the ITK axes reordered (i', j', k') = (k, i, j) (a sagittal-like stack)."""
    spacing, origin, direction = _geometry(img)
    array = sitk.GetArrayFromImage(img).transpose(1, 2, 0)   # numpy (k, j, i) -> (j, i, k) = (k', j', i')
    return _like(array, spacing[[2, 0, 1]], origin, direction[:, [2, 0, 1]])


def flipped(img: sitk.Image) -> sitk.Image:
    """The same voxels with the i and k axes reversed (origin and direction adjusted)."""
    spacing, _, direction = _geometry(img)
    ni, _, nk = img.GetSize()
    origin = img.TransformIndexToPhysicalPoint((ni - 1, 0, nk - 1))
    return _like(sitk.GetArrayFromImage(img)[::-1, :, ::-1], spacing, origin, direction @ np.diag([-1, 1, -1]))


def _tilt() -> np.ndarray:
    a = math.radians(TILT_DEG)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _centre(img: sitk.Image) -> np.ndarray:
    return np.array(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()]))


def oblique_same_array(img: sitk.Image) -> sitk.Image:
    """The same array with its direction rotated by TILT_DEG about the volume's centre (no resampling)."""
    spacing, origin, direction = _geometry(img)
    c, rot = _centre(img), _tilt()
    return _like(sitk.GetArrayFromImage(img), spacing, c + rot @ (origin - c), rot @ direction)


def oblique_grid(img: sitk.Image) -> sitk.Image:
    """An empty grid rotated by TILT_DEG (same spacing) that covers all of ``img``."""
    spacing, origin, direction = _geometry(img)
    new_dir = _tilt() @ direction
    size = np.array(img.GetSize())
    corners = np.array([img.TransformIndexToPhysicalPoint([int(c) for c in np.array(b) * (size - 1)])
                        for b in np.ndindex(2, 2, 2)])
    local = (corners - origin) @ new_dir          # corner coordinates along the new axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    new_size = np.ceil((hi - lo) / spacing).astype(int) + 1
    grid = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    grid.SetSpacing(tuple(spacing))
    grid.SetOrigin(tuple(origin + new_dir @ lo))
    grid.SetDirection(tuple(new_dir.ravel()))
    return grid


def resample_onto(img: sitk.Image, grid: sitk.Image, label: bool, default: float = 0) -> sitk.Image:
    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.Resample(img, grid, sitk.Transform(), interp, default, img.GetPixelID())


def thick_slices(img: sitk.Image) -> sitk.Image:
    """Pairs of 2.5 mm slices averaged into 5 mm slabs (how a thicker reconstruction of the same scan looks)."""
    spacing, origin, direction = _geometry(img)
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    m = arr.shape[0] // 2
    slabs = arr[: 2 * m].reshape(m, 2, *arr.shape[1:]).mean(axis=1)
    new_origin = origin + direction[:, 2] * spacing[2] / 2
    return _like(np.round(slabs).astype(np.int16), (spacing[0], spacing[1], 2 * spacing[2]), new_origin, direction)


def crop(img: sitk.Image, start, size) -> sitk.Image:
    """A sub-block (ITK index order) of the same voxels."""
    return sitk.RegionOfInterest(img, [int(s) for s in size], [int(s) for s in start])


def truncated_copy(src: Path, dest: Path, nbytes: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes()[:nbytes])


def write_rescaled_uint16(img: sitk.Image, dest: Path) -> None:
    """HU + 1024 stored as uint16 with scl_slope = 1, scl_inter = -1024 in the NIfTI-1 header (reads as HU).

    SimpleITK writes no scaling, so the header's two floats (bytes 112-119) are patched after writing."""
    hu = sitk.GetArrayFromImage(img).astype(np.int32)
    spacing, origin, direction = _geometry(img)
    raw = dest.with_suffix("")          # image.nii
    sitk.WriteImage(_like((hu + 1024).astype(np.uint16), spacing, origin, direction), str(raw), useCompression=False)
    header = bytearray(raw.read_bytes())
    if struct.unpack("<i", header[:4])[0] != 348:
        raise RuntimeError(f"{raw}: not a NIfTI-1 file")
    header[112:120] = struct.pack("<ff", 1.0, -1024.0)
    dest.write_bytes(gzip.compress(bytes(header), compresslevel=6))
    raw.unlink()


def write_dicom_series(img: sitk.Image, folder: Path, series: int, description: str, skip=()) -> None:
    """``img`` (int16 HU) as a CT DICOM series of one file per slice; slices in ``skip`` are left out."""
    folder.mkdir(parents=True, exist_ok=True)
    root = "1.2.826.0.1.3680043.9.7777.13"
    study_uid, series_uid = f"{root}.1", f"{root}.1.{series}"
    d = img.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    tags = {"0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0010|0010": "ROBUSTNESS^CORPUS",
            "0010|0020": "LIDC-IDRI-0001", "0020|000d": study_uid, "0020|000e": series_uid,
            "0020|0010": "1", "0020|0011": str(series), "0008|103e": description, "0020|0037": orientation,
            "0018|0050": f"{img.GetSpacing()[2]:g}", "0028|1052": "0", "0028|1053": "1"}
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetSize()[2]):
        if k in skip:
            continue
        sl = img[:, :, k]
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        sl.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        writer.SetFileName(str(folder / f"s{series:02d}_{k + 1:04d}.dcm"))
        writer.Execute(sl)


def _label_box(labels: np.ndarray, value: int):
    """Centre (ITK index order) of the voxels of ``value``."""
    kji = np.argwhere(labels == value).mean(axis=0)
    return np.round(kji[::-1]).astype(int)


def _tiny(img: sitk.Image, centre_ijk, n: int = 8) -> sitk.Image:
    start = np.clip(np.asarray(centre_ijk) - n // 2, 0, np.array(img.GetSize()) - n)
    return crop(img, start, (n, n, n))


def _no_spine_box(labels: np.ndarray, size_ijk, margin: int = 8):
    """The largest block in front of (or behind) every labelled voxel along j, all of i and k."""
    _, j, _ = np.nonzero(labels)
    ni, nj, nk = size_ijk
    before, after = (0, int(j.min()) - margin), (int(j.max()) + margin + 1, nj)
    j0, j1 = max((before, after), key=lambda r: r[1] - r[0])
    if j1 - j0 < 16:
        raise RuntimeError("no spine-free block of at least 16 voxels along j")
    return (0, j0, 0), (ni, j1 - j0, nk)


# -- the variants ----------------------------------------------------------------------------------------
def _pair(out: Path, v: Variant, image: sitk.Image, labels: sitk.Image) -> Variant:
    _write(image, out / v.image)
    _write(labels, out / v.labels)
    return v


def _ct_variants(out: Path) -> list[Variant]:
    src_img, src_lab = SAMPLE / "image.nii.gz", SAMPLE / "vertebrae.nii.gz"
    ct, lab = sitk.ReadImage(str(src_img)), sitk.ReadImage(str(src_lab))
    hu, lab_arr = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(lab)
    spacing, origin, direction = _geometry(ct)
    img = lambda n: f"ct/{n}/image.nii.gz"          # noqa: E731
    labp = lambda n: f"ct/{n}/vertebrae.nii.gz"     # noqa: E731
    vs = []

    v = Variant("original", "ct", "bundled sample LIDC-IDRI-0001 at 2.5 mm (144x116x133, int16 HU)",
                "exact", SAME, img("original"), labp("original"))
    _link_or_copy(src_img, out / v.image)
    _link_or_copy(src_lab, out / v.labels)
    vs.append(v)
    v = Variant("truncated", "ct", f"the first {TRUNCATED_BYTES // 1000} kB of image.nii.gz (of "
                f"{src_img.stat().st_size // 1000} kB)", "broken", REFUSE, img("truncated"), labp("truncated"))
    truncated_copy(src_img, out / v.image, TRUNCATED_BYTES)
    _link_or_copy(src_lab, out / v.labels)
    vs.append(v)
    v = Variant("offset-uint16", "ct", "HU + 1024 stored as uint16, no rescale in the header", "exact",
                SAME_OR_REFUSE, img("offset-uint16"), labp("offset-uint16"))
    vs.append(_pair(out, v, _like((hu.astype(np.int32) + 1024).astype(np.uint16), spacing, origin, direction), lab))
    v = Variant("rescaled-uint16", "ct", "HU + 1024 as uint16 with scl_slope 1, scl_inter -1024 (reads as HU)",
                "exact", SAME, img("rescaled-uint16"), labp("rescaled-uint16"))
    (out / v.image).parent.mkdir(parents=True, exist_ok=True)
    write_rescaled_uint16(ct, out / v.image)
    _link_or_copy(src_lab, out / v.labels)
    vs.append(v)
    lo, width = 300 - 1500 / 2, 1500.0    # window level 300, width 1500 HU
    u8 = np.clip(np.round((hu.astype(np.float32) - lo) / width * 255), 0, 255).astype(np.uint8)
    v = Variant("uint8-window", "ct", "windowed to uint8 (level 300, width 1500 HU), no HU any more", "exact",
                SAME_OR_REFUSE, img("uint8-window"), labp("uint8-window"))
    vs.append(_pair(out, v, _like(u8, spacing, origin, direction), lab))
    v = Variant("oblique", "ct", f"same array, direction rotated {TILT_DEG:g} deg about left-right (no resampling)",
                "same-array", SAME, img("oblique"), labp("oblique"))
    vs.append(_pair(out, v, oblique_same_array(ct), oblique_same_array(lab)))
    grid = oblique_grid(ct)
    v = Variant("oblique-resampled", "ct", f"resampled (linear; labels nearest) onto a grid rotated {TILT_DEG:g} deg "
                "about left-right", "resampled", SAME, img("oblique-resampled"), labp("oblique-resampled"))
    vs.append(_pair(out, v, resample_onto(ct, grid, False, -1024), resample_onto(lab, grid, True)))
    v = Variant("permuted", "ct", "axes (i,j,k) -> (k,i,j): the same voxels", "exact", SAME, img("permuted"),
                labp("permuted"))
    vs.append(_pair(out, v, permuted(ct), permuted(lab)))
    v = Variant("flipped", "ct", "i and k axes reversed: the same voxels", "exact", SAME, img("flipped"),
                labp("flipped"))
    vs.append(_pair(out, v, flipped(ct), flipped(lab)))
    thick = thick_slices(ct)
    v = Variant("thick-5mm", "ct", "slice pairs averaged into 5 mm slabs (labels nearest)", "resampled", SAME,
                img("thick-5mm"), labp("thick-5mm"))
    vs.append(_pair(out, v, thick, resample_onto(lab, thick, True)))
    vs += _dicom_variants(out, ct, thick, src_lab)
    nan = hu.astype(np.float32)
    mid = hu.shape[0] // 2
    nan[mid - 1: mid + 2] = np.nan
    v = Variant("nans", "ct", "float32 with 3 whole axial slices of NaN (NIfTI: SimpleITK reads them as 0)",
                "exact", REFUSE, img("nans"), labp("nans"))
    vs.append(_pair(out, v, _like(nan, spacing, origin, direction), lab))
    nan[mid + 10] = np.inf
    v = Variant("nan-inf-nrrd", "ct", "as 'nans' plus one slice of +inf, as NRRD (read as NaN and inf)", "exact",
                REFUSE, "ct/nan-inf-nrrd/image.nrrd", labp("nan-inf-nrrd"))
    vs.append(_pair(out, v, _like(nan, spacing, origin, direction), lab))
    start, size = _no_spine_box(lab_arr, ct.GetSize())
    v = Variant("no-spine", "ct", f"crop of {size[1]} rows in front of the spine (sternum and ribs, no vertebra)",
                "crop", SAME_OR_REFUSE, img("no-spine"), labp("no-spine"))
    vs.append(_pair(out, v, crop(ct, start, size), crop(lab, start, size)))
    centre = _label_box(lab_arr, 15)   # T8
    v = Variant("tiny", "ct", "8x8x8 voxels around the centre of T8", "crop", SAME_OR_REFUSE, img("tiny"),
                labp("tiny"))
    vs.append(_pair(out, v, _tiny(ct, centre), _tiny(lab, centre)))
    return vs


def _dicom_variants(out: Path, ct: sitk.Image, thick: sitk.Image, src_lab: Path) -> list[Variant]:
    vs = []
    for name, how, expect in (
            ("dicom", "written as one CT DICOM series (133 files)", SAME),
            ("dicom-two-series", "the 133-slice series plus the 5 mm series (66 files) in one folder",
             NOTE_OR_REFUSE),
            ("dicom-missing-slice", "the 133-slice series without its middle file", NOTE_OR_REFUSE)):
        v = Variant(name, "ct", how, "exact", expect, f"ct/{name}/{name}", f"ct/{name}/vertebrae.nii.gz")
        skip = {ct.GetSize()[2] // 2} if name == "dicom-missing-slice" else ()
        write_dicom_series(ct, out / v.image, 1, "LIDC-IDRI-0001 2.5 mm", skip=skip)
        if name == "dicom-two-series":
            write_dicom_series(thick, out / v.image, 2, "LIDC-IDRI-0001 5 mm")
        _link_or_copy(src_lab, out / v.labels)
        vs.append(v)
    return vs


def _label_variants(out: Path) -> list[Variant]:
    src_img, src_lab = SAMPLE / "image.nii.gz", SAMPLE / "vertebrae.nii.gz"
    lab = sitk.ReadImage(str(src_lab))
    mr_labels = DATA.joinpath(*MR_CASE[:2], f"{MR_CASE[2]}_vb.nii.gz")
    full_res = DATA / "ct" / "lidc-idri-0001" / "vertebrae.nii.gz"
    specs = [
        ("original", "the reference itself (sample vertebrae.nii.gz)", "exact", SAME, "reference"),
        ("permuted", "the reference with axes (i,j,k) -> (k,i,j)", "exact", SAME, "reference"),
        ("flipped", "the reference with i and k reversed", "exact", SAME, "reference"),
        ("resampled", "the same labels at full resolution (512x512x133, 0.7 mm; the sample's source)", "resampled",
         NOTE_OR_REFUSE, "reference"),
        ("empty", "all zeros on the reference grid", "exact", SAME_OR_REFUSE, "empty"),
        ("unrelated", "MyoSegmenTUM 01 MR body labels (other patient, other grid)", "broken", REFUSE, "other"),
        ("truncated", f"the first half of vertebrae.nii.gz ({src_lab.stat().st_size // 2000} kB)", "broken", REFUSE,
         "other"),
    ]
    vs = []
    for name, how, geometry, expect, content in specs:
        v = Variant(name, "labels", how, geometry, expect, f"labels/{name}/image.nii.gz",
                    f"labels/{name}/vertebrae.nii.gz", content)
        _link_or_copy(src_img, out / v.image)
        dest = out / v.labels
        if name == "original":
            _link_or_copy(src_lab, dest)
        elif name == "permuted":
            _write(permuted(lab), dest)
        elif name == "flipped":
            _write(flipped(lab), dest)
        elif name == "resampled":
            _link_or_copy(full_res, dest)
        elif name == "empty":
            empty = sitk.Image(lab.GetSize(), sitk.sitkUInt8)
            empty.CopyInformation(lab)
            _write(empty, dest)
        elif name == "unrelated":
            _link_or_copy(mr_labels, dest)
        else:
            truncated_copy(src_lab, dest, src_lab.stat().st_size // 2)
        vs.append(v)
    return vs


def _mr_variants(out: Path) -> list[Variant]:
    folder = DATA.joinpath(*MR_CASE[:2])
    src_img, src_lab = folder / f"{MR_CASE[2]}_img.nii.gz", folder / f"{MR_CASE[2]}_vb.nii.gz"
    mr, lab = sitk.ReadImage(str(src_img)), sitk.ReadImage(str(src_lab))
    img = lambda n: f"mr/{n}/image.nii.gz"          # noqa: E731
    labp = lambda n: f"mr/{n}/vertebrae.nii.gz"     # noqa: E731
    vs = []
    v = Variant("original", "mr", "MyoSegmenTUM 01 (77x224x224, 1 mm, uint8), bodies L1-L5", "exact", SAME,
                img("original"), labp("original"))
    _link_or_copy(src_img, out / v.image)
    _link_or_copy(src_lab, out / v.labels)
    vs.append(v)
    v = Variant("permuted", "mr", "axes (i,j,k) -> (k,i,j): the same voxels", "exact", SAME, img("permuted"),
                labp("permuted"))
    vs.append(_pair(out, v, permuted(mr), permuted(lab)))
    v = Variant("flipped", "mr", "i and k axes reversed: the same voxels", "exact", SAME, img("flipped"),
                labp("flipped"))
    vs.append(_pair(out, v, flipped(mr), flipped(lab)))
    v = Variant("truncated", "mr", f"the first {TRUNCATED_BYTES // 1000} kB of the image (of "
                f"{src_img.stat().st_size // 1000} kB)", "broken", REFUSE, img("truncated"), labp("truncated"))
    truncated_copy(src_img, out / v.image, TRUNCATED_BYTES)
    _link_or_copy(src_lab, out / v.labels)
    vs.append(v)
    centre = _label_box(sitk.GetArrayFromImage(lab), 3)   # L3
    v = Variant("tiny", "mr", "8x8x8 voxels around the centre of L3", "crop", SAME_OR_REFUSE, img("tiny"),
                labp("tiny"))
    vs.append(_pair(out, v, _tiny(mr, centre), _tiny(lab, centre)))
    return vs


def build_corpus(out, force: bool = False) -> list[Variant]:
    """Write every variant under ``out`` (reused when ``corpus.json`` of this version is there) and
    return them; ``force`` rebuilds from scratch."""
    out = Path(out)
    listing = out / "corpus.json"
    if listing.exists() and not force:
        data = json.loads(listing.read_text(encoding="utf-8"))
        if data.get("version") == CORPUS_VERSION:
            return [Variant(**v) for v in data["variants"]]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    variants = _ct_variants(out) + _label_variants(out) + _mr_variants(out)
    listing.write_text(json.dumps({"version": CORPUS_VERSION, "variants": [asdict(v) for v in variants]}, indent=1))
    return variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Derive the robustness corpus of issue 13 into a folder.")
    parser.add_argument("out", help="folder to write (replaced with --force)")
    parser.add_argument("--force", action="store_true", help="rebuild even if corpus.json is there")
    args = parser.parse_args(argv)
    for v in build_corpus(args.out, force=args.force):
        print(f"{v.key:28s} {v.geometry:10s} {v.expect:28s} {v.how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
