"""Small file helpers shared by the writers: atomic replacement, the ``--force`` check, write failures
as one-line errors, default permissions, checksums, fsync.

Every file SpineSeg writes goes through :func:`replaced_atomically`: the data goes to a temporary file
beside the target, which replaces the target in one rename only when the writer finished and the disk
still has room; any failure leaves no partial file under the final name and the old file untouched, and
an ``OSError`` (disk full, read-only file system, no permission ...) becomes a :class:`WriteError`
("cannot write spine.nii.gz: no space left on device") that the CLI prints as one line.

Console use::

    from SpineSegLib.core.files import check_force, replaced_atomically, sha256_of
    check_force("table.csv", force=False)       # refuses an existing file, an unwritable folder
    with replaced_atomically("table.csv") as tmp:
        Path(tmp).write_text("a,b\\n")
    sha256_of("table.csv")
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from SpineSegLib.core.errors import OutputExistsError, WriteError

#: errors that are a failed write wherever they come from (never a bug, never about an input)
WRITE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG", "EIO")
                         if hasattr(errno, name))
#: bytes written by the room check after a write (random: a compressing file system stores zeros as holes)
ROOM_PROBE_BYTES = 64 * 1024


# -- write failures --------------------------------------------------------------------------------------
def describe_os_error(exc: OSError) -> str:
    """The cause of ``exc`` as a lower-case phrase: ``"no space left on device"``."""
    text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc) or type(exc).__name__)
    return text[:1].lower() + text[1:]


def write_failure(path, exc: OSError) -> WriteError:
    """The :class:`WriteError` for a failed write of ``path``: ``cannot write PATH: CAUSE``."""
    return WriteError(f"cannot write {path}: {describe_os_error(exc)}")


@contextmanager
def write_guard(path):
    """Raise an ``OSError`` of the block as :func:`write_failure` of ``path`` (for writes that cannot go
    through :func:`replaced_atomically`: lock files, hard links, whole folders)."""
    try:
        yield
    except OSError as exc:
        raise write_failure(path, exc) from exc


def check_room(folder, name: str = "") -> None:
    """Raise ``OSError`` (ENOSPC, EDQUOT ...) when ``folder`` has no room for :data:`ROOM_PROBE_BYTES` more.

    Run after a writer that may have failed without saying so: ITK's image writers and torch report a
    full disk with a truncated file and no error, or with an unrelated message. A writer cut short
    has filled the disk, so this small write fails too."""
    fd, probe = tempfile.mkstemp(prefix=f".{name}.", suffix=".room.tmp", dir=folder)
    try:
        data = memoryview(os.urandom(ROOM_PROBE_BYTES))
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
        os.remove(probe)


def _is_about(exc: OSError, tmp: str) -> bool:
    """Whether ``exc``, raised while writing ``tmp``, is a failure of that write (not of reading an input)."""
    if exc.errno in WRITE_ERRNOS or exc.filename is None:
        return True
    names = {os.path.abspath(str(n)) for n in (exc.filename, exc.filename2) if n is not None}
    return os.path.abspath(tmp) in names


def _unwritable_cause(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS).lower()
    except (AttributeError, OSError):   # no statvfs (Windows)
        pass
    return os.strerror(errno.EACCES).lower()


def check_can_write(path) -> Path:
    """Raise :class:`WriteError` when ``path`` (a file, or a folder to fill) cannot be created: its
    nearest existing folder is a file, on a read-only file system or not writable for this user."""
    path = Path(path)
    anchor = path if path.is_dir() else path.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if anchor.exists() and not anchor.is_dir():
        raise WriteError(f"cannot write {path}: {anchor} is not a folder")
    if anchor.exists() and not os.access(anchor, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {path}: {_unwritable_cause(anchor)}")
    return path


def check_force(path, force: bool = False, what: str = "") -> Path:
    """The one "refuse unless --force" check: raise :class:`OutputExistsError` when ``path`` exists
    (a non-empty folder, for a folder) and ``force`` is false, and :class:`WriteError` when it could
    not be written (:func:`check_can_write`); return ``path`` as a :class:`Path`."""
    path = Path(path)
    exists = any(path.iterdir()) if path.is_dir() else path.exists()
    if exists and not force:
        label = f"{what} {path}" if what else str(path)
        state = "is not empty" if path.is_dir() else "exists"
        raise OutputExistsError(f"{label} {state}; pass --force (force=True) to overwrite it")
    return check_can_write(path)


# -- writing -----------------------------------------------------------------------------------------
def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8, lines end in ``\\n`` as given) to ``path`` through :func:`replaced_atomically`."""
    path = Path(path)
    with replaced_atomically(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:   # "\n" on every platform
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return path


@contextmanager
def checked_write(path, tmp):
    """Run a writer of the file ``tmp`` (the data of ``path``): an ``OSError`` of that write, or another
    error while the disk is full (:func:`check_room`), raises :func:`write_failure` of ``path``; so does
    a full disk after a writer that said nothing (ITK). Other errors pass unchanged."""
    folder, name = Path(tmp).parent, Path(path).name
    try:
        yield
    except OSError as exc:
        if _is_about(exc, str(tmp)):
            raise write_failure(path, exc) from exc
        raise
    except Exception:      # a library writer's own error for a full disk, or a real bug: the room check tells
        with write_guard(path):
            check_room(folder, name)
        raise
    with write_guard(path):
        check_room(folder, name)


@contextmanager
def replaced_atomically(path, suffix: str = ".tmp"):
    """Yield a temporary file name beside ``path``; when the block ends without an error and the disk
    still has room (:func:`checked_write`) the file gets default permissions and replaces ``path`` in
    one rename, else it is removed. A reader never sees a half-written ``path``, and a failed write
    leaves the old ``path`` as it was. Failures of the write raise :class:`WriteError`."""
    path = Path(path)
    with write_guard(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    try:
        with checked_write(path, tmp):
            yield tmp
        with write_guard(path):
            set_default_permissions(tmp)
            os.replace(tmp, path)
    finally:
        try:
            os.remove(tmp)
        except OSError:   # renamed into place, or already gone
            pass


def set_default_permissions(path) -> None:
    """Give a file made with ``tempfile.mkstemp`` (mode 0600) the mode a plain ``open`` would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def sha256_of(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path) -> None:
    """Flush a file's data or a folder's entries to disk (a no-op where that is not possible)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
