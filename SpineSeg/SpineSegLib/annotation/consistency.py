"""Finding and repairing what a crash, a kill or a hand edit left in a dataset (``spineseg dataset check``).

What :func:`check_dataset` reports (each a :class:`Problem`; ``repairable`` ones are fixed with
``repair=True``):

* ``orphan-version``: a label file no manifest lists -- a save cut short between placing the file
  and writing the manifest (:mod:`.versions`). Repair adds it back from its metadata file (or, with
  none, as a ``recovered`` version), as the current version when it is newer than the current one.
* ``orphan-metadata``: a metadata file without its label file (cut short earlier; nothing to
  recover). Repair removes it.
* ``missing-manifest`` / ``broken-manifest``: repair rebuilds the manifest from the version files
  (the broken file is kept beside it as ``<case>.json.broken-<time>``).
* ``unlisted-case``: a manifest without a split; repair draws one (:func:`SpineSegLib.core.splits.hashed_split`).
* ``stale-temp`` (a temporary file older than :data:`STALE_TMP_S`), ``stale-lock``: removed.
* ``missing-image``, ``missing-version`` and, with ``deep``, ``checksum`` (a label file that no
  longer matches its recorded SHA-256): reported only.

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.consistency import check_dataset
    for problem in check_dataset(open_dataset("ds"), repair=True):
        print(problem)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import sha256_of
from SpineSegLib.core.splits import hashed_split
from SpineSegLib.annotation.folder import CASES_DIR, IMAGES_DIR, LABELS_DIR, DatasetFolder, new_manifest
from SpineSegLib.annotation.locking import FileLock, commit_lock
from SpineSegLib.annotation.manifest import (
    LABEL_CONVENTION, now_iso, read_json, validate_case_manifest, write_json_atomic,
)
from SpineSegLib.annotation.naming import strip_image_suffix
from SpineSegLib.annotation.versions import version_files

#: a temporary file older than this is left over from a crash (check --repair removes it)
STALE_TMP_S = 3600.0


@dataclass
class Problem:
    """Something :func:`check_dataset` found; ``repairable``: ``repair=True`` fixes it."""

    case: str | None
    kind: str        # broken-manifest, missing-manifest, missing-image, missing-version, orphan-version,
                     # orphan-metadata, unlisted-case, stale-temp, stale-lock, checksum
    message: str
    repairable: bool = False

    def __str__(self) -> str:
        return self.message + (" [check --repair fixes this]" if self.repairable else "")


def check_dataset(folder: DatasetFolder, repair: bool = False, deep: bool = False) -> list[Problem]:
    """Find (and with ``repair`` fix) inconsistencies; returns what was found (module docstring).

    ``deep`` also verifies the SHA-256 of every label version."""
    folder.reload()
    problems: list[Problem] = []
    split_map = folder.info.get("split", {})
    for name in folder.case_names():
        files = version_files(folder.labels_dir(name))
        _stale_temps(folder, name, problems, repair)
        if name not in split_map:
            problems.append(Problem(name, "unlisted-case", f"case {name} has a manifest but no split", True))
        manifest = _manifest_or_problem(folder, name, problems)
        if manifest is None:
            if repair:
                _rebuild_manifest(folder, name, files, problems)
            continue
        _check_listed_versions(folder, name, manifest, problems, deep)
        _check_orphans(folder, name, manifest, files, problems, repair)
    _stale_locks(folder, problems, repair)
    if repair:
        _split_unlisted(folder, [p.case for p in problems if p.kind == "unlisted-case"])
    return problems


# -- the checks --------------------------------------------------------------------------------------------
def _stale_temps(folder: DatasetFolder, name: str, problems: list, repair: bool) -> None:
    labels_dir = folder.labels_dir(name)
    if not labels_dir.is_dir():
        return
    now = time.time()
    for p in labels_dir.iterdir():
        if (p.name.startswith(".tmp-") or p.name.endswith(".tmp")) and now - p.stat().st_mtime > STALE_TMP_S:
            problems.append(Problem(name, "stale-temp", f"case {name}: {p} is left over from an interrupted save",
                                    True))
            if repair:
                p.unlink(missing_ok=True)


def _manifest_or_problem(folder: DatasetFolder, name: str, problems: list) -> dict | None:
    path = folder.manifest_path(name)
    if not path.exists():
        problems.append(Problem(name, "missing-manifest", f"case {name}: manifest {path} is missing", True))
        return None
    try:
        return validate_case_manifest(read_json(path, "case manifest"), path, name)
    except InputError as exc:
        problems.append(Problem(name, "broken-manifest", f"case {name}: {exc}", True))
        return None


def _check_listed_versions(folder: DatasetFolder, name: str, manifest: dict, problems: list, deep: bool) -> None:
    root = folder.root
    if not (root / manifest["image"]).exists():
        problems.append(Problem(name, "missing-image", f"case {name}: image {root / manifest['image']} is missing"))
    for v in manifest["versions"]:
        n, p = v["version"], root / v["file"]
        if not p.exists():
            problems.append(Problem(name, "missing-version", f"case {name}: version {n} ({p}) is missing"
                                    + (" -- it is the current one" if n == manifest.get("current") else "")))
        elif deep and v.get("sha256") and sha256_of(p) != v["sha256"]:
            problems.append(Problem(name, "checksum", f"case {name}: {p} does not match its recorded SHA-256 "
                                    "(changed outside SpineSeg)"))


def _check_orphans(folder: DatasetFolder, name: str, manifest: dict, files: dict, problems: list,
                   repair: bool) -> None:
    listed = {v["version"] for v in manifest["versions"]}
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
        _recover_versions(folder, name, {n: files[n] for n in orphans})


def _stale_locks(folder: DatasetFolder, problems: list, repair: bool) -> None:
    cases_dir = folder.root / CASES_DIR
    for p in cases_dir.glob("*.lock") if cases_dir.is_dir() else []:
        lock = FileLock(p)
        holder = lock.read_holder()
        if holder is not None and lock.is_stale(holder):
            problems.append(Problem(p.stem, "stale-lock", f"{p}: stale lock of {FileLock.describe(holder)}", True))
            if repair:
                lock.break_stale(holder)


def _split_unlisted(folder: DatasetFolder, unlisted: list) -> None:
    if not unlisted:
        return
    fractions, seed = folder.split_settings

    def change(info):
        for c in unlisted:
            info.setdefault("split", {})[c] = hashed_split(c, fractions, seed)
    folder.update_info(change)


# -- the repairs -------------------------------------------------------------------------------------------
def _version_from_sidecar(name: str, n: int, kinds: dict) -> dict:
    """The manifest entry of version ``n`` from its metadata file, or a ``recovered`` one without it."""
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


def _recover_versions(folder: DatasetFolder, name: str, files: dict) -> None:
    with commit_lock(folder.lock_path(name)):
        manifest = folder.read_manifest(name)
        listed = {v["version"] for v in manifest["versions"]}
        for n in sorted(files):
            if n in listed:
                continue
            entry = _version_from_sidecar(name, n, files[n])
            manifest["versions"].append(entry)
            manifest["versions"].sort(key=lambda v: v["version"])
            # the newest save (with metadata) is what the user last meant to keep
            if entry["kind"] != "recovered" and (manifest.get("current") is None or n > manifest["current"]):
                manifest["current"] = n
                manifest["status"] = entry.get("status", "corrected")
        manifest["revision"] = int(manifest["revision"]) + 1
        manifest["updated"] = now_iso()
        write_json_atomic(folder.manifest_path(name), manifest)


def _rebuild_manifest(folder: DatasetFolder, name: str, files: dict, problems: list) -> None:
    images = sorted(p for p in (folder.root / IMAGES_DIR).glob(f"{name}.*")
                    if strip_image_suffix(p.name) and strip_image_suffix(p.name)[0] == name)
    if not images:
        problems.append(Problem(name, "missing-image", f"case {name}: cannot rebuild its manifest, no image "
                                f"{folder.root / IMAGES_DIR / name}.* found"))
        return
    path = folder.manifest_path(name)
    with commit_lock(folder.lock_path(name)):
        if path.exists():
            aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)   # kept for the user, never overwritten by the rebuild
        versions = [_version_from_sidecar(name, n, kinds) for n, kinds in sorted(files.items())
                    if "nii.gz" in kinds]
        usable = [v for v in versions if v["kind"] != "recovered"] or versions
        current = usable[-1] if usable else None
        manifest = new_manifest(name, f"{IMAGES_DIR}/{images[0].name}", folder.modality)
        manifest.update(versions=versions, current=current["version"] if current else None,
                        status=(current.get("status", "corrected") if current else "new"),
                        rebuilt=now_iso())
        if current and current.get("reviewed_by") and manifest["status"] != "reviewed":
            manifest["status"] = "reviewed"
        validate_case_manifest(manifest, path, name)
        write_json_atomic(path, manifest)
