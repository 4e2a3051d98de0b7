"""Errors that name the user's problem. The CLI prints them as one line and exits non-zero."""


class SpineSegError(Exception):
    """Base class: a problem with the user's input or set-up, reported without a traceback."""


class InputError(SpineSegError):
    """The input file or volume cannot be used (unreadable, wrong dimension, empty, NaNs ...)."""


class NoSpineFoundError(SpineSegError):
    """The image was read, but no spine could be found in it."""


class OutputExistsError(SpineSegError):
    """The output file exists and overwriting it was not allowed."""
