"""A test hook: a crash injected between the steps of saving a label version.

The crash-safety tests set :data:`FAULT_HOOK` to a function that raises, or sleeps until the
test kills the process, at one of the named points of a commit (:func:`.versions.commit_version`):
``"sidecar-written"``, ``"label-written"``, ``"manifest-written"``. They then check that the
dataset is as before, or that ``check(repair=True)`` recovers the interrupted save. Nothing else
sets it; while it is None, :func:`fault` does nothing.

Console use::

    from SpineSegLib.annotation import faults
    def crash(point):
        if point == "label-written":
            raise RuntimeError("disk unplugged")
    faults.FAULT_HOOK = crash          # the next save stops after placing its label file
"""

from __future__ import annotations

from typing import Callable, Optional

#: called with the name of each point a commit passes (tests only)
FAULT_HOOK: Optional[Callable[[str], None]] = None


def fault(point: str) -> None:
    """Call :data:`FAULT_HOOK` with ``point`` when a test has set it."""
    if FAULT_HOOK is not None:
        FAULT_HOOK(point)
