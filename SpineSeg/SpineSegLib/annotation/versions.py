"""Label versions: how one is written, numbered and linked into place, and the status it gives its case.

How a label version is saved (``save_correction``, ``save_prediction``, ``import_labels``, ``relabel``)
-----------------------------------------------------------------------------------------------------
1. The label map is checked against the case's image grid (:mod:`.conformance`) and written to a
   temporary file next to the versions (:func:`write_label_tmp`; the slow part, no lock held).
2. :func:`commit_version`, under the case's lock file (``cases/<case>.lock``, :func:`.locking.commit_lock`):
   the manifest is re-read, the next free version number ``n`` is taken (above every number in the
   manifest AND every ``vNNN.*`` file on disk, so nothing is ever reused), and
   a. the version's metadata is written to ``labels/<case>/vNNN.json`` (atomically),
   b. the label file is moved to ``labels/<case>/vNNN.nii.gz`` with a hard link, which fails
      rather than replace an existing file (a plain rename where links are unsupported),
   c. the manifest, with the new version appended, ``current = n`` and its ``revision`` counter
      increased, replaces ``cases/<case>.json`` atomically.
   Ctrl-C during (2) is held back until the manifest is written.

A crash (or kill) before (2b) leaves the previous state; between (2b) and (2c) it leaves a
complete version file with its metadata but no manifest entry: the consistency check
(:mod:`.consistency`) reports it and ``check(repair=True)`` adds it back, as the current version
when it is newer than the manifest's current one. Two saves of the same case serialise on the
lock: both become versions, the later one is current, and the later one records in its
``warnings`` that it replaced a version the annotator had not seen (``based_on``).

Status
------
``new`` (no labels) -> ``predicted`` (the current version is a model's) -> ``corrected`` (saved by
a person) -> ``reviewed`` (a reviewer accepted the current version). A correction gets
``corrected`` (or ``reviewed``: a reviewer's own edit); a new save after a review makes the case
``corrected`` again; imported labels get the status the import names. A prediction is saved only
while the case is ``new`` or ``predicted`` by another model (:func:`prediction_skip_reason`):
predictions never replace :data:`ANNOTATED` labels.

Console use::

    from SpineSegLib.annotation.folder import DatasetFolder
    from SpineSegLib.annotation.versions import commit_version, write_label_tmp
    folder = DatasetFolder("ds")
    tmp = write_label_tmp(label_image, folder.labels_dir("07"))
    entry, skipped = commit_version(folder, "07", tmp, {"kind": "correction", "user": "anna"}, "corrected")
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Callable, Optional

import SimpleITK as sitk

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import checked_write, fsync_path, set_default_permissions, write_failure, write_guard
from SpineSegLib.core.image import Image
from SpineSegLib.annotation.faults import fault
from SpineSegLib.annotation.folder import LABELS_DIR, DatasetFolder
from SpineSegLib.annotation.locking import commit_lock
from SpineSegLib.annotation.manifest import (
    FORMAT_VERSION, VERSION_FILE_RE, VERSION_FORMAT, current_user, now_iso, version_stem, write_json_atomic,
)

#: statuses whose labels a person has checked (training data, exports)
ANNOTATED = ("corrected", "reviewed")
#: statuses a correction may give
CORRECTION_STATUSES = ("corrected", "reviewed")
#: statuses imported labels may get
IMPORT_STATUSES = ANNOTATED + ("predicted",)


# -- status ------------------------------------------------------------------------------------------
def check_correction_status(status: str) -> None:
    if status not in CORRECTION_STATUSES:
        raise InputError(f"a correction gets status 'corrected' or 'reviewed', not {status!r}")


def check_import_status(status: str) -> None:
    if status not in IMPORT_STATUSES:
        raise InputError(f"imported labels get status corrected, reviewed or predicted, not {status!r}")


def prediction_skip_reason(manifest: dict, name: str, model: dict, redo: bool = False) -> Optional[str]:
    """Why case ``name`` (its ``manifest``) must not get a prediction by ``model`` now; None: it may."""
    if manifest["status"] in ANNOTATED:
        return f"case {name} is {manifest['status']}; predictions never replace annotations"
    if not redo and manifest["status"] == "predicted":
        cur = next(v for v in manifest["versions"] if v["version"] == manifest["current"])
        if (cur.get("model") or {}).get("sha256") == model.get("sha256"):
            return f"case {name} was already predicted by this model"
    return None


def mark_current_reviewed(folder: DatasetFolder, name: str, user: str | None = None,
                          version: int | None = None) -> int:
    """Mark the current version of case ``name`` (``version`` must be it, if given) as reviewed by ``user``."""
    user = current_user(user)
    with commit_lock(folder.lock_path(name)):
        manifest = folder.read_manifest(name)
        current = manifest.get("current")
        if current is None:
            raise InputError(f"case {name} has no labels to review")
        if version is not None and version != current:
            raise InputError(f"case {name}: version {version} is not the current one ({current}); "
                             "only the current version can be marked reviewed")
        entry = next(v for v in manifest["versions"] if v["version"] == current)
        entry.update(reviewed_by=user, reviewed_at=now_iso())
        write_json_atomic(folder.labels_dir(name) / f"{version_stem(current)}.json", sidecar(name, entry))
        manifest["status"] = "reviewed"
        manifest["revision"] = int(manifest["revision"]) + 1
        manifest["updated"] = entry["reviewed_at"]
        write_json_atomic(folder.manifest_path(name), manifest)
    return current


# -- version files -----------------------------------------------------------------------------------
def sidecar(name: str, entry: dict) -> dict:
    """The content of ``labels/<case>/vNNN.json``: the version's manifest entry, self-describing."""
    return {"format": VERSION_FORMAT, "format_version": FORMAT_VERSION, "case": name, **entry}


