"""Predicting the next cases in the background while the annotator works on the current one.

:func:`prefetch` starts a daemon thread that takes the next ``count`` cases to annotate (status
in ``statuses``, default new / predicted; in name order after ``after``, wrapping round), predicts
those that need a prediction by ``model`` (see :func:`.predict.needs_prediction`) and saves each as
a label version, and -- with ``preload`` -- also reads each case's image and current labels into
memory, so that :meth:`Prefetcher.take` hands the next case over at once. The thread checks the
case again under its lock before saving: a case the annotator corrected meanwhile keeps the
correction, and ``take`` re-reads a case whose current version changed after it was preloaded.

A thread (not a process) because the Slicer panel calls it from Slicer's own Python, where child
processes cannot reuse the loaded modules; torch and the numpy/scipy work release the GIL, so
the user interface stays responsive. ``threads`` bounds torch's CPU threads (torch's setting is
process-wide: the default, 1 on the CPU, leaves the other cores to Slicer).

Cancelling (:meth:`Prefetcher.cancel`) stops the running prediction at its next network pass;
nothing half-done is saved. :meth:`Prefetcher.wait` joins the thread.

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.prefetch import prefetch
    ds = open_dataset("ds")
    pf = prefetch(ds, "iis-mr.pt", count=2, after="07", on_ready=lambda case, version: print(case, version))
    ...                      # annotate case 07
    pf.ready                 # {'08': 3, '09': None}  (None: it needed no prediction)
    image, labels, entry = pf.take("08") or ds.load_case("08")
    pf.cancel(); pf.wait()
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.annotation.naming import natural_key
from SpineSegLib.annotation.predict import model_info, needs_prediction, predict_case
from SpineSegLib.annotation.store import AnnotationDataset


class Prefetcher:
    """The background predictor started by :func:`prefetch` (module docstring)."""

    def __init__(self, ds: AnnotationDataset, model, count: int = 2, after: Optional[str] = None,
                 device: str = "auto", threads: Optional[int] = 1, redo: bool = False, keep_incomplete: bool = True,
                 on_ready: Optional[Callable[[str, Optional[int]], None]] = None,
                 on_error: Optional[Callable[[str, str], None]] = None, cases=None,
                 statuses=("new", "predicted"), preload: bool = True):
        self.ds, self.model, self.count, self.after = ds, model, int(count), after
        self.statuses, self.preload = tuple(statuses), preload
        self._loaded: dict = {}
        self._lock = threading.Lock()
        self.device, self.threads, self.redo, self.keep_incomplete = device, threads, redo, keep_incomplete
        self.on_ready, self.on_error = on_ready, on_error
        self.explicit_cases = list(cases) if cases else None
        self.progress = Progress()
        self.ready: dict = {}       # case -> version saved (None: no prediction needed)
        self.errors: dict = {}      # case -> message
        self.seconds: dict = {}     # case -> seconds of prediction
        self.current: Optional[str] = None
        self.planned: list = []
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name="SpineSeg-prefetch", daemon=True)

    def plan(self) -> list:
        """The cases to prepare, in order (computed when the thread starts)."""
        if self.explicit_cases is not None:
            return self.explicit_cases[: self.count]
        entries = [e for e in self.ds.list_cases(status=self.statuses, include_broken=False) if not e.image_missing]
        if self.after is not None:
            key = natural_key(str(self.after))
            entries = [e for e in entries if natural_key(e.name) > key] + \
                      [e for e in entries if natural_key(e.name) <= key and e.name != str(self.after)]
        return [e.name for e in entries][: self.count]

    def start(self) -> "Prefetcher":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            info = model_info(self.model)
            self.planned = self.plan()
            for name in self.planned:
                if self.progress.cancelled:
                    break
                self.current = name
                t0 = time.perf_counter()
                try:
                    version = None
                    if needs_prediction(self.ds.case(name), info["sha256"], self.redo):
                        version = predict_case(self.ds, name, self.model, device=self.device, redo=self.redo,
                                               keep_incomplete=self.keep_incomplete, threads=self.threads,
                                               progress=self.progress, info=info)
                        self.seconds[name] = time.perf_counter() - t0
                    if self.preload and not self.progress.cancelled:
                        loaded = self.ds.load_case(name)
                        with self._lock:
                            self._loaded[name] = loaded
                except Cancelled:
                    self.cancelled = True
                    break
                except SpineSegError as exc:
                    self.errors[name] = str(exc)
                    if self.on_error:
                        self.on_error(name, str(exc))
                    continue
                self.ready[name] = version
                if self.on_ready:
                    self.on_ready(name, version)
        except Exception as exc:  # report, never kill the host application
            self.errors["<prefetch>"] = f"{type(exc).__name__}: {exc}"
            if self.on_error:
                self.on_error("<prefetch>", self.errors["<prefetch>"])
        finally:
            self.current = None

    def take(self, case: str):
        """The preloaded ``(image, labels, entry)`` of ``case`` -- None when it is not (yet) loaded. A case
        whose current version changed since it was preloaded is read again."""
        with self._lock:
            loaded = self._loaded.pop(case, None)
        if loaded is None:
            return None
        if self.ds.case(case).current != loaded.entry.current:
            return self.ds.load_case(case)
        return loaded

    def cancel(self) -> None:
        """Stop at the next network pass; what is saved stays saved, the running case is dropped."""
        self.cancelled = True
        self.progress.cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Join the thread; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def prefetch(ds: AnnotationDataset, model, count: int = 2, after: Optional[str] = None, **kwargs) -> Prefetcher:
    """Start predicting the next ``count`` cases after ``after`` in a background thread (module docstring)."""
    return Prefetcher(ds, model, count=count, after=after, **kwargs).start()
