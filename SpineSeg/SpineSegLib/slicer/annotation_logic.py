"""The annotation-correction panel's logic: an annotation dataset (:mod:`SpineSegLib.annotation`) worked case by
case in a MRML scene. Qt-free: it takes the scene as a parameter and runs in 3D Slicer and under ``slicer-core``
(the widget, :mod:`.annotation_widget`, only collects clicks and shows what this returns).

What a case looks like in the scene: a scalar volume named after the case and a segmentation ``<case> labels``
with one named, coloured, terminology-coded segment per vertebra (:mod:`.segmentations`; the vertebrae a
prediction flagged as cut by the field of view are drawn "flagged", half opaque). The annotator edits the
segments (Segment Editor); **Save** turns the segmentation back into a label map on the image's grid with the
stable VerSe ids and stores it as a new version (``ds.save_correction``, status ``corrected``); **Relabel**
("this is T12", the rest follows) and **Review** save what the annotator has not saved yet first, then call the
dataset (``ds.relabel`` / ``ds.mark_reviewed``), and the segmentation is rebuilt from the new version. Loading a
case happens in one :func:`~SpineSegLib.slicer.scene.scene_transaction`: a failure leaves the scene as it was.

**Next** takes the next case to annotate (``new`` or ``predicted``, in name order after the current one) and,
with a model chosen -- or the classical method (:meth:`AnnotationLogic.set_method`: model-free, CT only) --,
predicts the cases after it in a child process (:mod:`.annotation_prefetch`: ``spineseg dataset predict --cases``,
``--method classical``), so that the next one is ready when the annotator gets there. The child refuses MR cases for
the classical method with the command line's message (:meth:`AnnotationLogic.prefetch_state`).
**Fine-tune** runs in a child process: :mod:`.annotation_finetune`.

Console use (Slicer's Python console; under ``slicer-core`` pass ``new_scene()``)::

    from SpineSegLib.slicer.annotation_logic import AnnotationLogic
    logic = AnnotationLogic(slicer.mrmlScene, user="anna")
    logic.open("/data/my-dataset")
    logic.cases()                     # [{'case': '07', 'status': 'predicted', 'split': 'train', ...}]
    logic.set_model("iis-mr.pt")      # predictions for the next cases, in the background
    logic.set_method("classical")     # ... or model-free (a CT dataset); set_method("model") goes back to the model
    case = logic.next_case()          # loads it: case.volume, case.segmentation
    ...                               # edit the segments
    logic.save()                      # -> 3 (a new version, status corrected)
    logic.relabel("L1", "T12")        # the rest of the sequence follows
    logic.review(user="ben")
    task = logic.start_finetune("iis-mr.pt", "iis-mr-ft1.pt", iterations=500)   # task.wait() or a GUI timer
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import sha256_of
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE, name_of
from SpineSegLib.annotation.predict import CLASSICAL, METHODS, MODEL, classical_info
from SpineSegLib.annotation.store import AnnotationDataset, open_dataset
from SpineSegLib.slicer import process as background
from SpineSegLib.slicer.annotation_prefetch import PrefetchProcess, plan_cases
from SpineSegLib.slicer.scene import place_next_to, remove_nodes, scene_transaction
from SpineSegLib.slicer.segmentations import labelmap_to_segmentation, segment_labels, segmentation_to_image
from SpineSegLib.slicer.volumes import image_to_volume

#: the statuses Next offers, in the order the annotator works
TO_ANNOTATE = ("predicted", "new")
#: the columns of :meth:`AnnotationLogic.cases` (key, heading)
CASE_COLUMNS = (("case", "Case"), ("status", "Status"), ("split", "Split"), ("version", "Version"),
                ("versions", "Versions"), ("saved_by", "Saved by"), ("model", "Model"))


@dataclass
class CaseInScene:
    """The case the panel shows: its nodes and the label version they were loaded from."""

    name: str
    volume: object                  # vtkMRMLScalarVolumeNode
    segmentation: object            # vtkMRMLSegmentationNode
    based_on: Optional[int]         # the version loaded (None: a new case without labels)
    labels: Image                   # that version's label map (zeros for a new case), to tell unsaved edits
    status: str = ""


class AnnotationLogic:
    """An annotation dataset worked case by case in ``scene`` (module docstring: console use).

    ``user``: the annotator's name recorded with every version (default: the OS user); ``prefetch_count``:
    how many cases after the current one are predicted in the background when a model is set (or the classical
    method chosen); ``device`` and ``threads``: for those predictions (one CPU thread leaves the others to Slicer).
    """

    def __init__(self, scene=None, user: Optional[str] = None, prefetch_count: int = 2, device: str = "auto",
                 threads: Optional[int] = 1, python: Optional[str] = None):
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        self.scene = scene
        self.user = user or None
        self.prefetch_count = int(prefetch_count)
        self.device, self.threads, self.python = device, threads, python
        self.dataset: Optional[AnnotationDataset] = None
        self.case: Optional[CaseInScene] = None
        self.model: Optional[Path] = None
        self.method: str = MODEL             # what predicts: the model, or the classical method (no model)
        self._prefetch: Optional[PrefetchProcess] = None
        self._model_sha: Optional[str] = None
        self._attempted: set = set()        # cases handed to a background prediction (never twice per model)
        self._failure = ""                   # the message of the last background prediction that failed

    # -- the dataset ---------------------------------------------------------------------------------------
    def open(self, path, discard: bool = False) -> AnnotationDataset:
        """Open the dataset folder ``path``, closing the case shown (refused with unsaved edits unless ``discard``)."""
        if not str(path or "").strip():
            raise InputError("no dataset folder chosen: pick a folder made by 'spineseg dataset init'")
        self._check_no_edits(discard)
        dataset = open_dataset(Path(path))
        self.close_case()
        self.stop_prefetch()
        self.dataset = dataset
        return dataset

    def _ds(self) -> AnnotationDataset:
        if self.dataset is None:
            raise InputError("no dataset open: choose a dataset folder first")
        return self.dataset

    def cases(self, status=None, split=None) -> list[dict]:
        """One row per case (keys of :data:`CASE_COLUMNS`), read fresh from disk."""
        rows = []
        for e in self._ds().list_cases(status=status, split=split):
            if e.problem:
                rows.append({"case": e.name, "status": "broken", "split": e.split or "", "version": "",
                             "versions": "", "saved_by": "", "model": "", "problem": e.problem})
                continue
            row = e.row()
            row.update(split=e.split or "", versions=len(e.versions))
            rows.append(row)
        return rows

    def counts(self) -> dict:
        """Cases per status (``{"new": 3, "predicted": 5, ...}``)."""
        return self._ds().counts()

    def summary(self) -> str:
        """One line: the dataset's name, modality and case counts."""
        ds = self._ds()
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        return f"{ds.name} ({(ds.modality or '?').upper()}): {counts or 'no cases'}"

    # -- predictions for the next cases --------------------------------------------------------------------
    def set_model(self, model_path) -> None:
        """The model that predicts the cases ahead with the method "model" (None: no predictions) and that
        fine-tuning starts from; a running prefetch of that model is stopped."""
        path = Path(model_path) if model_path else None
        if path is not None and not path.is_file():
            raise InputError(f"model weights not found: {path}")
        if path != self.model:
            self.model = path
            if self.method == MODEL:
                self._predictor_changed()

    def set_method(self, method: str) -> None:
        """What predicts the cases ahead: "model" (the model of :meth:`set_model`) or "classical" (model-free
        vertebrae, CT only; recorded in place of a model, :func:`~SpineSegLib.annotation.predict.classical_info`)."""
        if method not in METHODS:
            raise InputError(f"unknown prediction method {method!r} (use {' or '.join(METHODS)})")
        if method != self.method:
            self.method = method
            self._predictor_changed()

    def _predictor_changed(self) -> None:
        """A new model or method: stop its predictions, forget what was tried, take the new identity."""
        self.stop_prefetch()
        self._attempted, self._failure = set(), ""
        if self.method == CLASSICAL:
            self._model_sha = classical_info()["sha256"]
        else:
            self._model_sha = sha256_of(self.model) if self.model is not None else None

    def predicts(self) -> bool:
        """True when the cases ahead are predicted (the classical method, or a model chosen)."""
        return self.method == CLASSICAL or self.model is not None

    def start_prefetch(self, after: Optional[str] = None, inclusive: bool = False):
        """Predict the ``prefetch_count`` cases after ``after`` that need it in a child process
        (:mod:`.annotation_prefetch`; none without a model, or while one still runs); returns the
        :class:`~SpineSegLib.slicer.annotation_prefetch.PrefetchProcess` or None."""
        if not self.predicts() or self.prefetch_count < 1 or self.dataset is None:
            return None
        if self._prefetch is not None and self._prefetch.poll() == background.RUNNING:
            return None
        self.prefetch_failure()                  # a failure of the one it replaces stays told
        cases = [c for c in plan_cases(self.dataset, self.prefetch_count, after, self._model_sha, inclusive)
                 if c not in self._attempted]
        if not cases:
            return None
        self._attempted |= set(cases)
        self._prefetch = PrefetchProcess(self.dataset, self.model, cases, device=self.device, threads=self.threads,
                                         python=self.python, method=self.method).start()
        return self._prefetch

    def prediction_pending(self, name: str) -> bool:
        """True while case ``name`` waits for its background prediction (Next waits for it): it is being
        predicted, or it needs one, which starts as soon as no other prediction runs. A case whose prediction
        was tried once is not waited for again."""
        if not self.predicts() or self.dataset is None:
            return False
        if self._prefetch is not None and self._prefetch.pending(name):
            return True
        if name in self._attempted:
            return False
        return self.start_prefetch(after=name, inclusive=True) is not None or \
            (self._prefetch is not None and self._prefetch.running)

    def prefetch_state(self) -> str:
        """What the background predictions are doing, in words ('' when nothing runs)."""
        if self._prefetch is None:
            return ""
        self._prefetch.poll()
        return self._prefetch.state()

    def prefetch_failure(self) -> str:
        """The message of the last background prediction that failed since the model or method was chosen ('' when
        none did): for the classical method on MR cases, the refusal ``spineseg dataset predict --method classical``
        gives."""
        if self._prefetch is not None and self._prefetch.poll() == background.FAILED:
            self._failure = self._prefetch.task.message
        return self._failure

    def stop_prefetch(self) -> None:
        """Kill the background predictions (what they saved stays saved)."""
        if self._prefetch is not None:
            self._prefetch.cancel()
        self._prefetch = None

    # -- cases in the scene --------------------------------------------------------------------------------
    def next_case_name(self, status=TO_ANNOTATE) -> Optional[str]:
        """The case Next would load: the next one whose status is in ``status`` after the current one (wrapping
        round); None when there is none."""
        return self._ds().next_case(status=status, after=self.case.name if self.case is not None else None)

    def next_case(self, status=TO_ANNOTATE, discard: bool = False, wait: float = 0.0) -> Optional[CaseInScene]:
        """Load the next case (:meth:`next_case_name`), waiting up to ``wait`` seconds for its background
        prediction, and start predicting the ones after it; None when no case is left. Refuses to drop unsaved
        edits unless ``discard``."""
        self._check_no_edits(discard)
        name = self.next_case_name(status)
        if name is None:
            return None
        deadline = time.monotonic() + wait
        while self.prediction_pending(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        case = self.load_case(name, discard=True)
        self.start_prefetch(after=name)
        return case

    def load_case(self, name: str, version: Optional[int] = None, discard: bool = False) -> CaseInScene:
        """Show case ``name`` (its current labels, or ``version``): a volume and an editable segmentation. The
        case shown before is removed; a failure leaves the scene as it was."""
        self._check_no_edits(discard)
        ds = self._ds()
        image, labels, entry = ds.load_case(name, version)
        based_on = entry.current if version is None else version
        version_entry = entry.version(based_on) if based_on is not None else None
        with scene_transaction(self.scene):
            volume = image_to_volume(self.scene, image, name)
            segmentation = self._segmentation(name, labels, volume, version_entry)
        self.close_case()
        blank = labels if labels is not None else image.with_array(np.zeros(image.shape, np.uint8))
        self.case = CaseInScene(name, volume, segmentation, based_on, blank, entry.status)
        return self.case

    def _segmentation(self, name: str, labels: Optional[Image], volume, version_entry: Optional[dict]):
        """The editable segmentation of a case: one segment per label (an empty segmentation for a new case)."""
        seg_name = f"{name} labels"
        if labels is None or not np.any(labels.array):
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", seg_name)
            node.CreateDefaultDisplayNodes()
            node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            place_next_to(node, volume)
            return node
        present = {int(v) for v in np.unique(labels.array) if v}
        flags = {int(r["id"]): {"complete": bool(r["complete"])} for r in (version_entry or {}).get("instances") or []
                 if r.get("in_output", True) and int(r.get("id", 0)) in present and "complete" in r}
        return labelmap_to_segmentation(self.scene, labels, reference_volume=volume, name=seg_name,
                                        vertebrae=flags or None)

    def close_case(self, discard: bool = True) -> None:
        """Remove the case's nodes from the scene (refused with unsaved edits unless ``discard``)."""
        if self.case is None:
            return
        self._check_no_edits(discard)
        remove_nodes(self.case.segmentation, self.case.volume)
        self.case = None

    def _current(self) -> CaseInScene:
        if self.case is None:
            raise InputError("no case loaded: press Next or pick a case")
        return self.case

    def edited_labels(self) -> Image:
        """The segmentation as a label map with VerSe ids on the case image's grid (what Save stores)."""
        case = self._current()
        if _segment_count(case.segmentation) == 0:
            return case.labels.with_array(np.zeros(case.labels.shape, np.uint8))
        return segmentation_to_image(case.segmentation, reference_volume=case.volume)

    def has_unsaved_edits(self) -> bool:
        """True when the segmentation differs from the version it was loaded from (or cannot be exported)."""
        if self.case is None:
            return False
        try:
            edited = self.edited_labels()
        except Exception:          # a segment without a vertebra name: certainly an edit
            return True
        return not np.array_equal(np.asarray(edited.array), np.asarray(self.case.labels.array))

    def _check_no_edits(self, discard: bool) -> None:
        if not discard and self.has_unsaved_edits():
            raise InputError(f"case {self.case.name} has unsaved edits: save them, or discard them")

    # -- saving ----------------------------------------------------------------------------------------------
    def save(self, user: Optional[str] = None, note: str = "", reviewed: bool = False) -> int:
        """Store the segmentation as a new version of the case (status ``corrected``; ``reviewed``: a
        reviewer's own edit); returns the version number."""
        case = self._current()
        labels = self.edited_labels()
        version = self._ds().save_correction(case.name, labels, user=user or self.user, based_on=case.based_on,
                                             note=note, status="reviewed" if reviewed else "corrected")
        case.based_on, case.labels = version, labels
        case.status = self._ds().case(case.name).status
        return version

    def relabel(self, vertebra, as_name, user: Optional[str] = None, only: bool = False, allow_t13: bool = False,
                allow_l6: bool = False):
        """"``vertebra`` is ``as_name``": unsaved edits are saved first, then the current version is renumbered
        (``ds.relabel``: the rest of the sequence follows, or ``only`` this one) and saved as a new version, and
        the segmentation is rebuilt from it. Returns ``(version or None when nothing changes, RelabelResult)``."""
        case = self._current()
        if self.has_unsaved_edits():
            self.save(user=user, note="saved before renumbering")
        version, result = self._ds().relabel(case.name, vertebra, as_name, user=user or self.user, only=only,
                                             allow_t13=allow_t13, allow_l6=allow_l6)
        if version is not None:
            self.refresh()
        return version, result

    def review(self, user: Optional[str] = None) -> int:
        """Mark the case reviewed: unsaved edits are saved as the reviewer's own version (status ``reviewed``),
        else the current version is marked. Returns the version now reviewed."""
        case = self._current()
        if self.has_unsaved_edits():
            return self.save(user=user, reviewed=True)
        version = self._ds().mark_reviewed(case.name, user=user or self.user, version=case.based_on)
        case.status = "reviewed"
        return version

    def refresh(self) -> CaseInScene:
        """Rebuild the segmentation from the case's current version on disk (the volume stays); the old
        segmentation is removed only once the new one is complete."""
        case = self._current()
        image, labels, entry = self._ds().load_case(case.name)
        with scene_transaction(self.scene):
            segmentation = self._segmentation(case.name, labels, case.volume, entry.current_version)
        remove_nodes(case.segmentation)
        case.segmentation, case.based_on, case.status = segmentation, entry.current, entry.status
        case.labels = labels if labels is not None else image.with_array(np.zeros(image.shape, np.uint8))
        return case

    def segment_names(self) -> list[str]:
        """The vertebrae of the case shown, top down by id (what Relabel offers)."""
        if self.case is None:
            return []
        return [name_of(v) for v in sorted(set(segment_labels(self.case.segmentation, strict=False).values()))]

    # -- fine-tuning (child process) -----------------------------------------------------------------------
    def start_finetune(self, model, output, **options):
        """:func:`~SpineSegLib.slicer.annotation_finetune.start_finetune` on the open dataset."""
        from SpineSegLib.slicer.annotation_finetune import start_finetune

        return start_finetune(self._ds(), model, output, python=self.python, user=self.user, **options)

    def finetune(self, model, output, timeout: Optional[float] = None, **options):
        """Fine-tune and wait (scripts): the :class:`~SpineSegLib.slicer.annotation_finetune.FinetuneOutcome`."""
        return self.start_finetune(model, output, **options).result_when_done(timeout)


def vertebra_names() -> list[str]:
    """Every vertebra name of the label table, head to tail (what "this is ..." offers)."""
    ids = list(range(1, 20)) + [28] + list(range(20, 25)) + [25, 26]    # C1-C7, T1-T12, T13, L1-L5, L6, sacrum
    return [name_of(v) for v in ids if v in VERTEBRAE]


def _segment_count(segmentation_node) -> int:
    return segmentation_node.GetSegmentation().GetNumberOfSegments()