def write_label_tmp(label: Image, folder: Path) -> Path:
    """Write ``label`` to a new temporary ``.nii.gz`` in ``folder`` (flushed to disk); a failed write
    (a full disk, which ITK does not report, included) raises WriteError and leaves no file."""
    tmp = folder / f".tmp-{uuid.uuid4().hex}.nii.gz"
    try:
        with write_guard(folder):
            folder.mkdir(parents=True, exist_ok=True)
        with checked_write(folder, tmp):
            sitk.WriteImage(label.to_sitk(), str(tmp), True)
        set_default_permissions(tmp)
        fsync_path(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


#: why os.link fails on a file system without hard links (FAT, some network shares)
NO_HARD_LINKS = frozenset(getattr(errno, n) for n in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK", "ENOSYS")
                          if hasattr(errno, n))


def place_no_clobber(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; never replaces an existing ``final`` (raises FileExistsError)."""
    # not core.files.replaced_atomically: that replaces, and a version file must never be replaced
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:     # a full or read-only disk: no use trying a rename
            raise write_failure(final, exc) from exc
        if final.exists():
            raise FileExistsError(str(final)) from None
        with write_guard(final):
            os.replace(tmp, final)
        return
    os.remove(tmp)


def version_files(labels_dir: Path) -> dict[int, dict[str, Path]]:
    """``{n: {"nii.gz": path, "json": path}}``: the version files on disk (either may be missing)."""
    files: dict = {}
    if labels_dir.is_dir():
        for p in labels_dir.iterdir():
            m = VERSION_FILE_RE.match(p.name)
            if m:
                files.setdefault(int(m.group(1)), {})[m.group(2)] = p
    return files


def next_number(labels_dir: Path, manifest: dict) -> int:
    """The next free version number: above every one in ``manifest`` and every ``vNNN.*`` file."""
    numbers = [v["version"] for v in manifest.get("versions", [])] + list(version_files(labels_dir))
    return max(numbers, default=0) + 1


# -- the commit ----------------------------------------------------------------------------------------
def _stale_base_warning(entry: dict, manifest: dict) -> None:
    based_on, current = entry.get("based_on"), manifest.get("current")
    if based_on is not None and current is not None and based_on != current:
        newer = next((v for v in manifest["versions"] if v["version"] == current), {})
        entry.setdefault("warnings", []).append(
            f"saved on top of version {current} ({newer.get('kind', '?')} by {newer.get('user', '?')} at "
            f"{newer.get('created', '?')}), not version {based_on} it was started from; both are kept")


def _place_version(folder: DatasetFolder, name: str, tmp: Path, entry: dict, manifest: dict) -> int:
    """Steps (2a) and (2b): metadata, then the label file under the next free number; returns it."""
    labels_dir = folder.labels_dir(name)
    while True:
        number = next_number(labels_dir, manifest)
        stem = version_stem(number)
        final = labels_dir / f"{stem}.nii.gz"
        entry.update(version=number, file=f"{LABELS_DIR}/{name}/{final.name}")
        write_json_atomic(labels_dir / f"{stem}.json", sidecar(name, entry))
        fault("sidecar-written")
        try:
            place_no_clobber(tmp, final)
            return number
        except FileExistsError:   # a file appeared under that number (a writer ignoring the lock)
            continue


def commit_version(folder: DatasetFolder, name: str, tmp: Path, fields: dict, status: str,
                   eligible: Optional[Callable[[dict], Optional[str]]] = None) -> tuple[Optional[dict], Optional[str]]:
    """Steps (2a)-(2c) of the module docstring for the label file ``tmp`` (removed in any case).
    Returns ``(version entry, None)``, or ``(None, reason)`` when ``eligible(manifest)`` gives a
    reason not to save."""
    try:
        with commit_lock(folder.lock_path(name)):
            manifest = folder.read_manifest(name)
            if eligible is not None:
                reason = eligible(manifest)
                if reason:
                    return None, reason
            entry = dict(fields)
            entry["created"] = now_iso()      # under the lock: creation times follow the version order
            _stale_base_warning(entry, manifest)
            number = _place_version(folder, name, tmp, entry, manifest)
            fsync_path(folder.labels_dir(name))
            fault("label-written")
            manifest["versions"].append(entry)
            manifest["current"] = number
            manifest["status"] = status
            manifest["revision"] = int(manifest["revision"]) + 1
            manifest["updated"] = entry["created"]
            write_json_atomic(folder.manifest_path(name), manifest)
            fault("manifest-written")
    finally:
        if tmp.exists():
            tmp.unlink()
    return entry, None
