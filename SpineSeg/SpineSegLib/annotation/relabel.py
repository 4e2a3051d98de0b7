"""Renumbering vertebrae: "this one is T12" and the rest of the sequence follows.

The vertebrae of a label map are put in order from the head down by the height (LPS z, superior)
of their centroids. The chosen vertebra gets the new id; the k-th vertebra above it gets the id k
steps up the spine (``labels.next_label``), the k-th below it the id k steps down. Discs
(100 + id) and endplates (200 + id) follow their vertebra. The sacrum (26) keeps its id: it is
unmistakable, and a lumbar vertebra that would be renumbered onto it means a sixth lumbar vertebra
(``allow_l6``). With ``only=True`` just the chosen vertebra is renamed (refused when its new id is
already taken). Values that are not vertebrae (canal 61, unknown ids) are never touched.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.annotation.relabel import relabel_vertebrae
    result = relabel_vertebrae(read_image("vertebrae.nii.gz"), vertebra="L1", as_name="T12")
    result.mapping          # {20: 19, 21: 20, 22: 21, 19: 18}
    result.image            # the renumbered label map (same grid)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE, by_name, name_of, next_label
from SpineSegLib.evaluation.label_maps import label_ids

SACRUM = 26
DISC_OFFSET, ENDPLATE_OFFSET = 100, 200


@dataclass
class RelabelResult:
    image: Image | None         # the renumbered map (None from relabel_array)
    array: np.ndarray
    mapping: dict               # old id -> new id, vertebrae whose id changes (discs/endplates follow)

    @property
    def changed(self) -> bool:
        return bool(self.mapping)

    def describe(self) -> str:
        if not self.mapping:
            return "no vertebra changes its id"
        return ", ".join(f"{name_of(o)} -> {name_of(n)}" for o, n in self.mapping.items())


def vertebra_id(value) -> int:
    """A VerSe id from an id (``20``, ``"20"``) or a name (``"L1"``, ``"sacrum"``)."""
    if isinstance(value, (int, np.integer)):
        vid = int(value)
    else:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            vid = int(text)
        else:
            try:
                vid = by_name(text).label
            except KeyError as exc:
                raise InputError(str(exc).strip("'\"")) from None
    if vid not in VERTEBRAE:
        raise InputError(f"{value!r} is not a vertebra id of the label table (1-26, 28)")
    return vid


def label_centroids(array: np.ndarray, ids) -> dict:
    """``{id: (k, j, i)}`` centroid (continuous array index) of each id present (bincounts over the
    labelled voxels only: ~20x faster than ``ndimage.center_of_mass`` on a whole scan)."""
    array = np.asarray(array)
    flat = np.flatnonzero(array)
    values = array.ravel()[flat].astype(np.intp)
    kji = np.unravel_index(flat, array.shape)
    counts = np.bincount(values)
    sums = [np.bincount(values, weights=axis) for axis in kji]
    out = {}
    for v in ids:
        v = int(v)
        if v < len(counts) and counts[v]:
            out[v] = tuple(float(s[v] / counts[v]) for s in sums)
    return out


def vertebra_heights(array: np.ndarray, ids, index_to_lps: np.ndarray | None = None) -> dict:
    """Superior coordinate (LPS z, mm) of each id's centroid; without a matrix: minus the first
    array index (``[k, j, i]`` with k growing downwards is assumed)."""
    ids = [int(i) for i in ids]
    if not ids:
        return {}
    heights = {}
    for vid, com in label_centroids(array, ids).items():
        kji = np.asarray(com, float)
        if index_to_lps is None:
            heights[vid] = -kji[0]
        else:
            heights[vid] = float((np.asarray(index_to_lps) @ np.append(kji[::-1], 1.0))[2])
    return heights


def relabel_array(array: np.ndarray, vertebra, as_name, *, index_to_lps: np.ndarray | None = None,
                  only: bool = False, allow_t13: bool = False, allow_l6: bool = False) -> RelabelResult:
    """Renumber the vertebrae of a label array (module docstring); ``index_to_lps`` is the 4x4
    ``Image.index_to_lps_matrix()`` that gives the heights."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"a label map must hold integers, not {array.dtype}")
    old = vertebra_id(vertebra)
    new = vertebra_id(as_name)
    allow_t13 = allow_t13 or new == 28
    allow_l6 = allow_l6 or new == 25
    present = label_ids(array)
    if old not in present:
        names = ", ".join(name_of(v) for v in present if v in VERTEBRAE) or "none"
        raise InputError(f"the label map has no {name_of(old)} (id {old}); its vertebrae: {names}")
    movable = [v for v in present if v in VERTEBRAE and v != SACRUM]
    if old == SACRUM:
        movable = sorted(set(movable) | {SACRUM})
    if only:
        mapping = {old: new} if new != old else {}
        if new != old and new in present:
            raise InputError(f"{name_of(new)} is already used by another vertebra; renumber the whole sequence "
                             "instead (leave out --only)")
    else:
        heights = vertebra_heights(array, movable, index_to_lps)
        top_down = sorted(movable, key=lambda v: -heights[v])
        t = top_down.index(old)
        mapping = {}
        for i, v in enumerate(top_down):
            try:
                target = next_label(new, i - t, allow_t13=allow_t13, allow_l6=allow_l6)
            except ValueError:
                where = "above C1" if i < t else "below the sacrum"
                raise InputError(f"calling {name_of(old)} {name_of(new)} puts {name_of(v)} {where}: "
                                 f"{t} vertebra(e) lie above it and {len(top_down) - t - 1} below") from None
            if target == SACRUM and SACRUM in present and v != SACRUM:
                raise InputError(f"calling {name_of(old)} {name_of(new)} makes {name_of(v)} the sacrum, which is "
                                 "labelled already; a sixth lumbar vertebra needs allow_l6 (--allow-l6)")
            if target != v:
                mapping[v] = target
    lut_size = max(int(array.max()) + 1, 1)
    lut = np.arange(lut_size, dtype=np.int64)
    for o, n in mapping.items():
        lut[o] = n
        for offset in (DISC_OFFSET, ENDPLATE_OFFSET):
            if o + offset < lut_size:
                lut[o + offset] = n + offset
    out = lut[array] if mapping else array.copy()
    dtype = np.uint8 if out.max(initial=0) < 256 else np.uint16
    return RelabelResult(None, out.astype(dtype), mapping)


def relabel_vertebrae(label_image: Image, vertebra, as_name, *, only: bool = False, allow_t13: bool = False,
                      allow_l6: bool = False) -> RelabelResult:
    """Renumber the vertebrae of ``label_image`` so that ``vertebra`` (id or name) becomes ``as_name``
    and the others follow (module docstring). The result lies on the same grid."""
    res = relabel_array(label_image.array, vertebra, as_name, index_to_lps=label_image.index_to_lps_matrix(),
                        only=only, allow_t13=allow_t13, allow_l6=allow_l6)
    res.image = label_image.with_array(res.array)
    return res
