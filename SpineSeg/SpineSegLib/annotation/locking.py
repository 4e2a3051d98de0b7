"""Lock files that serialise writes to an annotation dataset (one per case, one for ``dataset.json``).

A lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+ / SMB)
holding who holds it: process id, host, user, time and a random token. It is held only while a
manifest is re-read, the next version number is chosen, the label file is moved into place and the
manifest is rewritten -- milliseconds; the slow work (writing the label map) happens before.

Stale locks (their holder crashed or was killed) are broken when the holder's process no longer
exists on this host, or when the lock is older than ``stale_after`` seconds (default 120 s, far
longer than any commit takes). The break renames the lock file away first, so of two processes
that find the same stale lock, only one removes it. Waiting longer than ``timeout`` raises
:class:`DatasetLockedError` naming the holder.

:func:`commit_lock` is what every writer of the dataset takes: the lock, with Ctrl-C held back
until the commit is done (a commit is never left half-way by an interrupt; a kill is what
``check --repair`` is for).

Console use::

    from SpineSegLib.annotation.locking import FileLock, commit_lock
    with FileLock("ds/cases/07.lock"):
        ...   # read-modify-write of cases/07.json
    with commit_lock("ds/cases/07.lock"):
        ...   # the same, and Ctrl-C waits until the block is done
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.files import write_failure, write_guard
from SpineSegLib.annotation.manifest import current_user, now_iso

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_STALE_AFTER_S = 120.0


class DatasetLockedError(SpineSegError):
    """Another process holds the lock longer than we are willing to wait."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """An exclusive lock file (see the module docstring); use as a context manager."""

    def __init__(self, path, timeout: float = DEFAULT_TIMEOUT_S, stale_after: float = DEFAULT_STALE_AFTER_S,
                 poll: float = 0.02):
        self.path = Path(path)
        self.timeout, self.stale_after, self.poll = float(timeout), float(stale_after), float(poll)
        self.token: str | None = None

    # -- holder information -----------------------------------------------------------------------
    def read_holder(self) -> dict | None:
        """Who holds the lock (the lock file's content); None when it is free, ``{}`` when unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            data = json.loads(text)
            return data if isinstance(data, dict) else {}
        except ValueError:
            return {}

    def is_stale(self, holder: dict) -> bool:
        """Whether the lock ``holder`` (from :meth:`read_holder`) holds is left over (module docstring)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if not holder:           # empty or garbled: its writer died between create and write
            return age > 5.0
        if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1))):
            return True
        return age > self.stale_after

    def break_stale(self, holder: dict) -> None:
        """Remove the stale lock of ``holder``; of several processes breaking it at once only one does."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else broke it first
        try:
            moved = json.loads(aside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {}
        if holder and moved.get("token") != holder.get("token"):
            # between our look and the rename another process broke the stale lock and took a fresh
            # one: put that back (link never replaces a newer lock file)
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        try:
            os.remove(aside)
        except OSError:
            pass

    @staticmethod
    def describe(holder: dict | None) -> str:
        if not holder:
            return "an unknown process"
        return (f"{holder.get('user', '?')} (process {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"since {holder.get('time', '?')})")

    # -- acquire / release ------------------------------------------------------------------------
    def acquire(self) -> "FileLock":
        with write_guard(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        info = {"pid": os.getpid(), "host": socket.gethostname(), "user": current_user(), "time": now_iso(),
                "token": token}
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(str(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.read_holder()
                if holder is not None and self.is_stale(holder):
                    self.break_stale(holder)
                    continue
                if time.monotonic() > deadline:
                    raise DatasetLockedError(
                        f"{self.path} is held by {self.describe(holder)}; try again, or delete the lock file if "
                        "that process is gone") from None
                time.sleep(self.poll)
                continue
            except OSError as exc:       # a read-only or full disk, no permission
                raise write_failure(self.path, exc) from exc
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(json.dumps(info))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:       # a full disk: take the empty lock file away again
                with contextlib.suppress(OSError):
                    os.remove(self.path)
                raise write_failure(self.path, exc) from exc
            self.token = token
            return self

    def release(self) -> None:
        if self.token is None:
            return
        holder = self.read_holder()
        if holder and holder.get("token") == self.token:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.token = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def deferred_interrupt():
    """Hold Ctrl-C back for the duration of the block (main thread only), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: received.append(True))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


@contextlib.contextmanager
def commit_lock(path):
    """:class:`FileLock` ``path`` with Ctrl-C deferred (:func:`deferred_interrupt`) while it is held."""
    with deferred_interrupt(), FileLock(path) as lock:
        yield lock
