"""An annotation dataset on disk: cases, label versions, manifests, split, locking, recovery.

See :mod:`SpineSegLib.annotation` for the folder layout and the workflow. This module holds
:func:`create_dataset` (``spineseg dataset init``), :func:`open_dataset` and
:class:`AnnotationDataset`, whose methods are what the CLI and the Slicer panel call.

How a label version is saved (``save_correction``, ``save_prediction``, ``relabel``)
------------------------------------------------------------------------------------
1. The label map is checked against the case's image grid (the same grid; or the same voxels
   with permuted / flipped axes, which are mapped exactly; anything else is refused) and written
   to a temporary file next to the versions (the slow part; no lock held).
2. Under the case's lock file (``cases/<case>.lock``, see :mod:`.locking`) the manifest is re-read,
   the next free version number ``n`` is taken (above every number in the manifest AND every
   ``vNNN.*`` file on disk, so nothing is ever reused), and
   a. the version's metadata is written to ``labels/<case>/vNNN.json`` (atomically),
   b. the label file is moved to ``labels/<case>/vNNN.nii.gz`` with a hard link, which fails
      rather than replace an existing file (a plain rename where links are unsupported),
   c. the manifest, with the new version appended, ``current = n`` and its ``revision`` counter
      increased, replaces ``cases/<case>.json`` atomically.
   Ctrl-C during (2) is held back until the manifest is written.

A crash (or kill) before (2b) leaves the previous state; between (2b) and (2c) it leaves a
complete version file with its metadata but no manifest entry: :meth:`AnnotationDataset.check`
reports it and ``check(repair=True)`` (``spineseg dataset check DIR --repair``) adds it back, as
the current version when it is newer than the manifest's current one. Two saves of the same case
serialise on the lock: both become versions, the later one is current, and the later one records
in its ``warnings`` that it replaced a version the annotator had not seen (``based_on``).

Console use::

    from SpineSegLib.annotation import open_dataset
    ds = open_dataset("my-dataset")
    name = ds.next_case(status="predicted")
    image, labels, entry = ds.load_case(name)
    labels.array[labels.array == 21] = 22             # ... the annotator's edits ...
    ds.save_correction(name, labels, user="anna")     # -> 3 (labels/<name>/v003.nii.gz)
    ds.mark_reviewed(name, user="ben")
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, OutputExistsError
from ..files import fsync_path, sha256_of
from ..image import Image, read_image, resample_to_grid, set_default_permissions
from ..labels import VERTEBRAE
from ..progress import Progress
from .locking import FileLock
from .manifest import (
    CASE_FORMAT, CASE_NAME_RE, DATASET_FORMAT, FORMAT_VERSION, LABEL_CONVENTION, LABEL_CONVENTION_TEXT, SPLITS,
    STATUSES, VERSION_FILE_RE, VERSION_FORMAT, CaseEntry, current_user, fsync_dir, now_iso, read_json,
    validate_case_manifest, validate_dataset_info, version_stem, write_json_atomic,
)

DATASET_FILE = "dataset.json"
IMAGES_DIR, LABELS_DIR, CASES_DIR, RUNS_DIR, CACHE_DIR = "images", "labels", "cases", "runs", ".cache"
COPYABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_TAGS = ("_img", "_image", "_ct", "_mr", "_t1", "_t2", "_0000")
LABEL_TAGS = ("_seg-vert_msk", "_label", "_labels", "_seg", "_mask", "_msk", "_vb", "_ivd", "_vert", "_vertebrae",
              "_gt")
#: statuses whose labels a person has checked (training data, exports)
ANNOTATED = ("corrected", "reviewed")
#: a temporary file older than this is left over from a crash (check --repair removes it)
STALE_TMP_S = 3600.0
#: ids a label map may hold without a warning (vertebrae, discs/endplates of vertebrae, spinal canal)
KNOWN_IDS = set(VERTEBRAE) | {100 + v for v in VERTEBRAE} | {200 + v for v in VERTEBRAE} | {61}

#: test hook: called with "sidecar-written", "label-written", "manifest-written" inside a commit
FAULT_HOOK: Optional[Callable[[str], None]] = None


def _fault(point: str) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(point)


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold Ctrl-C back for the duration of a commit (main thread only), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: received.append(True))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _strip_image_suffix(name: str) -> tuple[str, str] | None:
    low = name.lower()
    for suffix in READABLE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)], name[len(name) - len(suffix):]
    return None


def _sidecar(name: str, entry: dict) -> dict:
    """The content of ``labels/<case>/vNNN.json``: the version's manifest entry, self-describing."""
    return {"format": VERSION_FORMAT, "format_version": FORMAT_VERSION, "case": name, **entry}


# -- problems ------------------------------------------------------------------------------------
@dataclass
class Problem:
    """Something :meth:`AnnotationDataset.check` found; ``repairable``: ``check(repair=True)`` fixes it."""

    case: str | None
    kind: str        # broken-manifest, missing-manifest, missing-image, missing-version, orphan-version,
                     # orphan-metadata, unlisted-case, stale-temp, stale-lock, checksum
    message: str
    repairable: bool = False

    def __str__(self) -> str:
        return self.message + (" [check --repair fixes this]" if self.repairable else "")


class LoadedCase(NamedTuple):
    """What :meth:`AnnotationDataset.load_case` returns (unpacks as ``image, labels, entry``)."""

    image: Image
    labels: Optional[Image]   # the current (or requested) label version; None for a new case
    entry: CaseEntry


# -- label maps ----------------------------------------------------------------------------------
def label_ids(array: np.ndarray) -> list[int]:
    """The non-zero values of an integer label array, sorted (bincount: ~50x faster than np.unique)."""
    arr = np.asarray(array)
    if arr.size == 0:
        return []
    if arr.dtype.kind in "ub" or (arr.dtype.kind == "i" and arr.min() >= 0):
        counts = np.bincount(arr.ravel().astype(np.intp, copy=False))
        return [int(v) for v in np.flatnonzero(counts) if v]
    return [int(v) for v in np.unique(arr) if v]


