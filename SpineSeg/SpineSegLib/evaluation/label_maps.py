"""Checks and id selection for the integer label maps the instance evaluation compares.

Console use::

    from SpineSegLib.evaluation.label_maps import label_array, label_ids, select_ids
    labels = label_array(read_image("vertebrae.nii.gz").array, "reference")   # InputError unless a label map
    label_ids(labels)                   # [16, 17, ..., 24]
    select_ids(labels, [20, 21])        # every other id set to 0
"""

from __future__ import annotations

import numpy as np

from SpineSegLib.core.errors import InputError

#: the largest label id accepted (bounding boxes are kept in a list indexed by id)
MAX_LABEL_ID = 2**20


def label_array(array, what: str) -> np.ndarray:
    """An integer array of non-negative ids, or InputError naming the problem."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise InputError(f"the {what} holds non-integer values; instance evaluation needs a label map")
        array = array.astype(np.int64 if np.abs(array).max(initial=0) >= 2**31 else np.int32)
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"the {what} has voxel type {array.dtype}; a label map of integer ids is needed")
    if np.issubdtype(array.dtype, np.signedinteger) and array.min(initial=0) < 0:
        raise InputError(f"the {what} holds negative label ids; ids must be >= 0")
    if array.dtype.itemsize > 2 and array.max(initial=0) > MAX_LABEL_ID:
        raise InputError(f"the {what} holds label id {int(array.max())}; ids up to {MAX_LABEL_ID} are supported")
    return array


def select_ids(array: np.ndarray, ids) -> np.ndarray:
    """``array`` with every id not in ``ids`` set to 0 (None: unchanged)."""
    if ids is None:
        return array
    return np.where(np.isin(array, list(ids)), array, 0).astype(array.dtype, copy=False)


def label_ids(array) -> list[int]:
    """The non-zero values of a label map, ascending (bincount for non-negative integers: ~50x faster than
    np.unique)."""
    arr = np.asarray(array)
    if arr.size == 0:
        return []
    if arr.dtype.kind in "ub" or (arr.dtype.kind == "i" and arr.min() >= 0):
        counts = np.bincount(arr.ravel().astype(np.intp, copy=False))
        return [int(v) for v in np.flatnonzero(counts) if v]
    return [int(v) for v in np.unique(arr) if v]
