"""An annotation dataset as the annotator uses it: list, open, save, review and renumber cases.

:func:`open_dataset` gives an :class:`AnnotationDataset` (a :class:`.folder.DatasetFolder` with the
case-level API the CLI and the Slicer panel call). Reading is plain (every call reads the manifests
fresh from disk, so several annotators can share a dataset); each save writes a new label version
as :mod:`.versions` describes (temporary file, lock, hard link, atomic manifest), and :meth:`check`
finds and repairs what a crash left (:mod:`.consistency`). Creating a dataset and adding cases:
:mod:`.creation`; predicting, fine-tuning, prefetching, exporting: the functions of :mod:`.predict`,
:mod:`.finetune`, :mod:`.prefetch` and :mod:`.export`, which take the dataset.

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

import threading
from typing import NamedTuple, Optional

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import sha256_of
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.splits import SPLITS
from SpineSegLib.annotation.conformance import conform_label, exactly_on_grid, image_grid
from SpineSegLib.evaluation.label_maps import label_ids
from SpineSegLib.annotation.consistency import Problem, check_dataset
from SpineSegLib.annotation.conventions import convert_labels
from SpineSegLib.annotation.folder import DatasetFolder
from SpineSegLib.annotation.manifest import LABEL_CONVENTION, STATUSES, CaseEntry, current_user, now_iso
from SpineSegLib.annotation.naming import natural_key
from SpineSegLib.annotation.relabel import RelabelResult, relabel_vertebrae
from SpineSegLib.annotation.versions import (
    check_correction_status, check_import_status, commit_version, mark_current_reviewed, prediction_skip_reason,
    write_label_tmp,
)


class LoadedCase(NamedTuple):
    """What :meth:`AnnotationDataset.load_case` returns (unpacks as ``image, labels, entry``)."""

    image: Image
    labels: Optional[Image]   # the current (or requested) label version; None for a new case
    entry: CaseEntry


class AnnotationDataset(DatasetFolder):
    """An annotation dataset folder (see :mod:`SpineSegLib.annotation`). Use :func:`open_dataset`."""

    def __init__(self, root):
        self._local = threading.local()
        super().__init__(root)

    @property
    def last_save(self) -> dict | None:
        """The version entry this thread saved last (or ``{"skipped": reason}``); per thread, so a
        prefetch thread and the user interface never see each other's."""
        return getattr(self._local, "last_save", None)

    @last_save.setter
    def last_save(self, value) -> None:
        self._local.last_save = value

    def set_split(self, name: str, split: str) -> None:
        if split not in SPLITS:
            raise InputError(f"split {split!r}: use one of {', '.join(SPLITS)}")
        self.case(name)

        def change(info):
            info.setdefault("split", {})[name] = split
        self.update_info(change)

    # -- reading cases ----------------------------------------------------------------------------
    def _entry(self, name: str, split_map: dict) -> CaseEntry:
        try:
            manifest = self.read_manifest(name)
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
        later = [c for c in cases if natural_key(c) > natural_key(str(after))]
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
                mapped = exactly_on_grid(labels, image)
                if mapped is None:
                    raise InputError(f"case {name}: {path} no longer lies on the image's grid "
                                     "(was the image replaced?)")
                labels = mapped
        return LoadedCase(image, labels, entry)

    # -- writing label versions --------------------------------------------------------------------
    def _save(self, name: str, label, fields: dict, status: str, eligible=None) -> Optional[dict]:
        """Conform ``label``, write it and commit it as a version (:mod:`.versions`); None when skipped."""
        entry = self.case(name)
        reference = image_grid(self.root / entry.image)
        label, warnings = conform_label(label, reference, f"the label map for case {name}")
        present = label_ids(label.array)
        tmp = write_label_tmp(label, self.labels_dir(name))
        fields = {"created": now_iso(), "label_convention": LABEL_CONVENTION, "labels": present,
                  "voxels": int(np.count_nonzero(label.array)), "sha256": sha256_of(tmp), **fields}
        fields["warnings"] = list(fields.get("warnings", [])) + warnings
        saved, skipped = commit_version(self, name, tmp, fields, status, eligible)
        self.last_save = saved if saved is not None else {"skipped": skipped}
        return saved

    def save_correction(self, name: str, label_image, user: str | None = None, based_on: int | None = None,
                        note: str = "", status: str = "corrected") -> int:
        """Save an annotator's label map for case ``name`` as a new version; returns its number.

        ``label_image``: an :class:`Image` on the case image's grid (permuted / flipped axes are
        mapped exactly; another grid is resampled when the fields of view overlap substantially, else
        refused: :mod:`SpineSegLib.core.grids`) or an array of the image's shape. ``user``: who
        corrected it (default: the OS user). ``based_on``: the version the annotator started from
        (a warning is recorded when another version was saved in between). ``status``:
        ``corrected`` (default) or ``reviewed`` (a reviewer's own edit).
        """
        check_correction_status(status)
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
            return prediction_skip_reason(manifest, name, model, redo)

        fields = {"kind": "prediction", "status": "predicted", "user": current_user(user), "model": dict(model),
                  "settings": dict(settings or {}), "instances": list(instances or []), "warnings": list(warnings)}
        entry = self._save(name, label_image, fields, "predicted", eligible)
        return entry["version"] if entry else None

    def import_labels(self, name: str, label_image, source: str, convention: str = "verse",
                      status: str = "corrected", user: str | None = None) -> int:
        """Import an existing label map (reference labels) as a version with ``status``."""
        check_import_status(status)
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
        return mark_current_reviewed(self, name, user, version)

    def relabel(self, name: str, vertebra, as_name, user: str | None = None, only: bool = False,
                allow_t13: bool = False, allow_l6: bool = False) -> tuple[Optional[int], RelabelResult]:
        """Renumber the vertebrae of the current version (:mod:`.relabel`) and save the result as a
        new version (status ``corrected``). Returns ``(version or None if nothing changes, RelabelResult)``."""
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
        """Find (and with ``repair`` fix) inconsistencies (:func:`.consistency.check_dataset`).

        ``deep`` also verifies the SHA-256 of every label version."""
        return check_dataset(self, repair=repair, deep=deep)


def open_dataset(root) -> AnnotationDataset:
    """Open an annotation dataset folder (made by :func:`.creation.create_dataset` / ``spineseg dataset init``)."""
    return AnnotationDataset(root)
