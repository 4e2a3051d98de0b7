"""Creating an annotation dataset (``spineseg dataset init``) and adding cases to one (``spineseg dataset add``).

Each image becomes a case named after its file (:mod:`.naming`), stored in ``images/`` (a copy, a
symbolic link with ``mode="link"``, or -- DICOM folders, ``.mhd``, ``.nhdr`` -- converted to
NIfTI), with a manifest recording where it came from, its grid and its SHA-256. Existing label
maps given with it are imported as version 1 (:meth:`.store.AnnotationDataset.import_labels`). The
split is drawn with exact counts at creation and, for cases added later, by a hash of the name
(:mod:`SpineSegLib.core.splits`). A new dataset is built in a temporary folder beside ``root`` and
renamed into place at the end: a failed init leaves nothing behind.

Console use::

    from SpineSegLib.annotation.creation import add_cases, create_dataset
    ds = create_dataset("ds", ["scans/*_img.nii.gz"], ["scans/*_vb.nii.gz"], label_convention="top-down:L1")
    add_cases(ds, ["more/*_img.nii.gz"])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from SpineSegLib.core.errors import InputError, OutputExistsError, WriteError
from SpineSegLib.core.files import replaced_atomically, sha256_of, write_guard
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.modality import ct_encoding_problem, guess_modality
from SpineSegLib.core.progress import Progress
from SpineSegLib.core.splits import SPLITS, hashed_split, parse_fractions, split_names
from SpineSegLib.annotation.folder import CASES_DIR, DATASET_FILE, IMAGES_DIR, LABELS_DIR, new_manifest
from SpineSegLib.annotation.manifest import (
    DATASET_FORMAT, FORMAT_VERSION, LABEL_CONVENTION, LABEL_CONVENTION_TEXT, current_user, now_iso,
    write_json_atomic,
)
from SpineSegLib.annotation.naming import CaseInput, case_inputs, match_labels, strip_image_suffix
from SpineSegLib.annotation.store import AnnotationDataset

#: image files stored as they are (byte copies or links); other inputs are converted to NIfTI
COPYABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def store_image(src: Path, dest_dir: Path, name: str, mode: str) -> tuple[Path, Image]:
    """Put the image of case ``name`` into ``dest_dir``; returns (stored path, image)."""
    image = read_image(src)     # validates: readable, 3-D, scalar
    stripped = strip_image_suffix(src.name) if src.is_file() else None
    suffix = stripped[1].lower() if stripped else None
    if src.is_file() and suffix in COPYABLE_SUFFIXES:
        dest = dest_dir / f"{name}{suffix}"
        if mode == "link":
            try:
                os.symlink(src.resolve(), dest)
            except OSError as exc:
                raise InputError(f"cannot link {dest} to {src} ({exc.strerror or exc}); use --copy") from None
        else:
            with replaced_atomically(dest, suffix) as tmp:
                shutil.copyfile(src, tmp)
        return dest, image
    dest = dest_dir / f"{name}.nii.gz"            # DICOM folders, .mhd, .nhdr: converted
    write_image(image, dest)
    return dest, image


def _write_case_manifest(ds: AnnotationDataset, item: CaseInput, stored: Path, image: Image,
                         modality: str | None) -> None:
    """The manifest of a new case without labels: where its image came from, its grid and SHA-256."""
    manifest = new_manifest(item.name, f"{IMAGES_DIR}/{stored.name}", modality)
    manifest.update(source=str(item.image.resolve()),
                    image_grid={"size": list(image.size), "spacing": list(image.spacing),
                                "origin": list(image.origin), "orientation": image.orientation},
                    image_sha256=sha256_of(stored) if stored.is_file() else None)
    write_json_atomic(ds.manifest_path(item.name), manifest)


def _check_options(root: Path, mode: str, crop_unlabelled: str, modality: str | None) -> None:
    if mode not in ("copy", "link"):
        raise InputError(f"mode {mode!r}: use 'copy' or 'link'")
    if crop_unlabelled not in ("none", "above", "below", "both"):
        raise InputError(f"crop_unlabelled {crop_unlabelled!r}: use none, above, below or both")
    if modality not in (None, "ct", "mr"):
        raise InputError(f"modality {modality!r}: use ct or mr")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise OutputExistsError(f"{root} exists and is not empty; choose a new folder")


def _new_build_folder(root: Path) -> Path:
    """An empty folder beside ``root`` (same file system: renamed into place at the end)."""
    with write_guard(root):
        root.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(build, 0o777 & ~umask)      # mkdtemp makes it private
    for d in (IMAGES_DIR, LABELS_DIR, CASES_DIR):
        (build / d).mkdir()
    return build


def _fill(build: Path, inputs: list[CaseInput], mode: str, label_convention: str, label_status: str,
          modality: str | None, user: str | None, progress: Progress) -> None:
    """Store every case of ``inputs`` in the dataset being built (and guess its modality when not given)."""
    ds = AnnotationDataset(build)
    guessed = None
    for k, item in enumerate(inputs):
        progress.step(f"case {item.name} ({k + 1}/{len(inputs)})", k / len(inputs))
        stored, image = store_image(item.image, build / IMAGES_DIR, item.name, mode)
        if modality != "mr":    # a CT no longer in HU (HU + 1024 unscaled, windowed to 0-255); --modality mr vouches
            problem = ct_encoding_problem(image)
            if problem:
                raise InputError(f"{item.image}: {problem}")
        if modality is None and guessed is None:   # the first image's intensities tell the modality of all
            guessed = guess_modality(image)[0]
        _write_case_manifest(ds, item, stored, image, modality or guessed)
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
    _check_options(root, mode, crop_unlabelled, modality)
    fractions = parse_fractions(split)
    from SpineSegLib.iis.train.conventions import validate_convention   # the training readers: imported on use
    validate_convention(label_convention)
    inputs = case_inputs(images)
    if not inputs:
        raise InputError("no images given (--images FILES_OR_GLOBS)")
    match_labels(inputs, labels)

    build = _new_build_folder(root)
    try:
        info = {"format": DATASET_FORMAT, "format_version": FORMAT_VERSION, "name": name or root.name,
                "created": now_iso(), "created_by": current_user(user), "modality": modality,
                "label_convention": LABEL_CONVENTION, "label_convention_text": LABEL_CONVENTION_TEXT,
                "crop_unlabelled": crop_unlabelled, "split_fractions": list(fractions), "split_seed": int(seed),
                "split": split_names([i.name for i in inputs], fractions, seed), "models": [], "revision": 0}
        write_json_atomic(build / DATASET_FILE, info)
        _fill(build, inputs, mode, label_convention, label_status, modality, user, progress)
        progress.step("done", 1.0)
        with write_guard(root):
            if root.exists():
                root.rmdir()
            os.replace(build, root)
    except WriteError as exc:     # name the dataset folder, not the hidden one it is built in
        shutil.rmtree(build, ignore_errors=True)
        raise WriteError(str(exc).replace(str(build), str(root))) from exc
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
    inputs = case_inputs(images)
    existing = set(ds.case_names())
    taken = [i.name for i in inputs if i.name in existing]
    if taken:
        raise InputError(f"the dataset already has case(s) {', '.join(taken[:5])}")
    match_labels(inputs, labels)
    if split is not None and split not in SPLITS:
        raise InputError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    fractions, seed = ds.split_settings
    added = []
    for k, item in enumerate(inputs):
        progress.step(f"case {item.name} ({k + 1}/{len(inputs)})", k / len(inputs))
        stored, image = store_image(item.image, ds.root / IMAGES_DIR, item.name, mode)
        problem = ct_encoding_problem(image) if ds.modality != "mr" else None
        if problem:              # the cases added before this one stay, each complete
            Path(stored).unlink(missing_ok=True)
            raise InputError(f"{item.image}: {problem}")
        _write_case_manifest(ds, item, stored, image, ds.modality)

        def change(info, n=item.name):
            info.setdefault("split", {})[n] = split or hashed_split(n, fractions, seed)
        ds.update_info(change)
        if item.label is not None:
            ds.import_labels(item.name, read_image(item.label), str(item.label.resolve()), label_convention,
                             label_status, user)
        added.append(item.name)
    progress.step("done", 1.0)
    return added
