"""Imported label maps in another label convention, mapped onto the VerSe ids every dataset stores.

The conventions are the training readers' (:func:`SpineSegLib.iis.train.conventions.resolve_convention`):
``verse`` (and ``tptbox``) keep the values; ``top-down:L1``, ``bottom-up:L5``, ``by-position:L5``,
``spider:L5`` ... name the vertebrae by position from one whose name is given. Vertebrae, discs
(100 + id) and the canal (61) are kept; values the convention gives no meaning are dropped with a
warning.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.annotation.conventions import convert_labels
    verse, warnings = convert_labels(read_image("01_vb.nii.gz"), "top-down:L1")   # 1-5 -> 20-24
"""

from __future__ import annotations

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.evaluation.label_maps import label_ids


def convert_labels(label: Image, convention: str) -> tuple[Image, list]:
    """Map a label map in ``convention`` (module docstring) onto VerSe ids; returns it and warnings."""
    if convention in ("verse", "tptbox"):
        return label, []
    from SpineSegLib.iis.train.conventions import resolve_convention   # the training readers: imported on use

    canonical = to_canonical(label).image.array
    values = label_ids(label.array)
    lmap = resolve_convention(convention, values, canonical)
    if not lmap.identified:
        raise InputError(f"label convention {convention!r} does not name the vertebrae; give the name of the first, "
                         f"e.g. '{convention.split(':')[0]}:L1'")
    lut = np.zeros(max(values, default=0) + 1, np.uint16)
    for v, vid in lmap.vertebrae.items():
        lut[v] = vid
    for v, vid in lmap.merged.items():
        lut[v] = vid
    for v, vid in lmap.discs.items():
        lut[v] = 100 + vid
    for v in lmap.canal:
        lut[v] = 61
    dropped = [v for v in values if lut[v] == 0]
    warnings = ([f"values {', '.join(map(str, dropped))} have no meaning in convention {convention!r}; dropped"]
                if dropped else [])
    out = lut[np.asarray(label.array).astype(np.int64)]
    return label.with_array(out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)), warnings
