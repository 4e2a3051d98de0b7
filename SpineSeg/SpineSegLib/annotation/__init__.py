"""Annotation datasets: predict, correct, save, fine-tune -- the loop that built CTSpine1K, SPIDER and
Lessmann's chest-CT set, from the command line (``spineseg dataset ...``) and the Slicer panel.

Folder format (version 1)
-------------------------
::

    DIR/
      dataset.json                 the dataset: name, modality, label convention, split, fine-tuned models
      images/<case>.nii.gz         the image (a copy, a symbolic link with --link, or converted DICOM)
      labels/<case>/v001.nii.gz    label versions, numbered; never overwritten, never deleted
      labels/<case>/v001.json      that version's metadata (a copy of its manifest entry)
      cases/<case>.json            the case manifest: status, current version, every version's entry
      cases/<case>.lock            present only while a save is being committed
      runs/<time>_<name>/          fine-tuning runs (logs, curves, snapshots, staging links)
      .cache/                      model-grid arrays for fine-tuning (safe to delete)

``dataset.json``: ``format`` ("spineseg-annotation-dataset"), ``format_version``, ``name``,
``created``/``created_by``, ``modality`` (ct|mr), ``label_convention`` ("verse"),
``crop_unlabelled`` (none|above|below|both: vertebrae beyond the labelled range are visible but
deliberately unlabelled, e.g. MyoSegmenTUM's T12), ``split`` ({case: train|validation|test}),
``split_fractions``/``split_seed`` (cases added later are split by a hash of their name), ``models``
(every fine-tuned model: path, SHA-256, parent, cases, before/after Dice) and a ``revision`` counter.

``cases/<case>.json``: ``case``, ``image`` (relative path), ``source`` (where the image came from),
``image_grid``, ``image_sha256``, ``modality``, ``label_convention``, ``status``, ``current`` (the
current version number, null for a new case), ``revision`` (increases with every write) and
``versions`` -- one entry per label version:

* ``version``, ``file``, ``created`` (UTC ISO 8601), ``user`` (argument, else the OS user),
  ``kind`` (prediction | correction | import | relabel | recovered), ``status`` it gives the case,
  ``sha256`` of the label file, ``labels`` (ids present), ``voxels``, ``label_convention``,
  ``warnings``, ``note``;
* predictions: ``model`` = {``path``, ``name``, ``sha256``, ``format_version`` (of the weights file),
  ``iteration``, ``description``, ``modality``, ``variant``}, ``settings`` (device, seconds, passes)
  and ``instances`` (per vertebra: id, name, complete, completeness, regressed label, volume);
* corrections: ``based_on`` (the version the annotator opened); imports: ``source``, ``convention``;
  relabels: ``relabel`` ({old id: new id}); reviews: ``reviewed_by``, ``reviewed_at``.

Status: ``new`` (no labels) -> ``predicted`` (current version made by a model) -> ``corrected``
(saved by a person) -> ``reviewed`` (a reviewer accepted the current version). A new save after a
review makes the case ``corrected`` again. Predictions never replace corrected/reviewed labels.

Label convention: VerSe ids (:mod:`SpineSegLib.core.labels`): 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5,
25 L6, 26 sacrum, 28 T13; discs 100 + id of the vertebra above, endplates 200 + id, canal 61.
Every label version lies exactly on its image's grid.

Safety: see :mod:`.versions` (temporary file, lock, hard link, atomic manifest), :mod:`.consistency`
(crash recovery with ``check --repair``) and :mod:`.locking` (lock files, stale locks).

Modules: :mod:`.store` (:class:`AnnotationDataset`, :func:`open_dataset`), :mod:`.creation`
(:func:`create_dataset`, :func:`add_cases`), :mod:`.versions` (writing a label version, the status
rules), :mod:`.consistency` (``check``), :mod:`.folder` (paths, ``dataset.json``), :mod:`.manifest`
(the JSON files), :mod:`.locking`, :mod:`.conformance` (label map vs image grid), :mod:`.conventions`
(imported label conventions), :mod:`.naming` (case names), :mod:`.relabel` (renumbering),
:mod:`.predict`, :mod:`.prefetch`, :mod:`.finetune`, :mod:`.export`, and :mod:`.faults` (a test hook).

API (what the Slicer panel and scripts call)
---------------------------------------------
::

    from SpineSegLib.annotation import open_dataset, create_dataset, relabel_vertebrae
    from SpineSegLib.annotation.predict import predict_dataset
    from SpineSegLib.annotation.prefetch import prefetch
    from SpineSegLib.annotation.finetune import finetune
    from SpineSegLib.annotation.export import export_dataset
    ds = open_dataset("DIR")                         # AnnotationDataset
    ds.list_cases(status=None, split=None)           # [CaseEntry]: name, status, current, split, versions, row()
    ds.counts()                                      # {"new": 3, "predicted": 5, ...}
    name = ds.next_case(status=("predicted", "new"), after=None)
    image, labels, entry = ds.load_case(name)        # Image, Image | None, CaseEntry
    v = ds.save_correction(name, label_image, user="anna", based_on=entry.current)   # -> version number
    ds.mark_reviewed(name, user="ben")
    v, result = ds.relabel(name, vertebra="L1", as_name="T12", user="anna")          # or relabel_vertebrae(Image, ...)
    report = predict_dataset(ds, "model.pt", device="auto", progress=p)              # PredictReport
    pf = prefetch(ds, "model.pt", count=2, after=name, on_ready=callback)             # Prefetcher (cancel, wait)
    image, labels, entry = pf.take(next_name) or ds.load_case(next_name)            # preloaded next case
    report = finetune(ds, "model.pt", "new.pt", iterations=500, progress=p)          # FinetuneReport (before/after)
    export_dataset(ds, "nnunet", "OUT")                                               # also verse, ctspine1k
    problems = ds.check(repair=False)                # [Problem]

``p`` is a :class:`SpineSegLib.core.progress.Progress`; ``p.cancel()`` from another thread stops the work
at the next step and leaves the dataset consistent. Work run as a child process (``spineseg dataset
predict|finetune`` under ``SpineSegLib.slicer.process``; its ``[ 42%] message`` lines are the progress)
may be killed at any moment: call ``ds.check(repair=True)`` afterwards to take back a version whose
save was cut short (nothing else is needed; a killed writer's lock is broken automatically).
"""

from __future__ import annotations

from SpineSegLib.core.splits import SPLITS
from SpineSegLib.annotation.conformance import conform_label
from SpineSegLib.annotation.consistency import Problem
from SpineSegLib.annotation.creation import add_cases, create_dataset
from SpineSegLib.annotation.locking import DatasetLockedError
from SpineSegLib.annotation.manifest import STATUSES, CaseEntry
from SpineSegLib.annotation.relabel import RelabelResult, relabel_array, relabel_vertebrae
from SpineSegLib.annotation.store import AnnotationDataset, LoadedCase, open_dataset
from SpineSegLib.annotation.versions import ANNOTATED

__all__ = [
    "ANNOTATED", "AnnotationDataset", "CaseEntry", "DatasetLockedError", "LoadedCase", "Problem", "RelabelResult",
    "SPLITS", "STATUSES", "add_cases", "conform_label", "create_dataset", "open_dataset", "relabel_array",
    "relabel_vertebrae",
]
