"""Notes: what the library chose on the user's behalf while reading an input, told as a warning.

A note is not an error: the input was usable, but a choice was made that the user should know about (a DICOM
folder held several series and one of them was read; exact duplicate slices were dropped). Notes are Python
warnings of the category :class:`InputNote`, issued with :func:`note`, so that

* a script or the Slicer Python console shows them as any warning (once per message and place, Python's default);
* the ``spineseg`` command line prints every one as a single line ``spineseg: note: ...`` on stderr
  (:func:`notes_on_stderr` around the command);
* a caller that keeps them (a dataset import that stores them, a GUI that shows them) collects them with
  ``warnings.catch_warnings(record=True)`` and ``issubclass(w.category, InputNote)``, or with :func:`collect_notes`.

Console use::

    from SpineSegLib.core.notes import collect_notes
    from SpineSegLib.core.image import read_image
    with collect_notes() as notes:
        ct = read_image("study/")                   # a folder with a CT and a scout series
    print(notes)     # ['study: holds 2 DICOM series (...); read the largest CT series ...']
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

#: how the command line prefixes a note
CLI_PREFIX = "spineseg: note: "


class InputNote(UserWarning):
    """A choice made while reading an input that the user should know about (not an error)."""


def note(message: str, stacklevel: int = 3) -> None:
    """Issue ``message`` as an :class:`InputNote` (``stacklevel`` as in :func:`warnings.warn`)."""
    warnings.warn(message, InputNote, stacklevel=stacklevel)


@contextmanager
def collect_notes():
    """Collect the notes issued inside the block (every one, none shown) into the yielded list of strings;
    other warnings pass on as usual."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputNote)
        yield notes
    for w in caught:
        if issubclass(w.category, InputNote):
            notes.append(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@contextmanager
def notes_to(tell):
    """Inside the block, pass every note at once to ``tell`` as one line of text (its whitespace collapsed);
    other warnings are shown as Python shows them."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputNote):
            tell(" ".join(str(message).split()))
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", InputNote)
        warnings.showwarning = show
        yield


def notes_on_stderr(stream=None):
    """Inside the block, print every note at once as one line ``spineseg: note: MESSAGE`` on ``stream``
    (stderr); other warnings are shown as Python shows them (:func:`notes_to`)."""
    return notes_to(lambda text: print(CLI_PREFIX + text, file=stream or sys.stderr, flush=True))