def describe_grid(image: Image) -> str:
    size = "x".join(str(s) for s in image.size)
    spacing = "x".join(f"{s:g}" for s in image.spacing)
    origin = ", ".join(f"{o:.2f}" for o in image.origin)
    return f"{size} voxels of {spacing} mm, origin ({origin}), axes {image.orientation}"


def _exactly_on_grid(label: Image, reference: Image) -> Image | None:
    """``label`` on ``reference``'s grid when the two hold the same voxels (axes permuted or
    flipped allowed), else None. Never interpolates."""
    if label.same_grid(reference):
        return reference.with_array(label.array)
    if sorted(label.shape) != sorted(reference.shape):
        return None
    from ..orientation import to_canonical

    a = to_canonical(label).image
    b_shape_ref = to_canonical(reference.with_array(np.broadcast_to(np.uint8(0), reference.shape))).image
    if not a.same_grid(b_shape_ref, tol=1e-3):
        return None
    mapped = resample_to_grid(label, reference, label=True)  # exact: only flips / permutations
    return mapped


def conform_label(label, reference: Image, what: str = "the label map") -> tuple[Image, list]:
    """Check ``label`` (an Image, or an array on ``reference``'s grid) against the image grid and
    return it there as uint8/uint16 plus a list of warnings. Raises :class:`InputError` when the
    grid differs in a way that would need interpolation, or the values are not label ids."""
    warnings = []
    if isinstance(label, np.ndarray):
        if label.shape != reference.shape:
            raise InputError(f"{what} has shape {label.shape[::-1]} (x, y, z) but the image has "
                             f"{reference.shape[::-1]}; it must lie on the image's grid")
        label = reference.with_array(label)
    elif not isinstance(label, Image):
        raise InputError(f"{what} must be an Image or a numpy array, not {type(label).__name__}")
    else:
        mapped = _exactly_on_grid(label, reference)
        if mapped is None:
            raise InputError(f"{what} lies on another grid than the image ({describe_grid(label)} vs "
                             f"{describe_grid(reference)}); it would need interpolation, which could move "
                             "vertebra borders. Save it on the image's grid (in Slicer: export the segmentation "
                             "with the image as reference volume)")
        if not label.same_grid(reference):
            warnings.append(f"{what} had the image's voxels in another axis order ({label.orientation} vs "
                            f"{reference.orientation}); mapped exactly")
        label = mapped
    arr = np.asarray(label.array)
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
    arr = arr.astype(np.uint8 if top < 256 else np.uint16, copy=False)
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


def _write_label_tmp(label: Image, folder: Path) -> Path:
    """Write ``label`` to a new temporary ``.nii.gz`` in ``folder`` (flushed to disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex}.nii.gz"
    sitk.WriteImage(label.to_sitk(), str(tmp), True)
    set_default_permissions(tmp)
    fsync_path(tmp)
    return tmp


def _place_no_clobber(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; never replaces an existing ``final``."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:   # file system without hard links
        if final.exists():
            raise FileExistsError(str(final)) from None
        os.replace(tmp, final)
        return
    os.remove(tmp)


# -- case names and inputs -------------------------------------------------------------------------
#: file names that name no case (one folder per case): the folder's name is the case name
GENERIC_STEMS = {"image", "img", "ct", "mr", "t1", "t2", "scan", "volume", "vertebrae", "label", "labels", "seg",
                 "segmentation", "mask", "msk", "vert", "gt"}


def case_name_from(path: Path, tags=IMAGE_TAGS) -> str:
    """The case name an image (or label) file gives: file name without suffix and tag, cleaned;
    for generic names (``LIDC-IDRI-0001/image.nii.gz``, ``.../vertebrae.nii.gz``) the folder's name."""
    path = Path(path)
    stripped = _strip_image_suffix(path.name)
    stem = stripped[0] if stripped else path.name
    if stem.lower() in GENERIC_STEMS and path.parent.name:
        stem = path.parent.name
    for tag in tags:
        if stem.lower().endswith(tag) and len(stem) > len(tag):
            stem = stem[: -len(tag)]
            break
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return name or "case"


def expand_inputs(items, what: str = "images") -> list[Path]:
    """Paths from a list of files, DICOM folders and glob patterns (each pattern must match)."""
    out: list[Path] = []
    for item in items or []:
        text = str(item)
        p = Path(os.path.expanduser(text))
        if p.exists():
            out.append(p)
            continue
        if any(ch in text for ch in "*?["):
            hits = sorted(Path(h) for h in glob.glob(os.path.expanduser(text)))
            hits = [h for h in hits if not h.name.startswith(".")]
            if not hits:
                raise InputError(f"--{what} {text}: the pattern matches no file")
            out.extend(hits)
            continue
        raise InputError(f"--{what} {text}: no such file or folder")
    seen, unique = set(), []
    for p in out:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def assign_names(paths: list[Path], tags=IMAGE_TAGS) -> list[str]:
    """Unique case names for ``paths`` (clashing names get their parent folder as prefix)."""
    names = [case_name_from(p, tags) if (p.is_file() or not p.exists()) else re.sub(r"[^A-Za-z0-9._-]+", "_", p.name)
             for p in paths]
    for _ in range(2):
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            break
        names = [f"{re.sub(r'[^A-Za-z0-9._-]+', '_', p.parent.name)}_{n}" if n in clashes else n
                 for p, n in zip(paths, names)]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        which = [str(p) for p, n in zip(paths, names) if n == clashes[0]]
        raise InputError(f"several images give the case name {clashes[0]!r}: {', '.join(which)}; rename them")
    for n, p in zip(names, paths):
        if not CASE_NAME_RE.match(n):
            raise InputError(f"{p}: cannot make a case name from it (got {n!r})")
    return names


