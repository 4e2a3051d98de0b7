"""Finding image / label pairs in dataset folders: image file names, folder checks and the pairing
rules of a generic folder (:func:`find_pairs`).

Console use::

    from SpineSegLib.iis.train.discovery import find_pairs
    find_pairs("../shared/data/ct")[:1]    # [('lidc-idri-0001', .../image.nii.gz, .../vertebrae.nii.gz)]
"""

from __future__ import annotations

from pathlib import Path

from SpineSegLib.core.errors import InputError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def strip_suffix(name: str) -> tuple[str, str] | None:
    """``(stem, suffix)`` of an image file name (``.nii.gz`` counts as one suffix), None for other files."""
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


def check_folder(root) -> Path:
    """``root`` as a :class:`Path`; :class:`InputError` unless it is an existing folder."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"dataset path is not a folder: {root}")
    return root


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (hidden files left out), sorted."""
    return sorted(p for p in folder.glob("*") if p.is_file() and strip_suffix(p.name) and not p.name.startswith("."))


IMAGE_TAGS = ("_img", "_image", "_ct", "_mr", "_t1", "_t2", "_0000")
LABEL_TAGS = ("_label", "_labels", "_seg", "_mask", "_msk", "_vb", "_ivd", "_vert", "_vertebrae", "_gt")
LABEL_FOLDERS = ("labels", "labelsTr", "labelsTs", "masks", "segmentations", "label", "gt")
IMAGE_FOLDERS = ("images", "imagesTr", "imagesTs", "image", "volumes", "data")
PER_CASE_IMAGES = ("image", "img", "ct", "mr", "t1", "t2")
PER_CASE_LABELS = ("vertebrae", "label", "labels", "seg", "mask", "msk", "vert")


def find_pairs(root) -> list[tuple[str, Path, Path]]:
    """``(name, image, label)`` pairs in a generic folder, by the first of these rules that matches:

    1. nnU-Net: ``imagesTr/X_0000.ext`` + ``labelsTr/X.ext`` (also ``imagesTs``/``labelsTs``);
       other image/label sub-folder pairs (``images/`` + ``labels/`` or ``masks/`` ...) pair equal
       names, and ``X_0000`` in the image folder pairs with ``X``.
    2. Flat: ``X<tag>.ext`` + ``X<ltag>.ext`` with an image tag (``_img _image _ct _mr _t1 _t2 _0000``)
       and a label tag (``_label(s) _seg _mask _msk _vb _ivd _vert(ebrae) _gt``); ``X.ext`` pairs with
       a labelled ``X<ltag>.ext`` too.
    3. One sub-folder per case: ``X/image.ext`` (or ``img``, ``ct``, ``mr``) + ``X/vertebrae.ext``
       (or ``label(s)``, ``seg``, ``mask``, ``msk``, ``vert``).

    An image whose label has two candidates raises :class:`InputError` (ambiguous).
    """
    root = check_folder(root)
    pairs: list[tuple[str, Path, Path]] = []

    # 1. image / label sub-folders
    for img_dir in IMAGE_FOLDERS:
        for lab_dir in LABEL_FOLDERS:
            di, dl = root / img_dir, root / lab_dir
            if not (di.is_dir() and dl.is_dir()) or di == dl:
                continue
            if img_dir.startswith("images") and lab_dir.startswith("labels") and img_dir[6:] != lab_dir[6:]:
                continue   # imagesTr goes with labelsTr only
            labels = {}
            for p in image_files(dl):
                labels.setdefault(strip_suffix(p.name)[0], p)
            for p in image_files(di):
                stem = strip_suffix(p.name)[0]
                key = stem[:-5] if stem.endswith("_0000") and stem[:-5] in labels else stem
                if key in labels:
                    pairs.append((key, p, labels[key]))
    if pairs:
        return pairs

    # 2. flat folder with name tags
    files = image_files(root)
    stems = {}
    for p in files:
        stems.setdefault(strip_suffix(p.name)[0], []).append(p)
    label_of: dict[str, list[Path]] = {}
    for stem, paths in stems.items():
        for tag in LABEL_TAGS:
            if stem.lower().endswith(tag) and len(stem) > len(tag):
                label_of.setdefault(stem[: -len(tag)], []).extend(paths)
    label_files = {p for ps in label_of.values() for p in ps}
    for stem, paths in sorted(stems.items()):
        for p in paths:
            if p in label_files:
                continue
            base = stem
            for tag in IMAGE_TAGS:
                if stem.lower().endswith(tag) and len(stem) > len(tag):
                    base = stem[: -len(tag)]
                    break
            candidates = label_of.get(base, [])
            if len(candidates) > 1:
                raise InputError(f"{root}: image {p.name} has several label files: {', '.join(c.name for c in candidates)}")
            if candidates:
                pairs.append((base, p, candidates[0]))
    if pairs:
        return pairs

    # 3. one folder per case
    for sub in sorted(d for d in root.iterdir() if d.is_dir()):
        found = {(strip_suffix(p.name) or ("",))[0].lower(): p for p in image_files(sub)}
        img = next((found[n] for n in PER_CASE_IMAGES if n in found), None)
        labs = [found[n] for n in PER_CASE_LABELS if n in found]
        if img is not None and labs:
            pairs.append((sub.name, img, labs[0]))
    return pairs


def no_pairs_error(root, what: str) -> InputError:
    """The error of a dataset folder in which a reader found nothing; ``what`` says what it looked for."""
    return InputError(f"no image/label pairs found in {root} ({what})")
