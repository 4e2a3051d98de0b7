"""Small file helpers shared by the writers: atomic replacement, default permissions, checksums, fsync.

Console use::

    from SpineSegLib.core.files import replaced_atomically, sha256_of
    with replaced_atomically("table.csv") as tmp:
        Path(tmp).write_text("a,b\n")
    sha256_of("table.csv")
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from SpineSegLib.core.errors import OutputExistsError


def check_force(path, force: bool = False, what: str = "") -> Path:
    """The one "refuse unless --force" check: raise :class:`OutputExistsError` when ``path`` exists
    (a non-empty folder, for a folder) and ``force`` is false; return ``path`` as a :class:`Path`."""
    path = Path(path)
    exists = any(path.iterdir()) if path.is_dir() else path.exists()
    if exists and not force:
        label = f"{what} {path}" if what else str(path)
        state = "is not empty" if path.is_dir() else "exists"
        raise OutputExistsError(f"{label} {state}; pass --force (force=True) to overwrite it")
    return path


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
def replaced_atomically(path, suffix: str = ".tmp"):
    """Yield a temporary file name beside ``path``; when the block ends without an error the file
    gets default permissions and replaces ``path`` in one rename, else it is removed. A reader
    never sees a half-written ``path``, and a failed write leaves the old ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        set_default_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
