"""Label conventions: how the values of a dataset's label file map onto SpineSeg's VerSe ids
(``SpineSegLib.core.labels``).

A convention is a string ``KIND`` or ``KIND:NAME`` (:data:`CONVENTION_KINDS`):

* ``verse`` -- values 1-25 and 28 are VerSe ids; 26 (sacrum) and anything else is background.
* ``tptbox`` -- ``verse`` plus discs 100 + v and endplates 200 + v (counted as part of v).
* ``spider`` / ``spider:NAME`` -- SPIDER numbering; vertebra 1 is NAME (else: identity unknown).
* ``top-down:NAME`` / ``bottom-up:NAME`` -- value 1 is NAME, 2 the next one down / up the spine;
  without ``:NAME`` the order is kept but the identity is unknown.
* ``by-position:NAME`` -- values in any order; sorted by height, the lowest is NAME.
* ``discs-bottom-up:NAME`` -- disc labels only; value 1 is the disc below NAME, 2 the one above ...

:func:`resolve_convention` turns a convention and the values present into a :class:`LabelMap`.

Console use::

    from SpineSegLib.iis.train.conventions import resolve_convention
    resolve_convention("top-down:L1", [1, 2, 3, 4, 5]).vertebrae    # {1: 20, 2: 21, 3: 22, 4: 23, 5: 24}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.labels import VERTEBRAE, by_name, next_label

TARGET_IDS = tuple([*range(1, 26), 28])   # vertebra ids the network segments (the sacrum is not one)


def label_values(array: np.ndarray) -> list[int]:
    """The non-zero values of a label map, ascending (bincount: much faster than np.unique)."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() < 1 << 24:
        return [int(v) for v in np.nonzero(np.bincount(array.ravel()))[0] if v]
    return [int(v) for v in np.unique(array) if v]


@dataclass
class LabelMap:
    """Meaning of the values of one label map.

    ``vertebrae``: value -> key, where the key is a VerSe id when ``identified`` and otherwise a
    relative rank that grows down the spine. ``discs``: value -> key of the vertebra *above* the
    disc. ``merged``: values that belong to a vertebra (TPTBox endplates). ``canal``: values of the
    spinal canal. Values in none of these are background.
    """

    vertebrae: dict
    identified: bool
    discs: dict = field(default_factory=dict)
    merged: dict = field(default_factory=dict)
    canal: tuple = ()

    def order(self, key) -> float:
        """Position of a vertebra key along the spine, growing downwards."""
        return VERTEBRAE[key].order if self.identified else float(key)


def _sequence_from(name: str, count: int, downwards: bool) -> list[int]:
    try:
        first = by_name(name).label
    except KeyError as exc:
        raise InputError(str(exc).strip("'\"")) from None
    ids = [first]
    for _ in range(count - 1):
        try:
            ids.append(next_label(ids[-1], 1 if downwards else -1))
        except ValueError:
            raise InputError(f"label convention: {count} vertebrae counted from {name} run past the end of the spine") from None
    return ids


CONVENTION_KINDS = ("verse", "tptbox", "spider", "top-down", "bottom-up", "by-position", "discs-bottom-up")


def validate_convention(convention: str) -> None:
    """Raise :class:`InputError` unless ``convention`` is well-formed (its vertebra name included)."""
    kind, _, name = str(convention).partition(":")
    if kind not in CONVENTION_KINDS:
        raise InputError(f"unknown label convention {convention!r} (use verse, tptbox, spider[:NAME], top-down[:NAME], "
                         "bottom-up[:NAME], by-position[:NAME] or discs-bottom-up:NAME)")
    if kind in ("verse", "tptbox") and name:
        raise InputError(f"label convention {kind!r} takes no vertebra name")
    if kind == "discs-bottom-up" and not name:
        raise InputError("label convention 'discs-bottom-up' needs the vertebra above the lowest disc, e.g. 'discs-bottom-up:L5'")
    if name:
        try:
            by_name(name)
        except KeyError:
            raise InputError(f"label convention {convention!r}: unknown vertebra name {name!r}") from None


def resolve_convention(convention: str, values=None, label_array: np.ndarray | None = None) -> LabelMap:
    """The :class:`LabelMap` of ``convention`` for a label map holding ``values``.

    ``values`` (non-zero label values present) may be None for conventions that do not depend on
    them; ``label_array`` (canonical ``[z, y, x]``) is needed for ``by-position``.
    """
    validate_convention(convention)
    kind, _, name = convention.partition(":")
    vals = sorted(values) if values is not None else None
    if kind == "verse":
        present = vals if vals is not None else TARGET_IDS
        return LabelMap({v: v for v in present if v in TARGET_IDS}, True)
    if kind == "tptbox":
        present = vals if vals is not None else [*TARGET_IDS, *(100 + v for v in TARGET_IDS), *(200 + v for v in TARGET_IDS)]
        verts = {v: v for v in present if v in TARGET_IDS}
        return LabelMap(verts, True,
                        discs={v: v - 100 for v in present if 100 < v < 200 and v - 100 in TARGET_IDS},
                        merged={v: v - 200 for v in present if 200 < v < 300 and v - 200 in TARGET_IDS})
    if kind == "spider":
        present = vals if vals is not None else [*range(1, 100), 100, *range(201, 300)]
        ranks = [v for v in present if 0 < v < 100]
        discs = [v for v in present if v > 200]
        if name:
            ids = _sequence_from(name, max(ranks + [d - 200 for d in discs] + [1]), downwards=False)
            verts = {k: ids[k - 1] for k in ranks}
            disc_map = {d: ids[d - 201] for d in discs}
            return LabelMap(verts, True, discs=disc_map, canal=(100,) if 100 in present else ())
        return LabelMap({k: -k for k in ranks}, False, discs={d: -(d - 200) for d in discs},
                        canal=(100,) if 100 in present else ())
    if kind in ("top-down", "bottom-up"):
        if vals is None:
            raise InputError(f"label convention {convention!r} needs the label values")
        downwards = kind == "top-down"
        if name:
            ids = _sequence_from(name, max(vals), downwards)
            return LabelMap({v: ids[v - 1] for v in vals}, True)
        return LabelMap({v: (v if downwards else -v) for v in vals}, False)
    if kind == "by-position":
        if label_array is None or vals is None:
            raise InputError(f"label convention {convention!r} needs the label map itself")
        heights = ndimage.center_of_mass(np.ones(label_array.shape, bool), label_array, vals)
        by_height = [v for _, v in sorted(zip([h[0] for h in heights], vals))]   # lowest first (z superior)
        if name:
            ids = _sequence_from(name, len(vals), downwards=False)
            return LabelMap({v: ids[i] for i, v in enumerate(by_height)}, True)
        return LabelMap({v: -i for i, v in enumerate(by_height)}, False)
    if kind == "discs-bottom-up":
        if not name:
            raise InputError("label convention 'discs-bottom-up' needs the vertebra above the lowest disc, e.g. 'discs-bottom-up:L5'")
        present = vals if vals is not None else list(range(1, 25))
        ids = _sequence_from(name, max(present), downwards=False)
        return LabelMap({}, True, discs={v: ids[v - 1] for v in present})
    raise InputError(f"unknown label convention {convention!r} (use verse, tptbox, spider[:NAME], top-down[:NAME], "
                     "bottom-up[:NAME], by-position[:NAME] or discs-bottom-up:NAME)")