def parse_split(text) -> tuple[float, float, float]:
    """``"0.7,0.15,0.15"`` -> fractions for train / validation / test (normalised to sum 1)."""
    if isinstance(text, (tuple, list)):
        parts = [float(v) for v in text]
    else:
        try:
            parts = [float(v) for v in str(text).split(",")]
        except ValueError:
            raise InputError(f"--split {text}: give three fractions, e.g. 0.7,0.15,0.15") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise InputError(f"--split {text}: give three non-negative fractions for train, validation and test")
    total = sum(parts)
    return tuple(p / total for p in parts)


def split_cases(names: list[str], fractions, seed: int = 0) -> dict:
    """Random split with exact counts (validation and test rounded; at least one training case)."""
    n = len(names)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    while n_val + n_test >= n and n > 0 and fractions[0] > 0:
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        elif n_val > 0:
            n_val -= 1
        else:
            break
    order = np.random.default_rng(seed).permutation(n)
    split = {}
    for rank, idx in enumerate(order):
        split[names[idx]] = "validation" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return {k: split[k] for k in names}


def hashed_split(name: str, fractions, seed: int = 0) -> str:
    """Split of a case added later: a stable function of (seed, name)."""
    u = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < fractions[0] else "validation" if u < fractions[0] + fractions[1] else "test"


def convert_labels(label: Image, convention: str) -> tuple[Image, list]:
    """Map a label map in ``convention`` (see ``iis.datasets``) onto VerSe ids. ``verse`` keeps the
    values; other conventions keep vertebrae, discs (100 + id) and canal (61) and drop the rest."""
    if convention in ("verse", "tptbox"):
        return label, []
    from ..iis.datasets import resolve_convention
    from ..orientation import to_canonical

    canonical = to_canonical(label).image.array
    values = label_ids(label.array)
    lmap = resolve_convention(convention, values, canonical)
    if not lmap.identified:
        raise InputError(f"label convention {convention!r} does not name the vertebrae; give the name of the first, "
                         f"e.g. '{convention.split(':')[0]}:L1'")
    lut = np.zeros(max(values, default=0) + 1, np.uint16)
    for v, vid in lmap.vertebrae.items():
        lut[v] = vid
    for v, vid in lmap.merged.items():
        lut[v] = vid
    for v, vid in lmap.discs.items():
        lut[v] = 100 + vid
    for v in lmap.canal:
        lut[v] = 61
    dropped = [v for v in values if lut[v] == 0]
    warnings = ([f"values {', '.join(map(str, dropped))} have no meaning in convention {convention!r}; dropped"]
                if dropped else [])
    out = lut[np.asarray(label.array).astype(np.int64)]
    return label.with_array(out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)), warnings


