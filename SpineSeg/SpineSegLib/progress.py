"""Progress reporting and cancellation shared by the pipelines, the CLI and the Slicer modules.

Long work takes a :class:`Progress` and calls ``progress.step("what", fraction)`` between steps;
the call raises :class:`Cancelled` once :meth:`Progress.cancel` was called (from another thread,
or a Slicer Cancel button). The CLI prints steps on stderr; Slicer passes a callback that updates
a progress bar.

Console use::

    from SpineSegLib.progress import Progress
    p = Progress(callback=lambda name, fraction: print(f"{fraction:4.0%} {name}"))
    result = classical.segment_spine(ct, progress=p)
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

from .errors import SpineSegError


class Cancelled(SpineSegError):
    """The user cancelled the running task."""


class Progress:
    def __init__(self, callback: Optional[Callable[[str, float], None]] = None):
        self.callback = callback
        self._cancel = threading.Event()
        self.timings: dict[str, float] = {}
        self._current: Optional[str] = None
        self._started = time.perf_counter()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled by the user")

    def step(self, name: str, fraction: float = float("nan")) -> None:
        """Start step ``name`` (``fraction`` of the whole task done so far, 0-1); records timings."""
        self.check()
        now = time.perf_counter()
        if self._current is not None:
            self.timings[self._current] = self.timings.get(self._current, 0.0) + now - self._started
        self._current, self._started = name, now
        if self.callback is not None:
            self.callback(name, fraction)

    def done(self) -> None:
        self.step("done", 1.0)
        self._current = None


def console_progress(stream=None, quiet: bool = False) -> Progress:
    """A :class:`Progress` that prints ``[ 40%] step`` lines on stderr (nothing when ``quiet``)."""
    stream = stream or sys.stderr

    def show(name, fraction):
        if quiet:
            return
        pct = "    " if fraction != fraction else f"{fraction:4.0%}"
        print(f"[{pct}] {name}", file=stream, flush=True)

    return Progress(show)
