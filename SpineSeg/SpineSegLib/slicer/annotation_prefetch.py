"""Predicting the next cases while the annotator corrects the current one, in a child process (Qt-free, no MRML).

The panel's prefetch: the ``count`` cases to annotate after the current one (status ``new`` or ``predicted``, in
name order, wrapping round -- the cases :func:`SpineSegLib.annotation.prefetch.prefetch` would take) are handed to
``spineseg dataset predict DIR --model M --events --cases ...`` in a child process
(:mod:`SpineSegLib.slicer.process`; its events are the progress) -- or, with the classical method, ``spineseg
dataset predict DIR --method classical --events --cases ...`` (model-free, CT only: the child refuses MR cases with
the command line's message, which becomes the task's). The in-process :class:`~SpineSegLib.annotation.prefetch.Prefetcher` runs torch in a Python thread, which inside 3D
Slicer only advances while the GUI thread runs Python (Slicer does not enable PythonQt's thread support); the
child runs at full speed and Cancel kills it. The child saves each prediction as a label version the way
``predict`` always does (never over a correction, re-checked under the case's lock); a killed child may leave a
version file its manifest does not list yet, which ``ds.check(repair=True)`` -- run after every cancel -- adds back.

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.slicer.annotation_prefetch import PrefetchProcess, plan_cases
    ds = open_dataset("ds")
    pf = PrefetchProcess(ds, "iis-mr.pt", plan_cases(ds, 2, after="07")).start()
    pf = PrefetchProcess(ds, None, plan_cases(ds, 2), method="classical").start()       # a CT dataset, no model
    pf.poll(); pf.pending("08")       # True until case 08's prediction is saved (or the child ends)
    pf.cancel()
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from SpineSegLib.annotation.naming import natural_key
from SpineSegLib.annotation.predict import CLASSICAL, MODEL, needs_prediction
from SpineSegLib.annotation.store import AnnotationDataset
from SpineSegLib.slicer import process as background

#: the statuses whose cases are predicted ahead
STATUSES = ("new", "predicted")


def plan_cases(ds: AnnotationDataset, count: int, after: Optional[str] = None, model_sha: Optional[str] = None,
               inclusive: bool = False) -> list[str]:
    """The ``count`` usable cases to annotate (status new / predicted) after ``after`` (name order, wrapping
    round; ``inclusive``: ``after`` itself first); with ``model_sha`` only those that need a prediction by that
    model (:func:`SpineSegLib.annotation.predict.needs_prediction`)."""
    entries = [e for e in ds.list_cases(status=STATUSES, include_broken=False) if not e.image_missing]
    if model_sha:
        entries = [e for e in entries if needs_prediction(e, model_sha)]
    names = [e.name for e in entries]
    if after is not None:
        key = natural_key(str(after))
        names = ([n for n in names if n == str(after)] if inclusive else []) + \
            [n for n in names if natural_key(n) > key] + [n for n in names if natural_key(n) < key]
    return names[: max(int(count), 0)]


class PrefetchProcess:
    """``spineseg dataset predict`` for the next cases in a child process (module docstring); ``method``: "model"
    (the IIS network of ``model``) or "classical" (model-free, ``model`` unused)."""

    def __init__(self, ds: AnnotationDataset, model, cases, device: str = "auto", threads: Optional[int] = 1,
                 python: Optional[str] = None, method: str = MODEL):
        self.ds, self.method = ds, method
        self.model = Path(model) if model and method == MODEL else None
        self.planned = [str(c) for c in cases]
        self._versions = {name: ds.case(name).current for name in self.planned}   # as they were when planned
        if method == CLASSICAL:
            predictor = ["--method", CLASSICAL]
        else:
            predictor = ["--model", Path(model).resolve(), "--device", device]
        args = ["dataset", "predict", ds.root.resolve(), *predictor, "--events", "--cases", *self.planned]
        if threads:
            args += ["--threads", int(threads)]
        self.task = background.BackgroundProcess(
            background.spineseg_command(*args, python=python), env=background.child_environment(threads=threads),
            on_state=self._ended, name="SpineSeg predictions")

    def start(self) -> "PrefetchProcess":
        if self.planned:
            self.task.start()
        return self

    @property
    def running(self) -> bool:
        return self.task.state == background.RUNNING

    def poll(self) -> str:
        return self.task.poll()

    def pending(self, name: str) -> bool:
        """True while the child is still to save a prediction for case ``name``."""
        if name not in self._versions or self.poll() != background.RUNNING:
            return False
        return self.ds.case(name).current == self._versions[name]

    def state(self) -> str:
        """What it is doing, in words ('' when it ended well or never started)."""
        if self.running:
            return f"predicting {', '.join(self.planned)} in the background: {self.task.message}".rstrip(": ")
        if self.task.state in (background.FAILED,):
            return f"background prediction failed: {self.task.message}"
        return ""

    def cancel(self) -> None:
        """Kill the child; what it saved stays saved, a save it was in the middle of is taken back by the check."""
        self.task.cancel()

    def _ended(self, state: str) -> None:
        if state in (background.CANCELLED, background.FAILED):
            self.ds.check(repair=True)
