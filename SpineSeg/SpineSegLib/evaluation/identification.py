"""Identification agreement of matched vertebrae: the linearly weighted Cohen's kappa over (reference id,
predicted id) pairs, with the categories in anatomical order (see :mod:`SpineSegLib.evaluation.instance_metrics`).

Console use::

    from SpineSegLib.evaluation.identification import weighted_kappa
    weighted_kappa([20, 21, 22], [20, 22, 22])      # one vertebra off by one
"""

from __future__ import annotations

import math

from SpineSegLib.core.labels import REGULAR_IDS


def kappa_categories(ids) -> list[int]:
    """Category order for the weighted kappa: C1..T12, [T13], L1..L5, [L6], S1, then other ids."""
    ids = {int(i) for i in ids}
    order = list(range(1, 20)) + ([28] if 28 in ids else []) + list(range(20, 25)) + ([25] if 25 in ids else []) + [26]
    assert set(REGULAR_IDS) <= set(order)
    return order + sorted(ids - set(order))


def weighted_kappa(ref_ids, pred_ids) -> float:
    """Linearly weighted Cohen's kappa of paired ids, weights = distance in anatomical order.

    NaN when there are no pairs or when every pair is the same single id (kappa is 0/0 then).
    """
    from sklearn.metrics import cohen_kappa_score

    ref_ids, pred_ids = [int(i) for i in ref_ids], [int(i) for i in pred_ids]
    if len(ref_ids) != len(pred_ids):
        raise ValueError("ref_ids and pred_ids differ in length")
    if not ref_ids or len(set(ref_ids) | set(pred_ids)) < 2:
        return math.nan
    return float(cohen_kappa_score(ref_ids, pred_ids, labels=kappa_categories(ref_ids + pred_ids),
                                   weights="linear"))
