"""Long work in a child process, so that 3D Slicer's GUI never freezes (Qt-free; also used by scripts).

:class:`BackgroundProcess` starts a command with :class:`subprocess.Popen` (not Slicer's
``launchConsoleProcess``, which needs ``slicer.app``), reads the child's stdout and stderr on reader
threads, and is advanced by :meth:`BackgroundProcess.poll` -- in Slicer from a ``QTimer`` on the GUI
thread, in scripts from :meth:`BackgroundProcess.wait`. All callbacks and the result import run inside
``poll``, i.e. on the caller's thread; the reader threads only queue lines.

States::

    idle --start()--> running --child exits 0--> importing --finish() ok--> done
                         |                           '--finish() raises--> failed
                         |--child exits != 0--> failed (the child's one-line error as the message)
                         |--a malformed or truncated event line--> failed (the line named; the child is killed)
                         |--child killed (by a signal, e.g. the out-of-memory killer)--> failed
                         |      ("the background process ended unexpectedly (killed by signal 9, SIGKILL; ...)")
                         '--cancel()--> cancelled (the whole process tree is killed)

The child's output is forced to UTF-8 without colour codes (``PYTHONUTF8``, ``PYTHONIOENCODING``,
``NO_COLOR``, ``TERM=dumb``) and unbuffered, and ``SpineSegLib``'s parent folder is put first on
``PYTHONPATH`` so that ``python -m SpineSegLib`` runs this very copy (in Slicer: ``PythonSlicer``).

Protocol: the child writes only the JSON-lines events of :mod:`SpineSegLib.core.events` on stdout
(``spineseg speed|dataset predict|dataset finetune --events``): progress (fraction and phase), notes,
a report (:attr:`BackgroundProcess.report`, for ``finish``) and an error (the failure message). Its
stderr is kept in :attr:`BackgroundProcess.output` (shown in the log). (The segmentation runs use
:class:`SpineSegLib.slicer.engine.EngineTask`, this state machine plus a request, stepping and a result event:
it fills the hooks ``_prepare``, ``_handle_other``, ``_complete``, ``_import_result``.)

Console use::

    from SpineSegLib.slicer import process as background
    cmd = background.spineseg_command("speed", "--events")
    task = background.BackgroundProcess(cmd, on_progress=lambda f, m: print(f, m))
    task.start()
    task.wait()                      # or: a QTimer calling task.poll()
    task.state, task.report.data     # 'done', {'torch': ..., 'cpu_cores': ...}
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.events import ErrorEvent, EventError, NoteEvent, ProgressEvent, ReportEvent, parse_event

log = logging.getLogger(__name__)

IDLE, RUNNING, IMPORTING, DONE, FAILED, CANCELLED = "idle", "running", "importing", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

#: the folder holding the SpineSegLib package (put on the child's PYTHONPATH)
LIB_PARENT = str(Path(__file__).resolve().parents[2])   # the folder holding SpineSegLib


class BackgroundError(SpineSegError):
    """The child process could not be started, or failed."""


def python_executable() -> str:
    """The Python to run children with: ``PythonSlicer`` inside 3D Slicer (Slicer's own ``sys.executable``
    is the application), else this interpreter."""
    exe = Path(sys.executable)
    if exe.stem.lower().startswith("slicer"):
        found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=str(exe.parent))
        if found:
            return found
    return sys.executable


def spineseg_command(*arguments, python: Optional[str] = None) -> list[str]:
    """``[python, "-m", "SpineSegLib", *arguments]`` -- the ``spineseg`` CLI of this very copy."""
    return [python or python_executable(), "-m", "SpineSegLib", *[str(a) for a in arguments]]


def child_environment(threads: Optional[int] = None, extra: Optional[dict] = None) -> dict:
    """The child's environment: UTF-8, unbuffered, no colour, this SpineSegLib first on PYTHONPATH."""
    env = dict(os.environ)
    env.update(PYTHONUTF8="1", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    env.pop("FORCE_COLOR", None)
    env.pop("PYTHONSTARTUP", None)
    paths = [LIB_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != LIB_PARENT]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if threads:
        env["OMP_NUM_THREADS"] = str(int(threads))
    env.update(extra or {})
    return env


#: signals that end a process from outside or by a crash (as 128 + N when a launcher passes them on)
_FATAL_SIGNALS = tuple(getattr(signal, n) for n in ("SIGKILL", "SIGTERM", "SIGSEGV", "SIGBUS", "SIGABRT", "SIGHUP")
                       if hasattr(signal, n))


def killed_by(code: Optional[int], expected_error: bool = False) -> Optional[str]:
    """``"killed by signal 9, SIGKILL; ..."`` when exit status ``code`` says a signal ended the process
    (negative: Python's ``Popen``; 128 + N: a launcher such as ``PythonSlicer`` or a shell), else None.
    ``expected_error``: the process printed its own error, so a status above 128 is its own."""
    if code is None or code == 0:
        return None
    number = -code if code < 0 else (code - 128 if not expected_error and code - 128 in _FATAL_SIGNALS else None)
    if number is None:
        return None
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = ""
    hint = "; the system may have run out of memory" if number == getattr(signal, "SIGKILL", None) else ""
    return f"killed by signal {number}{', ' + name if name else ''}{hint}"


def kill_process_tree(process: subprocess.Popen, grace_s: float = 2.0) -> None:
    """End ``process`` and every process it started (it was started in its own process group/session)."""
    if process.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
    else:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        log.error("process %s did not end", process.pid)


class BackgroundProcess:
    """One child process and its state machine (see the module docstring).

    ``finish(task)`` imports the result once the child exited with status 0 (on the thread that calls
    :meth:`poll`; the child's last report event is :attr:`report`); its return value becomes :attr:`result`.
    It must leave the scene as it was when it raises. ``on_line`` hears the child's stderr lines, ``on_note``
    its note events. ``cleanup`` paths (temporary folders) are removed when the task ends, whatever the end.
    """

    #: how the failure messages name the child
    child = "the background process"
    #: cancel kills without a grace period and drops the child's last lines (the engine: Cancel is at once)
    cancel_at_once = False
    #: the seconds between polls in :meth:`wait`
    poll_interval_s = 0.05

    def __init__(self, command: list[str], *, env: Optional[dict] = None, cwd=None,
                 finish: Optional[Callable[["BackgroundProcess"], object]] = None,
                 on_progress: Optional[Callable[[float, str], None]] = None,
                 on_line: Optional[Callable[[str], None]] = None,
                 on_state: Optional[Callable[[str], None]] = None,
                 on_poll: Optional[Callable[["BackgroundProcess"], None]] = None,
                 on_note: Optional[Callable[[NoteEvent], None]] = None,
                 cleanup=(), name: str = "SpineSeg"):
        self.command = [str(c) for c in command]
        self.env = env if env is not None else child_environment()
        self.cwd = cwd
        self.finish = finish
        self.on_progress = on_progress
        self.on_line = on_line
        self.on_state = on_state
        self.on_poll = on_poll
        self.on_note = on_note
        self.cleanup_paths = [Path(p) for p in cleanup]
        self.name = name
        self.state = IDLE
        self.message = ""
        self.fraction = 0.0
        self.output: list[str] = []            # the child's stderr (its log)
        self.notes: list[str] = []
        self.report: Optional[ReportEvent] = None
        self.result = None
        self.returncode: Optional[int] = None
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.stdin = subprocess.DEVNULL        # a pipe for a child that reads commands (engine stepping)
        self._process: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue" = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._error: Optional[str] = None

    # -- state ----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def _set_state(self, state: str, message: Optional[str] = None) -> None:
        self.state = state
        if message is not None:
            self.message = message
        if state in FINISHED:
            self.ended_at = time.monotonic()
            self._cleanup()
        if self.on_state is not None:
            self.on_state(state)

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> "BackgroundProcess":
        if self.state != IDLE:
            raise BackgroundError(f"{self.name}: already started (state {self.state})")
        try:
            self._prepare()
            kwargs = dict(stdin=self.stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                          cwd=self.cwd, text=True, encoding="utf-8", errors="replace", bufsize=1)
            if os.name == "nt":
                kwargs["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP
                                           | getattr(subprocess, "CREATE_NO_WINDOW", 0))
            else:
                kwargs["start_new_session"] = True      # its own process group: cancel kills the whole tree
            log.info("%s: starting %s", self.name, subprocess.list2cmdline(self.command))
            self._process = subprocess.Popen(self.command, **kwargs)
        except OSError as exc:
            self._set_state(FAILED, self._could_not_start(exc))
            raise BackgroundError(self.message) from None
        except BaseException:
            for path in self.cleanup_paths:
                shutil.rmtree(path, ignore_errors=True)
            raise
        self.started_at = time.monotonic()
        for stream, kind in ((self._process.stdout, "stdout"), (self._process.stderr, "stderr")):
            reader = threading.Thread(target=self._read, args=(stream, kind), name=f"{self.name} {kind}", daemon=True)
            reader.start()
            self._readers.append(reader)
        self._set_state(RUNNING, "started")
        return self

    def _prepare(self) -> None:
        """Hook: make what the command needs (files, :attr:`command`, :attr:`env`) just before the start."""

    def _could_not_start(self, exc: OSError) -> str:
        return f"{self.name}: could not start {self.command[0]!r}: {exc}"

    def _read(self, stream, kind: str) -> None:
        try:
            for line in stream:
                self._lines.put((kind, line))
        except (OSError, ValueError):   # the pipe was closed by a kill
            pass
        finally:
            self._lines.put((kind, None))

    def _join_readers(self, timeout: float = 5.0) -> None:
        for reader in self._readers:
            reader.join(timeout)

    def _drain(self) -> None:
        """Handle the queued lines: stderr into the log, stdout as events."""
        while self.state == RUNNING:
            try:
                kind, line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                continue
            if kind == "stderr":
                self.output.append(line.rstrip("\r\n"))
                if self.on_line is not None:
                    self.on_line(self.output[-1])
                continue
            try:
                self._handle(parse_event(line, complete=line.endswith("\n")))
            except EventError as exc:
                kill_process_tree(self._process, grace_s=0.0)
                self.returncode = self._process.returncode
                self._set_state(FAILED, f"{self.name}: {exc}")

    def _handle(self, event) -> None:
        if isinstance(event, ProgressEvent):
            self._show_progress(event.fraction, event.phase)
            if self.on_progress is not None:
                self.on_progress(float("nan") if event.fraction is None else float(event.fraction), event.phase)
        elif isinstance(event, NoteEvent):
            self.notes.append(event.message)
            if self.on_note is not None:
                self.on_note(event)
        elif isinstance(event, ErrorEvent):
            self._error = event.message
        elif isinstance(event, ReportEvent):
            self.report = event
        else:
            self._handle_other(event)

    def _show_progress(self, fraction: Optional[float], phase: str) -> None:
        if fraction is not None:
            self.fraction = float(fraction)
        if phase:
            self.message = phase

    def _handle_other(self, event) -> None:
        """Hook: an event kind beyond progress, note, error and report."""
        log.warning("%s: ignoring a %s event", self.name, event.kind)

    def poll(self) -> str:
        """Advance the task: handle new output, notice the child's end, import the result. Returns the state."""
        if self.state != RUNNING:
            return self.state
        self._drain()
        if self.state != RUNNING:          # a malformed event line
            return self.state
        if self.on_poll is not None:
            self.on_poll(self)
        if self.state != RUNNING:          # on_poll may have cancelled
            return self.state
        code = self._process.poll()
        if code is None:
            return self.state
        self._join_readers()
        self._drain()
        if self.state != RUNNING:
            return self.state
        self.returncode = code
        if code != 0 or not self._complete():
            self._set_state(FAILED, self._failure_message(code))
            return self.state
        self.fraction = 1.0
        self._set_state(IMPORTING, "importing the result")
        try:
            self.result = self._import_result()
        except SpineSegError as exc:
            self._set_state(FAILED, str(exc))
        except Exception as exc:  # an import failure must end the task, never leave it "importing"
            log.exception("%s: importing the result failed", self.name)
            self._set_state(FAILED, f"importing the result failed: {type(exc).__name__}: {exc}")
        else:
            self._set_state(DONE, "done")
        return self.state

    def _complete(self) -> bool:
        """Hook: whether a child that exited with status 0 left all it must (the engine: a result event)."""
        return True

    def _import_result(self):
        """Hook: call ``finish``; its return value becomes :attr:`result`."""
        return self.finish(self) if self.finish is not None else None

    def _failure_message(self, code: int) -> str:
        """The child's one-line error, or what its exit status says: killed by a signal (the system's
        out-of-memory killer sends SIGKILL), or failed with the last lines of its output."""
        killed = killed_by(code, expected_error=self._error is not None)
        if killed:
            return f"{self.name}: {self.child} ended unexpectedly ({killed})"
        tail = "; ".join(line for line in self.output[-5:] if line.strip())
        return self._error or f"{self.name} failed (exit status {code}): {tail or 'no output'}"

    def wait(self, timeout: Optional[float] = None, interval: Optional[float] = None) -> str:
        """Poll until the task ends (scripts; the GUI uses a timer). Raises TimeoutError after ``timeout`` s."""
        interval = self.poll_interval_s if interval is None else interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() in (RUNNING, IDLE):
            if self.state == IDLE:
                raise BackgroundError(f"{self.name}: not started")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout} s")
            time.sleep(interval)
        return self.state

    def cancel(self) -> bool:
        """Kill the child and everything it started; False when there was nothing to cancel."""
        if self.state != RUNNING:
            return False
        if self.cancel_at_once:
            kill_process_tree(self._process, grace_s=0.0)
        else:
            kill_process_tree(self._process)
            self._join_readers()
            self._drain()
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
        for path in self.cleanup_paths:
            shutil.rmtree(path, ignore_errors=True)

    def result_when_done(self, timeout: Optional[float] = None):
        """Wait for the task (scripts, the console), cancelling it when the wait is interrupted; its ``result``,
        or the error of :meth:`raise_for_state`."""
        try:
            self.wait(timeout)
        except BaseException:
            self.cancel()
            raise
        self.raise_for_state()
        return self.result

    def raise_for_state(self) -> None:
        """Raise :class:`BackgroundError` (``Cancelled`` for a cancelled task) unless the task is done."""
        if self.state == DONE:
            return
        if self.state == CANCELLED:
            from SpineSegLib.core.progress import Cancelled

            raise Cancelled(f"{self.name}: cancelled by the user")
        raise BackgroundError(self.message or f"{self.name}: {self.state}")