# -- the dataset -----------------------------------------------------------------------------------
class AnnotationDataset:
    """An annotation dataset folder (see :mod:`SpineSegLib.annotation`). Use :func:`open_dataset`."""

    def __init__(self, root):
        self.root = Path(root)
        self.info: dict = {}
        self._local = threading.local()
        self.reload()

    @property
    def last_save(self) -> dict | None:
        """The version entry this thread saved last (or ``{"skipped": reason}``); per thread, so a
        prefetch thread and the user interface never see each other's."""
        return getattr(self._local, "last_save", None)

    @last_save.setter
    def last_save(self, value) -> None:
        self._local.last_save = value

    # -- paths ------------------------------------------------------------------------------------
    @property
    def dataset_file(self) -> Path:
        return self.root / DATASET_FILE

    def manifest_path(self, name: str) -> Path:
        return self.root / CASES_DIR / f"{name}.json"

    def lock_path(self, name: str | None = None) -> Path:
        return self.root / CASES_DIR / f"{name}.lock" if name else self.root / "dataset.lock"

    def labels_dir(self, name: str) -> Path:
        return self.root / LABELS_DIR / name

    def image_path(self, name: str) -> Path:
        return self.root / self.case(name).image

    def label_path(self, name: str, version: int | None = None) -> Path | None:
        """The file of ``version`` (default: the current one); None for a case without labels."""
        entry = self.case(name)
        v = entry.version(version) if version is not None else entry.current_version
        return self.root / v["file"] if v else None

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    # -- dataset-level ----------------------------------------------------------------------------
    def reload(self) -> None:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such dataset folder")
        if not self.dataset_file.exists():
            raise InputError(f"{self.root}: not an annotation dataset (no {DATASET_FILE}; create one with "
                             "'spineseg dataset init')")
        self.info = validate_dataset_info(read_json(self.dataset_file, "the dataset file"), self.dataset_file)

    @property
    def name(self) -> str:
        return self.info.get("name") or self.root.name

    @property
    def modality(self) -> str | None:
        return self.info.get("modality")

    @property
    def split(self) -> dict:
        return dict(self.info.get("split", {}))

    @property
    def crop_unlabelled(self) -> str:
        return self.info.get("crop_unlabelled", "none")

    def update_info(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to ``dataset.json`` under the dataset lock (read-modify-write)."""
        with _deferred_interrupt(), FileLock(self.lock_path()):
            info = validate_dataset_info(read_json(self.dataset_file, "the dataset file"), self.dataset_file)
            change(info)
            info["revision"] = int(info.get("revision", 0)) + 1
            info["updated"] = now_iso()
            validate_dataset_info(info, self.dataset_file)
            write_json_atomic(self.dataset_file, info)
        self.info = info
        return info

    def set_split(self, name: str, split: str) -> None:
        if split not in SPLITS:
            raise InputError(f"split {split!r}: use one of {', '.join(SPLITS)}")
        self.case(name)

        def change(info):
            info.setdefault("split", {})[name] = split
        self.update_info(change)

    # -- reading cases ----------------------------------------------------------------------------
    def case_names(self) -> list[str]:
        """Every case the dataset knows: those in the split and those with a manifest file."""
        names = set(self.info.get("split", {}))
        folder = self.root / CASES_DIR
        if folder.is_dir():
            names |= {p.name[:-5] for p in folder.glob("*.json") if not p.name.startswith(".")}
        return sorted(names, key=_natural_key)

    def _read_manifest(self, name: str) -> dict:
        path = self.manifest_path(name)
        if not path.exists():
            raise InputError(f"case {name}: its manifest {path} is missing (run 'spineseg dataset check "
                             f"{self.root} --repair' to rebuild it from the label versions)")
        try:
            return validate_case_manifest(read_json(path, "case manifest"), path, name)
        except InputError as exc:
            raise InputError(f"case {name}: {exc}; nothing was changed (run 'spineseg dataset check {self.root} "
                             "--repair' to rebuild it from the label versions; the broken file is kept)") from None

    def _entry(self, name: str, split_map: dict) -> CaseEntry:
        try:
            manifest = self._read_manifest(name)
        except InputError as exc:
            return CaseEntry(name, None, split_map.get(name), problem=str(exc))
        entry = CaseEntry(name, manifest, split_map.get(name))
        entry.image_missing = not (self.root / manifest["image"]).exists()
        return entry

    def case(self, name: str, strict: bool = True) -> CaseEntry:
        """The case ``name``, read fresh from disk. ``strict``: raise when it is broken or its image is missing."""
        name = str(name)
        if name not in self.case_names():
            known = self.case_names()
            hint = f" (cases: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})" if known else ""
            raise InputError(f"{self.root}: there is no case {name!r}{hint}")
        entry = self._entry(name, self.info.get("split", {}))
        if strict and entry.problem:
            raise InputError(entry.problem)
        if strict and entry.image_missing:
            raise InputError(f"case {name}: its image {self.root / entry.image} is missing")
        return entry

    def list_cases(self, status=None, split=None, include_broken: bool = True) -> list[CaseEntry]:
        """All cases (read fresh), optionally only those with ``status`` / ``split`` (a name or a list)."""
        self.reload()
        statuses = (status,) if isinstance(status, str) else tuple(status) if status else None
        splits = (split,) if isinstance(split, str) else tuple(split) if split else None
        split_map = self.info.get("split", {})
        out = []
        for name in self.case_names():
            e = self._entry(name, split_map)
            if e.problem and not include_broken:
                continue
            if statuses and (e.problem or e.status not in statuses):
                continue
            if splits and e.split not in splits:
                continue
            out.append(e)
        return out

    def counts(self) -> dict:
        """Number of cases per status (plus ``broken`` and ``image missing`` when there are any)."""
        counts = {s: 0 for s in STATUSES}
        for e in self.list_cases():
            key = "broken" if e.problem else e.status
            counts[key] = counts.get(key, 0) + 1
            if e.image_missing:
                counts["image missing"] = counts.get("image missing", 0) + 1
        return counts

    def next_case(self, status=("predicted", "new"), after: str | None = None, split=None) -> str | None:
        """The next usable case (in name order, after ``after``, wrapping round) whose status is in
        ``status``; None when there is none."""
        cases = [e.name for e in self.list_cases(status=status, split=split, include_broken=False)
                 if not e.image_missing]
        if not cases:
            return None
        if after is None:
            return cases[0]
        later = [c for c in cases if _natural_key(c) > _natural_key(str(after))]
        return later[0] if later else cases[0]

    def load_case(self, name: str, version: int | None = None) -> LoadedCase:
        """``(image, labels, entry)``: the image, the current label version (or ``version``; None
        for a case without labels) and the case entry. Both images share the image's grid."""
        entry = self.case(name)
        image = read_image(self.root / entry.image)
        v = entry.version(version) if version is not None else entry.current_version
        labels = None
        if v is not None:
            path = self.root / v["file"]
            if not path.exists():
                raise InputError(f"case {name}: version {v['version']} ({path}) is missing")
            labels = read_image(path)
            if not labels.same_grid(image):
                mapped = _exactly_on_grid(labels, image)
                if mapped is None:
                    raise InputError(f"case {name}: {path} no longer lies on the image's grid "
                                     "(was the image replaced?)")
                labels = mapped
        return LoadedCase(image, labels, entry)

    # -- writing label versions --------------------------------------------------------------------
    def _next_number(self, name: str, manifest: dict) -> int:
        numbers = [v["version"] for v in manifest.get("versions", [])]
        folder = self.labels_dir(name)
        if folder.is_dir():
            for p in folder.iterdir():
                m = VERSION_FILE_RE.match(p.name)
                if m:
                    numbers.append(int(m.group(1)))
        return max(numbers, default=0) + 1

    def _commit(self, name: str, tmp: Path, fields: dict, status: str,
                eligible: Optional[Callable[[dict], Optional[str]]] = None) -> Optional[dict]:
        """Steps (2a)-(2c) of the module docstring. Returns the version entry, or None when
        ``eligible(manifest)`` gives a reason not to save (the temporary file is removed)."""
        folder = self.labels_dir(name)
        try:
            with _deferred_interrupt(), FileLock(self.lock_path(name)):
                manifest = self._read_manifest(name)
                if eligible is not None:
                    reason = eligible(manifest)
                    if reason:
                        self.last_save = {"skipped": reason}
                        return None
                entry = dict(fields)
                entry["created"] = now_iso()      # under the lock: creation times follow the version order
                based_on = entry.get("based_on")
                current = manifest.get("current")
                if based_on is not None and current is not None and based_on != current:
                    newer = next((v for v in manifest["versions"] if v["version"] == current), {})
                    entry.setdefault("warnings", []).append(
                        f"saved on top of version {current} ({newer.get('kind', '?')} by {newer.get('user', '?')} at "
                        f"{newer.get('created', '?')}), not version {based_on} it was started from; both are kept")
                while True:
                    number = self._next_number(name, manifest)
                    stem = version_stem(number)
                    final = folder / f"{stem}.nii.gz"
                    entry.update(version=number, file=f"{LABELS_DIR}/{name}/{final.name}")
                    write_json_atomic(folder / f"{stem}.json", _sidecar(name, entry))
                    _fault("sidecar-written")
                    try:
                        _place_no_clobber(tmp, final)
                        break
                    except FileExistsError:   # a file appeared under that number (a writer ignoring the lock)
                        continue
                fsync_dir(folder)
                _fault("label-written")
                manifest["versions"].append(entry)
                manifest["current"] = number
                manifest["status"] = status
                manifest["revision"] = int(manifest["revision"]) + 1
                manifest["updated"] = entry["created"]
                write_json_atomic(self.manifest_path(name), manifest)
                _fault("manifest-written")
        finally:
            if tmp.exists():
                tmp.unlink()
        self.last_save = entry
        return entry

    def _save(self, name: str, label, fields: dict, status: str, eligible=None) -> Optional[dict]:
        entry = self.case(name)
        reference = image_grid(self.root / entry.image)
        label, warnings = conform_label(label, reference, f"the label map for case {name}")
        present = label_ids(label.array)
        tmp = _write_label_tmp(label, self.labels_dir(name))
        fields = {"created": now_iso(), "label_convention": LABEL_CONVENTION, "labels": present,
                  "voxels": int(np.count_nonzero(label.array)), "sha256": sha256_of(tmp), **fields}
        fields["warnings"] = list(fields.get("warnings", [])) + warnings
        return self._commit(name, tmp, fields, status, eligible)

    def save_correction(self, name: str, label_image, user: str | None = None, based_on: int | None = None,
                        note: str = "", status: str = "corrected") -> int:
        """Save an annotator's label map for case ``name`` as a new version; returns its number.

        ``label_image``: an :class:`Image` on the case image's grid (permuted / flipped axes are
        mapped exactly; other grids are refused) or an array of the image's shape. ``user``: who
        corrected it (default: the OS user). ``based_on``: the version the annotator started from
        (a warning is recorded when another version was saved in between). ``status``:
        ``corrected`` (default) or ``reviewed`` (a reviewer's own edit).
        """
        if status not in ("corrected", "reviewed"):
            raise InputError(f"a correction gets status 'corrected' or 'reviewed', not {status!r}")
        user = current_user(user)
        fields = {"kind": "correction", "status": status, "user": user, "based_on": based_on, "model": None,
                  "note": note}
        if status == "reviewed":
            fields.update(reviewed_by=user, reviewed_at=now_iso())
        return self._save(name, label_image, fields, status)["version"]

    def save_prediction(self, name: str, label_image, model: dict, *, instances=None, user: str | None = None,
                        settings: dict | None = None, redo: bool = False, warnings=()) -> int | None:
        """Save a model's label map as a new version (status ``predicted``); returns its number, or
        None when the case no longer needs it (corrected / reviewed meanwhile, or -- unless
        ``redo`` -- already predicted by the same model). ``model``: :func:`.predict.model_info`."""

        def eligible(manifest):
            if manifest["status"] in ANNOTATED:
                return f"case {name} is {manifest['status']}; predictions never replace annotations"
            if not redo and manifest["status"] == "predicted":
                cur = next(v for v in manifest["versions"] if v["version"] == manifest["current"])
                if (cur.get("model") or {}).get("sha256") == model.get("sha256"):
                    return f"case {name} was already predicted by this model"
            return None

        fields = {"kind": "prediction", "status": "predicted", "user": current_user(user), "model": dict(model),
                  "settings": dict(settings or {}), "instances": list(instances or []), "warnings": list(warnings)}
        entry = self._save(name, label_image, fields, "predicted", eligible)
        return entry["version"] if entry else None

    def import_labels(self, name: str, label_image, source: str, convention: str = "verse",
                      status: str = "corrected", user: str | None = None) -> int:
        """Import an existing label map (reference labels) as a version with ``status``."""
        if status not in ANNOTATED + ("predicted",):
            raise InputError(f"imported labels get status corrected, reviewed or predicted, not {status!r}")
        if not isinstance(label_image, Image):
            raise InputError("import_labels needs an Image")
        converted, warnings = convert_labels(label_image, convention)
        user = current_user(user)
        fields = {"kind": "import", "status": status, "user": user, "source": str(source), "convention": convention,
                  "model": None, "warnings": warnings}
        if status == "reviewed":
            fields.update(reviewed_by=user, reviewed_at=now_iso())
        return self._save(name, converted, fields, status)["version"]

    def mark_reviewed(self, name: str, user: str | None = None, version: int | None = None) -> int:
        """Mark the current version (``version`` must be it, if given) as reviewed by ``user``."""
        user = current_user(user)
        with _deferred_interrupt(), FileLock(self.lock_path(name)):
            manifest = self._read_manifest(name)
            current = manifest.get("current")
            if current is None:
                raise InputError(f"case {name} has no labels to review")
            if version is not None and version != current:
                raise InputError(f"case {name}: version {version} is not the current one ({current}); "
                                 "only the current version can be marked reviewed")
            entry = next(v for v in manifest["versions"] if v["version"] == current)
            entry.update(reviewed_by=user, reviewed_at=now_iso())
            stem = version_stem(current)
            sidecar = self.labels_dir(name) / f"{stem}.json"
            write_json_atomic(sidecar, _sidecar(name, entry))
            manifest["status"] = "reviewed"
            manifest["revision"] = int(manifest["revision"]) + 1
            manifest["updated"] = entry["reviewed_at"]
            write_json_atomic(self.manifest_path(name), manifest)
        return current

    def relabel(self, name: str, vertebra, as_name, user: str | None = None, only: bool = False,
                allow_t13: bool = False, allow_l6: bool = False):
        """Renumber the vertebrae of the current version (:mod:`.relabel`) and save the result as a
        new version (status ``corrected``). Returns ``(version or None if nothing changes, RelabelResult)``."""
        from .relabel import relabel_vertebrae

        image, labels, entry = self.load_case(name)
        if labels is None:
            raise InputError(f"case {name} has no labels to renumber")
        result = relabel_vertebrae(labels, vertebra, as_name, only=only, allow_t13=allow_t13, allow_l6=allow_l6)
        if not result.changed:
            return None, result
        user = current_user(user)
        fields = {"kind": "relabel", "status": "corrected", "user": user, "based_on": entry.current, "model": None,
                  "relabel": {str(k): v for k, v in result.mapping.items()}, "note": result.describe()}
        saved = self._save(name, result.image, fields, "corrected")
        return saved["version"], result

    # -- consistency ------------------------------------------------------------------------------
    def check(self, repair: bool = False, deep: bool = False) -> list[Problem]:
        """Find (and with ``repair`` fix) inconsistencies; returns what was found (module docstring).

        ``deep`` also verifies the SHA-256 of every label version."""
        self.reload()
        problems: list[Problem] = []
        split_map = self.info.get("split", {})
        now = time.time()
        for name in self.case_names():
            path = self.manifest_path(name)
            folder = self.labels_dir(name)
            files = {}
            if folder.is_dir():
                for p in folder.iterdir():
                    m = VERSION_FILE_RE.match(p.name)
                    if m:
                        files.setdefault(int(m.group(1)), {})[m.group(2)] = p
                    elif p.name.startswith(".tmp-") or p.name.endswith(".tmp"):
                        if now - p.stat().st_mtime > STALE_TMP_S:
                            problems.append(Problem(name, "stale-temp", f"case {name}: {p} is left over from an "
                                                    "interrupted save", True))
                            if repair:
                                p.unlink(missing_ok=True)
            if name not in split_map:
                problems.append(Problem(name, "unlisted-case", f"case {name} has a manifest but no split", True))
            manifest = None
            if not path.exists():
                problems.append(Problem(name, "missing-manifest", f"case {name}: manifest {path} is missing", True))
            else:
                try:
                    manifest = validate_case_manifest(read_json(path, "case manifest"), path, name)
                except InputError as exc:
                    problems.append(Problem(name, "broken-manifest", f"case {name}: {exc}", True))
            if manifest is None:
                if repair:
                    self._rebuild_manifest(name, files, problems)
                continue
            if not (self.root / manifest["image"]).exists():
                problems.append(Problem(name, "missing-image", f"case {name}: image {self.root / manifest['image']} "
                                        "is missing"))
            listed = {v["version"]: v for v in manifest["versions"]}
            for n, v in listed.items():
                p = self.root / v["file"]
                if not p.exists():
                    problems.append(Problem(name, "missing-version", f"case {name}: version {n} ({p}) is missing"
                                            + (" -- it is the current one" if n == manifest.get("current") else "")))
                elif deep and v.get("sha256") and sha256_of(p) != v["sha256"]:
                    problems.append(Problem(name, "checksum", f"case {name}: {p} does not match its recorded SHA-256 "
                                            "(changed outside SpineSeg)"))
            orphans = sorted(n for n, kinds in files.items() if n not in listed and "nii.gz" in kinds)
            for n in orphans:
                has_meta = "json" in files[n]
                problems.append(Problem(name, "orphan-version",
                                        f"case {name}: {files[n]['nii.gz']} is not in the manifest (an interrupted save"
                                        + (")" if has_meta else "; no metadata)"), True))
            for n, kinds in sorted(files.items()):
                if n not in listed and "nii.gz" not in kinds:
                    problems.append(Problem(name, "orphan-metadata",
                                            f"case {name}: {kinds['json']} has no label file (a save interrupted "
                                            "before the label was in place; nothing to recover)", True))
                    if repair:
                        kinds["json"].unlink(missing_ok=True)
            if repair and orphans:
                self._recover_versions(name, {n: files[n] for n in orphans})
        for p in (self.root / CASES_DIR).glob("*.lock") if (self.root / CASES_DIR).is_dir() else []:
            lock = FileLock(p)
            holder = lock._read_holder()
            if holder is not None and lock._is_stale(holder):
                problems.append(Problem(p.stem, "stale-lock", f"{p}: stale lock of {FileLock.describe(holder)}", True))
                if repair:
                    lock._break(holder)
        if repair:
            unlisted = [p.case for p in problems if p.kind == "unlisted-case"]
            if unlisted:
                fractions = tuple(self.info.get("split_fractions", (0.7, 0.15, 0.15)))
                seed = int(self.info.get("split_seed", 0))

                def change(info):
                    for c in unlisted:
                        info.setdefault("split", {})[c] = hashed_split(c, fractions, seed)
                self.update_info(change)
        return problems

    def _version_from_sidecar(self, name: str, n: int, kinds: dict) -> dict:
        label_file = kinds["nii.gz"]
        entry = None
        if "json" in kinds:
            try:
                data = read_json(kinds["json"], "version metadata")
                if isinstance(data, dict) and data.get("version") == n:
                    entry = {k: v for k, v in data.items() if k not in ("format", "format_version", "case")}
            except InputError:
                entry = None
        if entry is None:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(label_file.stat().st_mtime))
            entry = {"kind": "recovered", "status": "corrected", "user": None, "created": created, "model": None,
                     "label_convention": LABEL_CONVENTION, "sha256": sha256_of(label_file),
                     "warnings": ["recovered without its metadata: who saved it and why is unknown"]}
        entry["version"] = n
        entry["file"] = f"{LABELS_DIR}/{name}/{label_file.name}"
        entry.setdefault("warnings", []).append(f"recovered by check --repair at {now_iso()}")
        return entry

    def _recover_versions(self, name: str, files: dict) -> None:
        with _deferred_interrupt(), FileLock(self.lock_path(name)):
            manifest = self._read_manifest(name)
            listed = {v["version"] for v in manifest["versions"]}
            for n in sorted(files):
                if n in listed:
                    continue
                entry = self._version_from_sidecar(name, n, files[n])
                manifest["versions"].append(entry)
                manifest["versions"].sort(key=lambda v: v["version"])
                # the newest save (with metadata) is what the user last meant to keep
                if entry["kind"] != "recovered" and (manifest.get("current") is None or n > manifest["current"]):
                    manifest["current"] = n
                    manifest["status"] = entry.get("status", "corrected")
            manifest["revision"] = int(manifest["revision"]) + 1
            manifest["updated"] = now_iso()
            write_json_atomic(self.manifest_path(name), manifest)

    def _rebuild_manifest(self, name: str, files: dict, problems: list) -> None:
        images = sorted(p for p in (self.root / IMAGES_DIR).glob(f"{name}.*")
                        if _strip_image_suffix(p.name) and _strip_image_suffix(p.name)[0] == name)
        if not images:
            problems.append(Problem(name, "missing-image", f"case {name}: cannot rebuild its manifest, no image "
                                    f"{self.root / IMAGES_DIR / name}.* found"))
            return
        path = self.manifest_path(name)
        with _deferred_interrupt(), FileLock(self.lock_path(name)):
            if path.exists():
                aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
                os.replace(path, aside)
            versions = [self._version_from_sidecar(name, n, kinds) for n, kinds in sorted(files.items())
                        if "nii.gz" in kinds]
            usable = [v for v in versions if v["kind"] != "recovered"] or versions
            current = usable[-1] if usable else None
            manifest = new_manifest(name, f"{IMAGES_DIR}/{images[0].name}", self.modality)
            manifest.update(versions=versions, current=current["version"] if current else None,
                            status=(current.get("status", "corrected") if current else "new"),
                            rebuilt=now_iso())
            if current and current.get("reviewed_by") and manifest["status"] != "reviewed":
                manifest["status"] = "reviewed"
            validate_case_manifest(manifest, path, name)
            write_json_atomic(path, manifest)

    # -- convenience wrappers (heavy modules imported on use) ---------------------------------------
    def predict(self, model, **kwargs):
        """:func:`SpineSegLib.annotation.predict.predict_dataset` on this dataset."""
        from .predict import predict_dataset
        return predict_dataset(self, model, **kwargs)

    def finetune(self, model, output, **kwargs):
        """:func:`SpineSegLib.annotation.finetune.finetune` on this dataset."""
        from .finetune import finetune
        return finetune(self, model, output, **kwargs)

    def prefetch(self, model, **kwargs):
        """:class:`SpineSegLib.annotation.prefetch.Prefetcher` started on this dataset."""
        from .prefetch import prefetch
        return prefetch(self, model, **kwargs)

    def export(self, fmt: str, output, **kwargs):
        """:func:`SpineSegLib.annotation.export.export_dataset` of this dataset."""
        from .export import export_dataset
        return export_dataset(self, fmt, output, **kwargs)


