"""Errors that name the user's problem. The CLI prints them as one line and exits non-zero.

Console use::

    from SpineSegLib.core.errors import InputError, Interrupted, WriteError
    raise InputError("ct.nii.gz: the image is 2-D")          # spineseg: error: ct.nii.gz: the image is 2-D (status 2)
    raise WriteError("cannot write spine.nii.gz: no space left on device")
    raise Interrupted("state saved at iteration 40; continue with --resume")   # spineseg: interrupted: ... (130)
"""


class SpineSegError(Exception):
    """Base class: a problem with the user's input or set-up, reported without a traceback."""


class InputError(SpineSegError):
    """The input file or volume cannot be used (unreadable, wrong dimension, empty, NaNs ...)."""


class NoSpineFoundError(SpineSegError):
    """The image was read, but no spine could be found in it."""


class OutputExistsError(SpineSegError):
    """The output file exists and overwriting it was not allowed."""


class WriteError(SpineSegError):
    """A file could not be written: read-only or full disk, no permission, a path through a file ...
    (:mod:`SpineSegLib.core.files` raises it; the old file of that name, if any, is left as it was)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was kept and how to continue. A :class:`KeyboardInterrupt` (every handler of one
    still sees it); the CLI prints ``spineseg: interrupted: <message>`` and exits with status 130."""
