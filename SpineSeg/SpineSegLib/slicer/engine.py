"""The Slicer side of the engine contract: one child process per run, read only through its events.

:class:`EngineTask` is a :class:`~SpineSegLib.slicer.process.BackgroundProcess` (the one child-process state
machine: process group, reader threads, events, cancel, cleanup) that writes the input volume once (``input.nii`` in
a temporary work folder), starts ``spineseg engine`` with the :class:`~SpineSegLib.core.events.EngineRequest`'s
arguments (built in one place, :meth:`~SpineSegLib.core.events.EngineRequest.to_arguments`), and reads the child's
stdout as JSON-lines events (:mod:`SpineSegLib.core.events`); its stderr is only kept as the log
(:attr:`EngineTask.output`).
:meth:`EngineTask.poll` (a GUI timer, or :meth:`EngineTask.wait`) hands the events to the callbacks on the
caller's thread and, after the result event and a clean exit, calls ``finish(task, result_event)`` once to import
the result. Stepping: an ``interactive`` request halts the child after each pass until :meth:`EngineTask.send`
(``next`` / ``finish``). :meth:`EngineTask.cancel` kills the child's process tree at once; the work folder is
removed whatever the end. A malformed or truncated event line fails the task with a message naming it.

States::

    idle --start()--> running --result event, exit 0--> importing --finish() ok--> done
                         |--error event / exit != 0 / bad event line--> failed (the one-line message)
                         '--cancel()--> cancelled

Console use::

    from SpineSegLib.core.events import EngineRequest
    from SpineSegLib.slicer.engine import EngineTask
    task = EngineTask(image, lambda work: EngineRequest("classical", work / "input.nii", work),
                      on_progress=print).start()
    task.wait(); task.result_event.labels_path
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.events import NoteEvent, ResultEvent, StepEvent
from SpineSegLib.core.image import Image, write_image
from SpineSegLib.slicer import process
from SpineSegLib.slicer.process import RUNNING, BackgroundProcess


def write_input(image: Image, work: Path) -> Path:
    """The one write of the input volume for the child (uncompressed NIfTI: the fastest to write and read)."""
    return write_image(image, work / "input.nii", force=True, compress=False)


class EngineTask(BackgroundProcess):
    """One ``spineseg engine`` child: :class:`~SpineSegLib.slicer.process.BackgroundProcess`'s state machine
    plus the input image, the request, stepping and the result event (module docstring)."""

    child = "the engine"
    cancel_at_once = True
    poll_interval_s = 0.02

    def __init__(self, image: Image, make_request: Callable, *, python: Optional[str] = None,
                 threads: Optional[int] = None, finish: Optional[Callable] = None,
                 on_progress: Optional[Callable[[float, str], None]] = None,
                 on_step: Optional[Callable[[StepEvent], None]] = None,
                 on_note: Optional[Callable[[NoteEvent], None]] = None,
                 on_state: Optional[Callable[[str], None]] = None,
                 on_line: Optional[Callable[[str], None]] = None, name: str = "SpineSeg"):
        super().__init__([], env={}, finish=finish, on_progress=on_progress, on_line=on_line, on_state=on_state,
                         on_note=on_note, name=name)
        self.image = image
        self.make_request = make_request       # work folder -> EngineRequest
        self.python = python
        self.threads = threads
        self.on_step = on_step
        self.result_event: Optional[ResultEvent] = None
        self.request = None
        self.work_dir: Optional[Path] = None

    # -- the hooks of BackgroundProcess -----------------------------------------------------------------------
    def _prepare(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="SpineSeg-engine-"))
        self.cleanup_paths.append(self.work_dir)
        write_input(self.image, self.work_dir)
        self.request = self.make_request(self.work_dir)
        self.command = process.spineseg_command(*self.request.to_arguments(), python=self.python)
        self.env = process.child_environment(threads=self.threads)
        self.stdin = subprocess.PIPE if self.request.interactive else subprocess.DEVNULL

    def _could_not_start(self, exc: OSError) -> str:
        return f"{self.name}: could not start the engine: {exc}"

    def _show_progress(self, fraction: Optional[float], phase: str) -> None:
        # the engine's bar never goes back, and each phase replaces the message
        if fraction is not None:
            self.fraction = max(self.fraction, float(fraction))
        self.message = phase

    def _handle_other(self, event) -> None:
        if isinstance(event, StepEvent):
            if self.on_step is not None:
                self.on_step(event)
        elif isinstance(event, ResultEvent):
            self.result_event = event
        else:
            super()._handle_other(event)

    def _complete(self) -> bool:
        return self.result_event is not None

    def _import_result(self):
        return self.finish(self, self.result_event) if self.finish is not None else self.result_event

    def _failure_message(self, code: int) -> str:
        if self._error:
            return self._error
        if code == 0:
            return f"{self.name}: the engine ended without a result event"
        return super()._failure_message(code)

    # -- stepping -----------------------------------------------------------------------------------------------
    def send(self, command: str) -> None:
        """One stepping command (``next`` / ``finish`` / ``cancel``) to an interactive child."""
        if self.state != RUNNING or self._process is None or self._process.stdin is None:
            return
        try:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
        except (OSError, ValueError):       # the child already ended: poll() will tell how
            pass


__all__ = ["EngineTask", "write_input"]