def open_dataset(root) -> AnnotationDataset:
    """Open an annotation dataset folder (made by :func:`create_dataset` / ``spineseg dataset init``)."""
    return AnnotationDataset(root)


def new_manifest(name: str, image: str, modality: str | None) -> dict:
    return {"format": CASE_FORMAT, "format_version": FORMAT_VERSION, "case": name, "image": image,
            "modality": modality, "label_convention": LABEL_CONVENTION, "status": "new", "current": None,
            "revision": 0, "versions": [], "created": now_iso()}


# -- creating a dataset ------------------------------------------------------------------------------
@dataclass
class _Input:
    name: str
    image: Path
    label: Path | None = None


def _match_labels(inputs: list[_Input], label_paths: list[Path]) -> None:
    by_name = {i.name: i for i in inputs}
    by_stem = {case_name_from(i.image): i for i in inputs}
    for lp in label_paths:
        key = case_name_from(lp, LABEL_TAGS)
        if key.startswith("sub-") and key not in by_name and key not in by_stem:
            key = key[4:]
        target = by_name.get(key) or by_stem.get(key)
        if target is None:
            raise InputError(f"--labels {lp}: no image gives the case name {key!r} (cases: "
                             f"{', '.join(list(by_name)[:6])}{' ...' if len(by_name) > 6 else ''})")
        if target.label is not None:
            raise InputError(f"case {target.name} has two label files: {target.label} and {lp}")
        target.label = lp


