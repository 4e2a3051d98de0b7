"""The files of an annotation dataset: ``dataset.json``, ``cases/<case>.json`` and version sidecars.

All three are plain JSON, written atomically (``core.files.replaced_atomically``: a temporary file
in the same folder, flushed to disk, then renamed over the old one), so a reader sees either the
old or the new content, never a half-written file. Invalid content (a hand edit gone wrong) raises :class:`InputError` naming the
file, the line and the column. The layout itself is described in :mod:`SpineSegLib.annotation`.

Console use::

    from SpineSegLib.annotation.manifest import read_json, CaseEntry
    entry = CaseEntry(read_json("ds/cases/07.json", "case manifest"), split="train")
    entry.status, entry.current, entry.current_version["user"]
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import fsync_path, replaced_atomically
from SpineSegLib.core.splits import SPLITS
from SpineSegLib.evaluation.reports import plain

DATASET_FORMAT = "spineseg-annotation-dataset"
CASE_FORMAT = "spineseg-annotation-case"
VERSION_FORMAT = "spineseg-annotation-version"
FORMAT_VERSION = 1

#: case status, in workflow order
STATUSES = ("new", "predicted", "corrected", "reviewed")
#: the label convention of every stored label map (see SpineSegLib.core.labels)
LABEL_CONVENTION = "verse"
LABEL_CONVENTION_TEXT = ("VerSe ids (SpineSegLib.core.labels): 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum/S1, "
                         "28 T13; 100 + id = disc below that vertebra, 200 + id = its endplates, 61 = spinal canal")

CASE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VERSION_FILE_RE = re.compile(r"^v(\d{3,})\.(nii\.gz|json)$")


def version_stem(number: int) -> str:
    """``v003`` for version 3 (at least three digits; more when needed)."""
    return f"v{int(number):03d}"


def now_iso() -> str:
    """The current time, UTC, ISO 8601 to the second (``2025-11-21T16:20:03Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def current_user(user: str | None = None) -> str:
    """``user`` if given, else the operating-system user name (``"unknown"`` when there is none)."""
    if user is not None and str(user).strip():
        return str(user).strip()
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no login name (containers, some Windows services)
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


# -- reading and writing -------------------------------------------------------------------------
def read_json(path, what: str):
    """Parse the JSON file ``path``; :class:`InputError` names the file, line and column when it is broken."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} is missing") from None
    except OSError as exc:
        raise InputError(f"{path}: {what} cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None


def write_json_atomic(path, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (replaces ``path``), then flush the folder."""
    path = Path(path)
    with replaced_atomically(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(plain(data), indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
    fsync_path(path.parent)
    return path


# -- validation ----------------------------------------------------------------------------------
def _require(cond: bool, path, message: str) -> None:
    if not cond:
        raise InputError(f"{path}: {message}")


def _require_format(data: dict, path, fmt: str, what: str) -> None:
    _require(data.get("format") == fmt, path, f"not {what} (format {data.get('format')!r}, expected {fmt!r})")
    version = data.get("format_version")
    _require(isinstance(version, int), path, "format_version must be an integer")
    _require(version <= FORMAT_VERSION, path,
             f"written by a newer SpineSeg (format version {version}, this one reads {FORMAT_VERSION}); please update")


def validate_dataset_info(data, path) -> dict:
    """Check the structure of ``dataset.json``; returns it. Raises :class:`InputError` naming the problem."""
    _require(isinstance(data, dict), path, "dataset.json must hold a JSON object")
    _require_format(data, path, DATASET_FORMAT, "a SpineSeg annotation dataset file")
    split = data.get("split", {})
    _require(isinstance(split, dict), path, "'split' must map case names to train / validation / test")
    for case, s in split.items():
        _require(s in SPLITS, path, f"case {case!r} has split {s!r} (use one of {', '.join(SPLITS)})")
    _require(isinstance(data.get("models", []), list), path, "'models' must be a list")
    return data


def validate_case_manifest(data, path, name: str | None = None) -> dict:
    """Check the structure of a case manifest; returns it. Raises :class:`InputError` naming the problem."""
    _require(isinstance(data, dict), path, "a case manifest must hold a JSON object")
    _require_format(data, path, CASE_FORMAT, "a SpineSeg case manifest")
    _require(isinstance(data.get("case"), str), path, "'case' (the case name) is missing")
    if name is not None:
        _require(data["case"] == name, path, f"names case {data['case']!r} but the file is for case {name!r}")
    _require(isinstance(data.get("image"), str), path, "'image' (the image file) is missing")
    _require(data.get("status") in STATUSES, path,
             f"status {data.get('status')!r} is not one of {', '.join(STATUSES)}")
    _require(isinstance(data.get("revision"), int), path, "'revision' must be an integer")
    versions = data.get("versions")
    _require(isinstance(versions, list), path, "'versions' must be a list")
    numbers = []
    for v in versions:
        _require(isinstance(v, dict) and isinstance(v.get("version"), int) and isinstance(v.get("file"), str), path,
                 "every entry of 'versions' needs an integer 'version' and a 'file'")
        numbers.append(v["version"])
    _require(len(numbers) == len(set(numbers)), path, "a version number occurs twice in 'versions'")
    current = data.get("current")
    _require(current is None or current in numbers, path, f"current version {current!r} is not in 'versions'")
    _require((current is None) == (data["status"] == "new"), path,
             "status 'new' goes with no current version, and every other status with one")
    return data


# -- the in-memory view of a case ------------------------------------------------------------------
@dataclass
class CaseEntry:
    """One case: its manifest (``cases/<case>.json``) and its split (from ``dataset.json``).

    ``problem`` is set (and ``manifest`` None) when the manifest could not be read.
    """

    name: str
    manifest: dict | None
    split: str | None = None
    problem: str | None = None
    image_missing: bool = False

    @property
    def status(self) -> str:
        return self.manifest["status"] if self.manifest else "broken"

    @property
    def current(self) -> int | None:
        return self.manifest.get("current") if self.manifest else None

    @property
    def revision(self) -> int:
        return self.manifest["revision"] if self.manifest else -1

    @property
    def versions(self) -> list:
        return list(self.manifest["versions"]) if self.manifest else []

    @property
    def image(self) -> str | None:
        return self.manifest["image"] if self.manifest else None

    def version(self, number: int) -> dict:
        for v in self.versions:
            if v["version"] == number:
                return v
        raise InputError(f"case {self.name}: there is no version {number} "
                         f"(versions: {', '.join(str(v['version']) for v in self.versions) or 'none'})")

    @property
    def current_version(self) -> dict | None:
        return self.version(self.current) if self.current is not None else None

    @property
    def last_prediction(self) -> dict | None:
        """The most recent version written by a model (what the current labels started from)."""
        preds = [v for v in self.versions if v.get("model")]
        return max(preds, key=lambda v: v["version"]) if preds else None

    def row(self) -> dict:
        """The ``spineseg dataset status`` table row."""
        cur = self.current_version or {}
        pred = self.last_prediction or {}
        model = pred.get("model") or {}
        return {
            "case": self.name,
            "status": self.status if not self.image_missing else f"{self.status} (image missing)",
            "version": cur.get("version", ""),
            "model": f"{model.get('name', '')} {str(model.get('sha256', ''))[:8]}".strip(),
            "saved_by": cur.get("user", "") or "",
            "date": cur.get("created", "") or "",
            "split": self.split or "",
        }
