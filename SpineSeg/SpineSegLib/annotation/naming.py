"""Case names: from image and label file names, unique within a dataset, and paired with each other.

A case is named after its image file, without the suffix and a trailing tag (``07_img.nii.gz`` ->
``07``, ``sub-verse004_ct.nii.gz`` -> ``sub-verse004``); a generic file name
(``LIDC-IDRI-0001/image.nii.gz``) gives its folder's name, a DICOM folder its own name. Names that
clash get their parent folder as prefix. Label maps are matched to images by the same rule with
the label tags (``07_vb.nii.gz`` -> ``07``; VerSe's ``sub-`` prefix may be left out).

Console use::

    from SpineSegLib.annotation.naming import assign_names, expand_inputs
    paths = expand_inputs(["scans/*_img.nii.gz"])
    assign_names(paths)            # ['01', '02', ...]
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from SpineSegLib.core.errors import InputError
from SpineSegLib.annotation.manifest import CASE_NAME_RE
from SpineSegLib.iis.train.discovery import IMAGE_TAGS

READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_TAGS = ("_seg-vert_msk", "_label", "_labels", "_seg", "_mask", "_msk", "_vb", "_ivd", "_vert", "_vertebrae",
              "_gt")
#: file names that name no case (one folder per case): the folder's name is the case name
GENERIC_STEMS = {"image", "img", "ct", "mr", "t1", "t2", "scan", "volume", "vertebrae", "label", "labels", "seg",
                 "segmentation", "mask", "msk", "vert", "gt"}


def natural_key(name: str):
    """Sort key that orders the numbers in a name by value (``2`` before ``10``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def strip_image_suffix(name: str) -> tuple[str, str] | None:
    """``(stem, suffix)`` of an image file name with a readable suffix (``.nii.gz`` ...), else None."""
    low = name.lower()
    for suffix in READABLE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)], name[len(name) - len(suffix):]
    return None


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def case_name_from(path: Path, tags=IMAGE_TAGS) -> str:
    """The case name an image (or label) file gives: file name without suffix and tag, cleaned;
    for generic names (``LIDC-IDRI-0001/image.nii.gz``, ``.../vertebrae.nii.gz``) the folder's name."""
    path = Path(path)
    stripped = strip_image_suffix(path.name)
    stem = stripped[0] if stripped else path.name
    if stem.lower() in GENERIC_STEMS and path.parent.name:
        stem = path.parent.name
    for tag in tags:
        if stem.lower().endswith(tag) and len(stem) > len(tag):
            stem = stem[: -len(tag)]
            break
    name = _clean(stem).strip("._-")
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
    names = [case_name_from(p, tags) if (p.is_file() or not p.exists()) else _clean(p.name) for p in paths]
    for _ in range(2):
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            break
        names = [f"{_clean(p.parent.name)}_{n}" if n in clashes else n for p, n in zip(paths, names)]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        which = [str(p) for p, n in zip(paths, names) if n == clashes[0]]
        raise InputError(f"several images give the case name {clashes[0]!r}: {', '.join(which)}; rename them")
    for n, p in zip(names, paths):
        if not CASE_NAME_RE.match(n):
            raise InputError(f"{p}: cannot make a case name from it (got {n!r})")
    return names


@dataclass
class CaseInput:
    """One case to add: its name, its image and (optionally) its existing label map."""

    name: str
    image: Path
    label: Path | None = None


def case_inputs(images) -> list[CaseInput]:
    """A :class:`CaseInput` for each of ``images`` (files, folders, glob patterns), named by :func:`assign_names`."""
    paths = expand_inputs(images, "images")
    return [CaseInput(n, p) for n, p in zip(assign_names(paths), paths)]


def match_labels(inputs: list[CaseInput], labels) -> None:
    """Give each of ``inputs`` its label map from ``labels`` (paths or patterns), matched by case name."""
    label_paths = expand_inputs(labels, "labels") if labels else []
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