def _store_image(src: Path, dest_dir: Path, name: str, mode: str) -> tuple[Path, Image]:
    """Put the image of case ``name`` into ``dest_dir``; returns (stored path, image)."""
    image = read_image(src)     # validates: readable, 3-D, scalar
    stripped = _strip_image_suffix(src.name) if src.is_file() else None
    suffix = stripped[1].lower() if stripped else None
    if src.is_file() and suffix in COPYABLE_SUFFIXES:
        dest = dest_dir / f"{name}{suffix}"
        if mode == "link":
            try:
                os.symlink(src.resolve(), dest)
            except OSError as exc:
                raise InputError(f"cannot link {dest} to {src} ({exc.strerror or exc}); use --copy") from None
        else:
            tmp = dest_dir / f".tmp-{uuid.uuid4().hex}{suffix}"
            shutil.copyfile(src, tmp)
            set_default_permissions(tmp)
            os.replace(tmp, dest)
        return dest, image
    dest = dest_dir / f"{name}.nii.gz"            # DICOM folders, .mhd, .nhdr: converted
    from ..image import write_image
    write_image(image, dest)
    return dest, image


def create_dataset(root, images, labels=None, *, split="0.7,0.15,0.15", seed: int = 0, mode: str = "copy",
                   label_convention: str = "verse", label_status: str = "corrected", modality: str | None = None,
                   name: str | None = None, crop_unlabelled: str = "none", user: str | None = None,
                   progress: Progress | None = None) -> AnnotationDataset:
    """Create an annotation dataset in the new folder ``root`` (``spineseg dataset init``).

    ``images``: files, DICOM folders or glob patterns, one case each (names from the file names:
    ``07_img.nii.gz`` -> ``07``). ``labels``: optional existing label maps matched by name
    (``07_vb.nii.gz`` -> ``07``), imported as version 1 with ``label_status`` after mapping
    ``label_convention`` (e.g. ``top-down:L1``) onto VerSe ids. ``mode``: ``copy`` the images into
    the dataset or ``link`` to them (symbolic links; DICOM is always converted to NIfTI).
    ``crop_unlabelled``: ``above`` / ``below`` / ``both`` when the annotation protocol leaves
    vertebrae beyond the labelled range unlabelled (fine-tuning then hides them, as in training).
    The folder is built beside ``root`` and renamed into place at the end: a failed init leaves nothing.
    """
    root = Path(root)
    progress = progress or Progress()
    if mode not in ("copy", "link"):
        raise InputError(f"mode {mode!r}: use 'copy' or 'link'")
    if crop_unlabelled not in ("none", "above", "below", "both"):
        raise InputError(f"crop_unlabelled {crop_unlabelled!r}: use none, above, below or both")
    if modality not in (None, "ct", "mr"):
        raise InputError(f"modality {modality!r}: use ct or mr")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise OutputExistsError(f"{root} exists and is not empty; choose a new folder")
    fractions = parse_split(split)
    from ..iis.datasets import validate_convention
    validate_convention(label_convention)
    paths = expand_inputs(images, "images")
    if not paths:
        raise InputError("no images given (--images FILES_OR_GLOBS)")
    inputs = [_Input(n, p) for n, p in zip(assign_names(paths), paths)]
    _match_labels(inputs, expand_inputs(labels, "labels") if labels else [])

    root.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(build, 0o777 & ~umask)      # mkdtemp makes it private
    try:
        for d in (IMAGES_DIR, LABELS_DIR, CASES_DIR):
            (build / d).mkdir()
        split_map = split_cases([i.name for i in inputs], fractions, seed)
        info = {"format": DATASET_FORMAT, "format_version": FORMAT_VERSION, "name": name or root.name,
                "created": now_iso(), "created_by": current_user(user), "modality": modality,
                "label_convention": LABEL_CONVENTION, "label_convention_text": LABEL_CONVENTION_TEXT,
                "crop_unlabelled": crop_unlabelled, "split_fractions": list(fractions), "split_seed": int(seed),
                "split": split_map, "models": [], "revision": 0}
        write_json_atomic(build / DATASET_FILE, info)
        ds = AnnotationDataset(build)
        guessed = None
        for k, item in enumerate(inputs):
            progress.step(f"case {item.name} ({k + 1}/{len(inputs)})", k / len(inputs))
            stored, image = _store_image(item.image, build / IMAGES_DIR, item.name, mode)
            if modality is None and guessed is None:
                from ..iis.inference import guess_modality
                guessed = guess_modality(image)[0]
            manifest = new_manifest(item.name, f"{IMAGES_DIR}/{stored.name}", modality or guessed)
            manifest.update(source=str(item.image.resolve()),
                            image_grid={"size": list(image.size), "spacing": list(image.spacing),
                                        "origin": list(image.origin), "orientation": image.orientation},
                            image_sha256=sha256_of(stored) if stored.is_file() else None)
            write_json_atomic(ds.manifest_path(item.name), manifest)
            if item.label is not None:
                label = read_image(item.label)
                try:
                    ds.import_labels(item.name, label, str(item.label.resolve()), label_convention, label_status, user)
                except InputError as exc:
                    raise InputError(f"{item.label}: {exc}") from None
        if modality is None:
            def set_modality(info):
                info["modality"] = guessed
            ds.update_info(set_modality)
        progress.step("done", 1.0)
        if root.exists():
            root.rmdir()
        os.replace(build, root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return AnnotationDataset(root)


def add_cases(ds: AnnotationDataset, images, labels=None, *, mode: str = "copy", label_convention: str = "verse",
              label_status: str = "corrected", user: str | None = None, split: str | None = None,
              progress: Progress | None = None) -> list[str]:
    """Add cases to an existing dataset (``spineseg dataset add``); returns their names. Their split
    is ``split`` or drawn from the dataset's fractions by a hash of the name."""
    progress = progress or Progress()
    paths = expand_inputs(images, "images")
    inputs = [_Input(n, p) for n, p in zip(assign_names(paths), paths)]
    existing = set(ds.case_names())
    taken = [i.name for i in inputs if i.name in existing]
    if taken:
        raise InputError(f"the dataset already has case(s) {', '.join(taken[:5])}")
    _match_labels(inputs, expand_inputs(labels, "labels") if labels else [])
    if split is not None and split not in SPLITS:
        raise InputError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    fractions = tuple(ds.info.get("split_fractions", (0.7, 0.15, 0.15)))
    seed = int(ds.info.get("split_seed", 0))
    added = []
    for k, item in enumerate(inputs):
        progress.step(f"case {item.name} ({k + 1}/{len(inputs)})", k / len(inputs))
        stored, image = _store_image(item.image, ds.root / IMAGES_DIR, item.name, mode)
        manifest = new_manifest(item.name, f"{IMAGES_DIR}/{stored.name}", ds.modality)
        manifest.update(source=str(item.image.resolve()),
                        image_grid={"size": list(image.size), "spacing": list(image.spacing),
                                    "origin": list(image.origin), "orientation": image.orientation},
                        image_sha256=sha256_of(stored) if stored.is_file() else None)
        write_json_atomic(ds.manifest_path(item.name), manifest)

        def change(info, n=item.name):
            info.setdefault("split", {})[n] = split or hashed_split(n, fractions, seed)
        ds.update_info(change)
        if item.label is not None:
            ds.import_labels(item.name, read_image(item.label), str(item.label.resolve()), label_convention,
                             label_status, user)
        added.append(item.name)
    progress.step("done", 1.0)
    return added
