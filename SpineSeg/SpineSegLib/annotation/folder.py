"""The folder of an annotation dataset: where each file lives, ``dataset.json``, and reading a case manifest.

:class:`DatasetFolder` is the part of a dataset that the version writer (:mod:`.versions`) and
the consistency check (:mod:`.consistency`) need; :class:`.store.AnnotationDataset` builds the
case-level API on it. The layout itself is described in :mod:`SpineSegLib.annotation`.

Console use::

    from SpineSegLib.annotation.folder import DatasetFolder
    folder = DatasetFolder("ds")
    folder.case_names(), folder.manifest_path("07"), folder.read_manifest("07")["current"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from SpineSegLib.core.errors import InputError
from SpineSegLib.annotation.locking import commit_lock
from SpineSegLib.annotation.manifest import (
    CASE_FORMAT, FORMAT_VERSION, LABEL_CONVENTION, now_iso, read_json, validate_case_manifest, validate_dataset_info,
    write_json_atomic,
)
from SpineSegLib.annotation.naming import natural_key

DATASET_FILE = "dataset.json"
IMAGES_DIR, LABELS_DIR, CASES_DIR, RUNS_DIR, CACHE_DIR = "images", "labels", "cases", "runs", ".cache"
#: train / validation / test fractions of a dataset that records none
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def new_manifest(name: str, image: str, modality: str | None) -> dict:
    """The manifest of a case without labels (status ``new``)."""
    return {"format": CASE_FORMAT, "format_version": FORMAT_VERSION, "case": name, "image": image,
            "modality": modality, "label_convention": LABEL_CONVENTION, "status": "new", "current": None,
            "revision": 0, "versions": [], "created": now_iso()}


class DatasetFolder:
    """An annotation dataset folder: paths, ``dataset.json`` (``info``) and case manifests."""

    def __init__(self, root):
        self.root = Path(root)
        self.info: dict = {}
        self.reload()

    # -- paths ------------------------------------------------------------------------------------
    @property
    def dataset_file(self) -> Path:
        return self.root / DATASET_FILE

    def manifest_path(self, name: str) -> Path:
        return self.root / CASES_DIR / f"{name}.json"

    def lock_path(self, name: str | None = None) -> Path:
        """The lock of case ``name``, or of ``dataset.json`` when no name is given."""
        return self.root / CASES_DIR / f"{name}.lock" if name else self.root / "dataset.lock"

    def labels_dir(self, name: str) -> Path:
        return self.root / LABELS_DIR / name

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    # -- dataset.json -----------------------------------------------------------------------------
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
    def split_settings(self) -> tuple[tuple, int]:
        """``(train / validation / test fractions, seed)``: cases added later are split by them."""
        return tuple(self.info.get("split_fractions", DEFAULT_FRACTIONS)), int(self.info.get("split_seed", 0))

    @property
    def crop_unlabelled(self) -> str:
        return self.info.get("crop_unlabelled", "none")

    def update_info(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to ``dataset.json`` under the dataset lock (read-modify-write)."""
        with commit_lock(self.lock_path()):
            info = validate_dataset_info(read_json(self.dataset_file, "the dataset file"), self.dataset_file)
            change(info)
            info["revision"] = int(info.get("revision", 0)) + 1
            info["updated"] = now_iso()
            validate_dataset_info(info, self.dataset_file)
            write_json_atomic(self.dataset_file, info)
        self.info = info
        return info

    # -- cases ------------------------------------------------------------------------------------
    def case_names(self) -> list[str]:
        """Every case the dataset knows: those in the split and those with a manifest file."""
        names = set(self.info.get("split", {}))
        folder = self.root / CASES_DIR
        if folder.is_dir():
            names |= {p.name[:-5] for p in folder.glob("*.json") if not p.name.startswith(".")}
        return sorted(names, key=natural_key)

    def read_manifest(self, name: str) -> dict:
        """The validated manifest of case ``name``; :class:`InputError` says how to repair a missing or broken one."""
        path = self.manifest_path(name)
        if not path.exists():
            raise InputError(f"case {name}: its manifest {path} is missing (run 'spineseg dataset check "
                             f"{self.root} --repair' to rebuild it from the label versions)")
        try:
            return validate_case_manifest(read_json(path, "case manifest"), path, name)
        except InputError as exc:
            raise InputError(f"case {name}: {exc}; nothing was changed (run 'spineseg dataset check {self.root} "
                             "--repair' to rebuild it from the label versions; the broken file is kept)") from None
