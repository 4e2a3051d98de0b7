"""Overlap and surface-distance metrics, in millimetres, that respect voxel spacing.

Definitions (A = prediction, B = reference, both binary; S(X) = the surface voxels of X, i.e. the
voxels of X with at least one 6-neighbour outside X; d(x, Y) = the Euclidean distance in mm from
the centre of voxel x to the nearest voxel centre of Y):

* **IoU** (Jaccard, Revy et al. Eq. 7): ``|A n B| / |A u B|``.
* **DSC** (Dice, Eq. 8): ``2 |A n B| / (|A| + |B|)``.
* **HD95**: ``max(P95{d(a, S(B)) : a in S(A)}, P95{d(b, S(A)) : b in S(B)})`` -- the larger of the
  two directed 95th-percentile surface distances (the definition of MONAI and nnU-Net).
* **ASSD** (average symmetric surface distance, Heimann et al. 2009, the definition Lessmann
  et al. report): the mean over *all* surface voxels of both masks of their distance to the other
  surface, ``(sum_{a in S(A)} d(a, S(B)) + sum_{b in S(B)} d(b, S(A))) / (|S(A)| + |S(B)|)``.

Conventions for empty masks: both empty -> IoU = DSC = 1 and distances 0; exactly one empty ->
IoU = DSC = 0 and distances NaN (undefined; reported as missing, never as a number).

Console use::

    from SpineSegLib.evaluation.metrics import binary_metrics
    m = binary_metrics(pred_mask, ref_mask, spacing=(0.70, 0.70, 2.5))   # spacing in (i, j, k) order
    m["dsc"], m["hd95_mm"]
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from SpineSegLib.core import notes
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.grids import conform
from SpineSegLib.core.image import Image


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one 6-connected neighbour outside it (the border counts as outside)."""
    mask = np.asarray(mask, bool)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def surface_distances(a: np.ndarray, b: np.ndarray, spacing_zyx) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: ``d(S(A) -> S(B))`` and ``d(S(B) -> S(A))``.

    ``spacing_zyx`` is given in numpy axis order. Work is cropped to the bounding box of A u B.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = a | b
    if not union.any():
        return np.zeros(0), np.zeros(0)
    box = ndimage.find_objects(union.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    a, b = a[box], b[box]
    sa, sb = surface(a), surface(b)
    if not sa.any() or not sb.any():
        return np.full(np.count_nonzero(sa), np.nan), np.full(np.count_nonzero(sb), np.nan)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing_zyx)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing_zyx)
    return dist_to_b[sa], dist_to_a[sb]


def hd95_of(da, db, any_a, any_b) -> float:
    """HD95 in mm from the two masks' :func:`surface_distances` (``any_*``: whether each mask has a voxel)."""
    if not any_a and not any_b:
        return 0.0
    if not any_a or not any_b:
        return math.nan
    return float(max(np.percentile(da, 95), np.percentile(db, 95)))


def assd_of(da, db, any_a, any_b) -> float:
    """ASSD in mm from the two masks' :func:`surface_distances` (``any_*``: whether each mask has a voxel)."""
    if not any_a and not any_b:
        return 0.0
    if not any_a or not any_b:
        return math.nan
    return float((da.sum() + db.sum()) / (da.size + db.size))


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> dict:
    """IoU, DSC, HD95 and ASSD of two binary masks on the same grid.

    ``spacing`` is in ITK ``(i, j, k)`` order, as :attr:`Image.spacing`; masks are numpy ``[k, j, i]``.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise InputError(f"masks differ in shape: {pred.shape} vs {ref.shape}")
    spacing_zyx = tuple(reversed([float(s) for s in spacing]))
    da, db = surface_distances(pred, ref, spacing_zyx)
    any_p, any_r = bool(pred.any()), bool(ref.any())
    return {
        "iou": iou(pred, ref),
        "dsc": dice(pred, ref),
        "hd95_mm": hd95_of(da, db, any_p, any_r),
        "assd_mm": assd_of(da, db, any_p, any_r),
        "pred_volume_ml": np.count_nonzero(pred) * float(np.prod(spacing)) / 1000.0,
        "ref_volume_ml": np.count_nonzero(ref) * float(np.prod(spacing)) / 1000.0,
    }


def evaluate_binary_images(pred: Image, ref: Image, ref_labels=None) -> dict:
    """Binary metrics of a predicted mask against a reference image, on the reference's grid.

    The prediction is put onto the reference grid by :func:`SpineSegLib.core.grids.conform` (exactly when
    the voxel centres coincide, resampled with nearest neighbour when the fields of view overlap
    substantially, else :class:`InputError`), which is told as a note (:mod:`SpineSegLib.core.notes`) when
    the grids differ. ``ref_labels`` restricts the reference to those ids (default: every non-zero voxel).
    """
    pred, note = conform(pred, ref, label=True, what="the prediction", onto="the reference")
    if note:
        notes.note(note)
    ref_mask = ref.array > 0 if ref_labels is None else np.isin(ref.array, list(ref_labels))
    return binary_metrics(pred.array > 0, ref_mask, ref.spacing)
