"""The Slicer side of the engine contract: one child process per run, read only through its events.

:class:`EngineTask` writes the input volume once (``input.nii`` in a temporary work folder), starts
``spineseg engine`` with the :class:`~SpineSegLib.core.events.EngineRequest`'s arguments (built in one place,
:meth:`~SpineSegLib.core.events.EngineRequest.to_arguments`), and reads the child's stdout as JSON-lines events
(:mod:`SpineSegLib.core.events`) on a reader thread; its stderr is only kept as the log (:attr:`EngineTask.output`).
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

import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.events import (EventError, ErrorEvent, NoteEvent, ProgressEvent, ResultEvent, StepEvent,
                                     parse_event)
from SpineSegLib.core.image import Image, write_image
from SpineSegLib.slicer import process
from SpineSegLib.slicer.process import CANCELLED, DONE, FAILED, FINISHED, IDLE, IMPORTING, RUNNING, BackgroundError

log = logging.getLogger(__name__)

_STDOUT, _STDERR, _END = "stdout", "stderr", "end"


def write_input(image: Image, work: Path) -> Path:
    """The one write of the input volume for the child (uncompressed NIfTI: the fastest to write and read)."""
    return write_image(image, work / "input.nii", force=True, compress=False)


class EngineTask:
    """One ``spineseg engine`` child and its state machine (module docstring)."""

    def __init__(self, image: Image, make_request: Callable, *, python: Optional[str] = None,
                 threads: Optional[int] = None, finish: Optional[Callable] = None,
                 on_progress: Optional[Callable[[float, str], None]] = None,
                 on_step: Optional[Callable[[StepEvent], None]] = None,
                 on_note: Optional[Callable[[NoteEvent], None]] = None,
                 on_state: Optional[Callable[[str], None]] = None,
                 on_line: Optional[Callable[[str], None]] = None, name: str = "SpineSeg"):
        self.image = image
        self.make_request = make_request       # work folder -> EngineRequest
        self.python = python
        self.threads = threads
        self.finish = finish
        self.on_progress, self.on_step, self.on_note = on_progress, on_step, on_note
        self.on_state, self.on_line = on_state, on_line
        self.name = name
        self.state = IDLE
        self.message = ""
        self.fraction = 0.0
        self.output: list[str] = []            # the child's stderr (its log)
        self.notes: list[str] = []
        self.result = None
        self.result_event: Optional[ResultEvent] = None
        self.returncode: Optional[int] = None
        self.request = None
        self.work_dir: Optional[Path] = None
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self._process: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue" = queue.Queue()
        self._error: Optional[str] = None
        self._open_streams = 0

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self.started_at is None else (self.ended_at or time.monotonic()) - self.started_at

    def _set_state(self, state: str, message: Optional[str] = None) -> None:
        self.state = state
        if message is not None:
            self.message = message
        if state in FINISHED:
            self.ended_at = time.monotonic()
            self._cleanup()
        if self.on_state is not None:
            self.on_state(state)

    # -- running ------------------------------------------------------------------------------------------------
    def start(self) -> "EngineTask":
        if self.state != IDLE:
            raise BackgroundError(f"{self.name}: already started (state {self.state})")
        self.work_dir = Path(tempfile.mkdtemp(prefix="SpineSeg-engine-"))
        try:
            write_input(self.image, self.work_dir)
            self.request = self.make_request(self.work_dir)
            command = process.spineseg_command(*self.request.to_arguments(), python=self.python)
            kwargs = dict(stdin=subprocess.PIPE if self.request.interactive else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=process.child_environment(threads=self.threads), text=True, encoding="utf-8",
                          errors="replace", bufsize=1)
            if os.name == "nt":
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
            else:
                kwargs["start_new_session"] = True     # its own process group: cancel kills the whole tree
            log.info("%s: starting %s", self.name, subprocess.list2cmdline(command))
            self._process = subprocess.Popen(command, **kwargs)
        except OSError as exc:
            self._set_state(FAILED, f"{self.name}: could not start the engine: {exc}")
            raise BackgroundError(self.message) from None
        except BaseException:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            raise
        self.started_at = time.monotonic()
        self._open_streams = 2
        for stream, kind in ((self._process.stdout, _STDOUT), (self._process.stderr, _STDERR)):
            threading.Thread(target=self._read, args=(stream, kind), name=f"{self.name} {kind}", daemon=True).start()
        self._set_state(RUNNING, "started")
        return self

    def _read(self, stream, kind: str) -> None:
        try:
            for line in stream:
                self._lines.put((kind, line))
        except (OSError, ValueError):       # the pipe was closed by a kill
            pass
        finally:
            self._lines.put((_END, kind))

    def send(self, command: str) -> None:
        """One stepping command (``next`` / ``finish`` / ``cancel``) to an interactive child."""
        if self.state != RUNNING or self._process is None or self._process.stdin is None:
            return
        try:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
        except (OSError, ValueError):       # the child already ended: poll() will tell how
            pass

    def _drain(self) -> None:
        while self.state == RUNNING:
            try:
                kind, line = self._lines.get_nowait()
            except queue.Empty:
                return
            if kind == _END:
                self._open_streams -= 1
            elif kind == _STDERR:
                self.output.append(line.rstrip("\r\n"))
                if self.on_line is not None:
                    self.on_line(self.output[-1])
            else:
                try:
                    self._handle(parse_event(line, complete=line.endswith("\n")))
                except EventError as exc:
                    self._fail_protocol(str(exc))

    def _handle(self, event) -> None:
        if isinstance(event, ProgressEvent):
            if event.fraction is not None:
                self.fraction = max(self.fraction, float(event.fraction))
            self.message = event.phase
            if self.on_progress is not None:
                self.on_progress(float("nan") if event.fraction is None else float(event.fraction), event.phase)
        elif isinstance(event, StepEvent):
            if self.on_step is not None:
                self.on_step(event)
        elif isinstance(event, NoteEvent):
            self.notes.append(event.message)
            if self.on_note is not None:
                self.on_note(event)
        elif isinstance(event, ErrorEvent):
            self._error = event.message
        elif isinstance(event, ResultEvent):
            self.result_event = event

    def _fail_protocol(self, message: str) -> None:
        process.kill_process_tree(self._process, grace_s=0.0)
        self.returncode = self._process.returncode
        self._set_state(FAILED, f"{self.name}: {message}")

    def poll(self) -> str:
        """Hand new events to the callbacks, notice the child's end, import the result. Returns the state."""
        if self.state != RUNNING:
            return self.state
        self._drain()
        if self.state != RUNNING:
            return self.state
        code = self._process.poll()
        if code is None:
            return self.state
        deadline = time.monotonic() + 5
        while self._open_streams > 0 and self.state == RUNNING and time.monotonic() < deadline:
            self._drain()
            time.sleep(0.005)
        if self.state != RUNNING:
            return self.state
        self.returncode = code
        if code != 0 or self.result_event is None:
            self._set_state(FAILED, self._failure_message(code))
            return self.state
        self.fraction = 1.0
        self._set_state(IMPORTING, "importing the result")
        try:
            self.result = self.finish(self, self.result_event) if self.finish is not None else self.result_event
        except SpineSegError as exc:
            self._set_state(FAILED, str(exc))
        except Exception as exc:      # an import failure must end the task, never leave it "importing"
            log.exception("%s: importing the result failed", self.name)
            self._set_state(FAILED, f"importing the result failed: {type(exc).__name__}: {exc}")
        else:
            self._set_state(DONE, "done")
        return self.state

    def _failure_message(self, code: int) -> str:
        if self._error:
            return self._error
        killed = process.killed_by(code)
        if killed:
            return f"{self.name}: the engine ended unexpectedly ({killed})"
        if code == 0:
            return f"{self.name}: the engine ended without a result event"
        tail = "; ".join(line for line in self.output[-5:] if line.strip())
        return f"{self.name} failed (exit status {code}): {tail or 'no output'}"

    def wait(self, timeout: Optional[float] = None, interval: float = 0.02) -> str:
        """Poll until the task ends (scripts; the GUI uses a timer). Raises TimeoutError after ``timeout`` s."""
        if self.state == IDLE:
            raise BackgroundError(f"{self.name}: not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() == RUNNING:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout} s")
            time.sleep(interval)
        return self.state

    def cancel(self) -> bool:
        """Kill the child and everything it started, at once; False when there was nothing to cancel."""
        if self.state != RUNNING:
            return False
        process.kill_process_tree(self._process, grace_s=0.0)
        self.returncode = self._process.returncode
        self._set_state(CANCELLED, "cancelled")
        return True

    def _cleanup(self) -> None:
        if self._process is not None:
            for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def raise_for_state(self) -> None:
        """Raise :class:`BackgroundError` (``Cancelled`` for a cancelled task) unless the task is done."""
        if self.state == DONE:
            return
        if self.state == CANCELLED:
            from SpineSegLib.core.progress import Cancelled

            raise Cancelled(f"{self.name}: cancelled by the user")
        raise BackgroundError(self.message or f"{self.name}: {self.state}")


__all__ = ["EngineTask", "write_input", "IMPORTING"]
