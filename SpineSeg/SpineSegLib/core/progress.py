"""Progress reporting and cancellation shared by the pipelines, the CLI and the Slicer modules.

Long work takes a :class:`Progress` and calls ``progress.step("what", fraction)`` between steps;
the call raises :class:`Cancelled` once :meth:`Progress.cancel` was called (from another thread,
or a Slicer Cancel button). The CLI prints steps on stderr; Slicer passes a callback that updates
a progress bar.

Console use::

    from SpineSegLib.core.progress import Progress
    p = Progress(callback=lambda name, fraction: print(f"{fraction:4.0%} {name}"))
    result = classical.segment_spine(ct, progress=p)
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

from SpineSegLib.core.errors import SpineSegError


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


def console_progress(stream=None, quiet: bool = False, skip_repeats: bool = False,
                     repeat_every: float = 0.0) -> Progress:
    """A :class:`Progress` that prints ``[ 40%] step`` lines on stderr (nothing when ``quiet``).

    ``skip_repeats``: print a step only when its name differs from the previous one (inference reports its
    ``traversal`` step after every network pass); ``repeat_every``: with ``skip_repeats``, print a repeated
    step again once its fraction has moved on by this much (``spineseg iis`` uses 0.1, so a child process's
    reader sees the traversal advance)."""
    stream = stream or sys.stderr
    last = {"name": None, "fraction": -1.0}

    def show(name, fraction):
        if quiet:
            return
        if skip_repeats and name == last["name"]:
            moved = fraction == fraction and repeat_every > 0 and fraction - last["fraction"] >= repeat_every
            if not moved:
                return
        last["name"] = name
        if fraction == fraction:
            last["fraction"] = fraction
        pct = "    " if fraction != fraction else f"{fraction:4.0%}"
        print(f"[{pct}] {name}", file=stream, flush=True)

    return Progress(show)
