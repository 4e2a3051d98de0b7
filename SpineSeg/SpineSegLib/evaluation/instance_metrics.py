"""Per-vertebra (instance) evaluation of a vertebra label map against a reference label map.

Both maps hold one id per vertebra (VerSe ids, see :mod:`SpineSegLib.core.labels`) and lie on the same
grid (put the prediction onto the reference with :func:`SpineSegLib.core.grids.conform`, or call
:func:`evaluate_instance_images`, which does it). The definitions follow Lessmann et al.
(MedIA 2019, section 4.2) where the paper gives one:

* **Matching** (largest overlap): each reference vertebra R is compared with the predicted
  instance P that shares the most voxels with it (ties: the higher Dice, then the lower id).
  One prediction may be the match of several reference vertebrae (a prediction that merges two
  vertebrae is then scored against both). A reference vertebra that no prediction overlaps is
  **missed**: Dice 0, ASSD/HD95 undefined (NaN, written as an empty CSV cell / JSON null).
* **Dice, ASSD, HD95** of R vs its match, in mm, exactly as :mod:`SpineSegLib.evaluation.metrics` defines
  them: ASSD is the average symmetric surface distance of Heimann et al. 2009 (mean over all
  surface voxels of both masks of the distance to the other surface; the metric Lessmann et al.
  report), HD95 the larger of the two directed 95th-percentile surface distances. Each distance
  computation is cropped to the pair's joint bounding box plus one voxel. This is exact: a voxel
  on the box's faces has its outward neighbour outside both masks anyway, and Euclidean distances
  between voxels inside the box do not depend on what lies outside it.
* **Detected**: the match has Dice > 0.5 (:data:`DETECTION_DICE`). ``overlap_rate`` is the
  looser "any overlap" rate (= 1 - missed fraction); both are reported.
* **Extra** (false positive) predictions: predicted instances that are the match of no reference
  vertebra; each is listed with its size and the voxels it shares with reference vertebrae
  (0: a prediction where the reference has no vertebra; > 0: e.g. a fragment or a split).
* **Identification accuracy**: reference vertebrae whose match carries the reference id, divided
  by *all* reference vertebrae (a missed vertebra counts as not identified).
  **Linearly weighted Cohen's kappa** over the matched (R id, P id) pairs, with categories in
  anatomical order C1..T12, [T13], L1..L5, [L6], S1 (T13/L6 only when they occur; ids outside the
  label table follow in numeric order), so the weight of a mistake is the number of vertebrae it
  is off by. Undefined (NaN) without pairs, or when every pair is the same single id.
* **Completeness** (is the vertebra completely inside the scan): predicted flags belong to
  predicted ids, reference flags to reference ids; by default the reference flags are derived
  with :func:`~SpineSegLib.evaluation.completeness.reference_completeness` (a vertebra touching
  the image border is incomplete). A reference vertebra is scored when it has a match that carries a predicted flag. Accuracy over
  scored vertebrae; **FP** = incomplete reference vertebra classified complete (as in the paper),
  **FN** = complete one classified incomplete, counted per scan.
* **Spine Dice**: all non-zero prediction voxels vs all non-zero reference voxels.
* **Status** of a reference vertebra (tables): ``missed``, ``ok``, or its problems among
  ``low dice`` (not detected) and ``wrong id``, e.g. ``low dice, wrong id``.

Label-map checks and id selection are in :mod:`~SpineSegLib.evaluation.label_maps`, the kappa in
:mod:`~SpineSegLib.evaluation.identification`, the completeness flags (derived or read from JSON) in
:mod:`~SpineSegLib.evaluation.completeness`.

Summaries (:func:`summarize`) pool vertebrae over cases: Dice mean ± std over all reference
vertebrae (missed ones count as 0), ASSD/HD95 mean ± std over the vertebrae that have a match,
rates as pooled fractions, kappa from the pooled pairs, FP/FN as means per scan. Standard
deviations are sample standard deviations (n - 1), NaN for fewer than two values.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images, summarize
    res = evaluate_instance_images(read_image("pred.nii.gz"), read_image("ref.nii.gz"),
                                   pred_completeness={20: True, 21: False})
    for v in res.vertebrae:
        print(v.name, v.status, round(v.dice, 3), v.assd_mm)
    res.detection_rate, res.id_accuracy, res.kappa, [e.pred_id for e in res.extras]
    summarize([res, other_res])["dice_mean"]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from SpineSegLib.core import notes
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.grids import conform
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import name_of
from SpineSegLib.evaluation.completeness import completeness_from_boxes
from SpineSegLib.evaluation.identification import weighted_kappa
from SpineSegLib.evaluation.label_maps import label_array, select_ids
from SpineSegLib.evaluation.metrics import assd_of, hd95_of, surface_distances

#: a reference vertebra counts as detected when its largest-overlap match has a Dice above this
DETECTION_DICE = 0.5
#: voxels added around each pair's bounding box before the surface-distance computation (0 would
#: be exact too; one voxel keeps the erosion's border handling obviously out of the way)
CROP_MARGIN_VOXELS = 1


# -- results -------------------------------------------------------------------------------------
@dataclass
class VertebraResult:
    """One reference vertebra and its largest-overlap match (``pred_id`` None: missed)."""

    ref_id: int
    ref_voxels: int
    pred_id: int | None = None
    pred_voxels: int = 0
    overlap_voxels: int = 0
    dice: float = 0.0
    assd_mm: float = math.nan
    hd95_mm: float = math.nan
    ref_complete: bool | None = None
    pred_complete: bool | None = None

    @property
    def name(self) -> str:
        return name_of(self.ref_id)

    @property
    def matched(self) -> bool:
        return self.pred_id is not None

    @property
    def detected(self) -> bool:
        return self.matched and self.dice > DETECTION_DICE

    @property
    def identified(self) -> bool:
        return self.matched and self.pred_id == self.ref_id

    @property
    def status(self) -> str:
        """``missed`` (no overlapping prediction), ``ok``, or what is wrong with the match:
        ``wrong id``, ``low dice`` (Dice <= 0.5, not detected) or ``low dice, wrong id``."""
        if not self.matched:
            return "missed"
        problems = ([] if self.detected else ["low dice"]) + ([] if self.identified else ["wrong id"])
        return ", ".join(problems) or "ok"

    @property
    def completeness_scored(self) -> bool:
        return self.matched and self.ref_complete is not None and self.pred_complete is not None


@dataclass
class ExtraInstance:
    """A predicted instance that is the match of no reference vertebra."""

    pred_id: int
    voxels: int
    overlap_voxels: int  # voxels it shares with any reference vertebra

    @property
    def name(self) -> str:
        return name_of(self.pred_id)


@dataclass
class CaseResult:
    """Instance metrics of one prediction/reference pair; see the module docstring."""

    vertebrae: list[VertebraResult]
    extras: list[ExtraInstance]
    pred_ids: list[int]
    spine_dice: float
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    case: str = ""
    pred_path: str = ""
    ref_path: str = ""
    completeness_given: bool = False

    # counts and rates -------------------------------------------------------------------------
    @property
    def n_ref(self) -> int:
        return len(self.vertebrae)

    @property
    def n_detected(self) -> int:
        return sum(v.detected for v in self.vertebrae)

    @property
    def n_missed(self) -> int:
        return sum(not v.matched for v in self.vertebrae)

    @property
    def detection_rate(self) -> float:
        return _ratio(self.n_detected, self.n_ref)

    @property
    def overlap_rate(self) -> float:
        return _ratio(self.n_ref - self.n_missed, self.n_ref)

    @property
    def id_accuracy(self) -> float:
        return _ratio(sum(v.identified for v in self.vertebrae), self.n_ref)

    @property
    def id_pairs(self) -> list[tuple[int, int]]:
        """(reference id, matched predicted id) of every matched reference vertebra."""
        return [(v.ref_id, v.pred_id) for v in self.vertebrae if v.matched]

    @property
    def kappa(self) -> float:
        pairs = self.id_pairs
        return weighted_kappa([p[0] for p in pairs], [p[1] for p in pairs])

    def summary(self) -> dict:
        """The summary of this case alone (the same keys as :func:`summarize`)."""
        return summarize([self], name=self.case)

    # export -------------------------------------------------------------------------------------
    def to_rows(self) -> list[dict]:
        """One row per reference vertebra, then one per extra prediction (for CSV)."""
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        rows = []
        for v in self.vertebrae:
            rows.append({
                "case": self.case, "ref_id": v.ref_id, "ref_name": v.name,
                "pred_id": v.pred_id, "pred_name": name_of(v.pred_id) if v.matched else None,
                "status": v.status, "detected": v.detected, "identified": v.identified,
                "dice": v.dice, "assd_mm": v.assd_mm, "hd95_mm": v.hd95_mm,
                "ref_voxels": v.ref_voxels, "pred_voxels": v.pred_voxels, "overlap_voxels": v.overlap_voxels,
                "ref_volume_ml": v.ref_voxels * voxel_ml, "pred_volume_ml": v.pred_voxels * voxel_ml,
                "ref_complete": v.ref_complete, "pred_complete": v.pred_complete,
            })
        for e in self.extras:
            rows.append({
                "case": self.case, "ref_id": None, "ref_name": None, "pred_id": e.pred_id, "pred_name": e.name,
                "status": "extra", "detected": None, "identified": None,
                "dice": None, "assd_mm": None, "hd95_mm": None,
                "ref_voxels": 0, "pred_voxels": e.voxels, "overlap_voxels": e.overlap_voxels,
                "ref_volume_ml": 0.0, "pred_volume_ml": e.voxels * voxel_ml,
                "ref_complete": None, "pred_complete": None,
            })
        return rows

    def to_dict(self) -> dict:
        """Everything, JSON-ready apart from NaN (``reports.write_json`` writes NaN as null)."""
        return {
            "case": self.case, "pred": self.pred_path, "ref": self.ref_path,
            "spacing": list(self.spacing), "pred_ids": list(self.pred_ids),
            "detection_dice_threshold": DETECTION_DICE,
            "vertebrae": [dict(asdict(v), name=v.name, status=v.status, detected=v.detected,
                               identified=v.identified) for v in self.vertebrae],
            "extras": [dict(asdict(e), name=e.name) for e in self.extras],
            "summary": self.summary(),
        }


def _ratio(a, b) -> float:
    return a / b if b else math.nan


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    std = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), std


# -- summary -------------------------------------------------------------------------------------
SUMMARY_KEYS = (
    "case", "cases", "reference_vertebrae", "predicted_instances",
    "dice_mean", "dice_std", "assd_mm_mean", "assd_mm_std", "hd95_mm_mean", "hd95_mm_std", "distance_vertebrae",
    "detected", "detection_rate", "overlap_rate", "missed", "extra", "extra_per_scan",
    "id_correct", "id_accuracy", "kappa",
    "completeness_scored", "completeness_accuracy", "completeness_fp_per_scan", "completeness_fn_per_scan",
    "spine_dice_mean", "spine_dice_std",
)


def summarize(results, name: str = "ALL") -> dict:
    """Pooled summary of several :class:`CaseResult` (keys: :data:`SUMMARY_KEYS`)."""
    results = list(results)
    verts = [v for r in results for v in r.vertebrae]
    matched = [v for v in verts if v.matched]
    n_ref = len(verts)
    dice_mean, dice_std = _mean_std([v.dice for v in verts])
    assd_mean, assd_std = _mean_std([v.assd_mm for v in matched])
    hd_mean, hd_std = _mean_std([v.hd95_mm for v in matched])
    spine_mean, spine_std = _mean_std([r.spine_dice for r in results])
    pairs = [p for r in results for p in r.id_pairs]
    # completeness: only cases with predicted flags count towards the per-scan figures
    comp_cases = [r for r in results if r.completeness_given]
    scored = [v for r in comp_cases for v in r.vertebrae if v.completeness_scored]
    fp = sum(v.pred_complete and not v.ref_complete for v in scored)
    fn = sum(v.ref_complete and not v.pred_complete for v in scored)
    n_extra = sum(len(r.extras) for r in results)
    return {
        "case": name,
        "cases": len(results),
        "reference_vertebrae": n_ref,
        "predicted_instances": sum(len(r.pred_ids) for r in results),
        "dice_mean": dice_mean, "dice_std": dice_std,
        "assd_mm_mean": assd_mean, "assd_mm_std": assd_std,
        "hd95_mm_mean": hd_mean, "hd95_mm_std": hd_std,
        "distance_vertebrae": sum(not math.isnan(v.assd_mm) for v in matched),
        "detected": sum(v.detected for v in verts),
        "detection_rate": _ratio(sum(v.detected for v in verts), n_ref),
        "overlap_rate": _ratio(len(matched), n_ref),
        "missed": n_ref - len(matched),
        "extra": n_extra,
        "extra_per_scan": _ratio(n_extra, len(results)),
        "id_correct": sum(v.identified for v in verts),
        "id_accuracy": _ratio(sum(v.identified for v in verts), n_ref),
        "kappa": weighted_kappa([p[0] for p in pairs], [p[1] for p in pairs]),
        "completeness_scored": len(scored),
        "completeness_accuracy": _ratio(sum(v.pred_complete == v.ref_complete for v in scored), len(scored)),
        "completeness_fp_per_scan": _ratio(fp, len(comp_cases)),
        "completeness_fn_per_scan": _ratio(fn, len(comp_cases)),
        "spine_dice_mean": spine_mean, "spine_dice_std": spine_std,
    }


# -- evaluation ----------------------------------------------------------------------------------
def evaluate_instances(pred, ref, spacing=(1.0, 1.0, 1.0), *, pred_completeness=None, ref_completeness=None,
                       border_margin_mm: float = 0.0, case: str = "") -> CaseResult:
    """Instance metrics of two label maps on the same grid (arrays ``[k, j, i]``; ``spacing`` in
    ``(i, j, k)`` order, mm). ``pred_completeness``: ``{pred id: complete}`` or None;
    ``ref_completeness``: ``{ref id: complete}``, default derived with
    :func:`~SpineSegLib.evaluation.completeness.reference_completeness`.
    """
    pred, ref = label_array(pred, "prediction"), label_array(ref, "reference")
    if pred.shape != ref.shape:
        raise InputError(f"prediction and reference differ in shape: {pred.shape} vs {ref.shape}")
    spacing = tuple(float(s) for s in spacing)
    spacing_zyx = tuple(reversed(spacing))

    # voxel counts and overlaps from the non-zero voxels only (vertebrae fill ~1 % of a CT)
    ref_fg, pred_fg = ref != 0, pred != 0
    ref_ids, ref_counts = np.unique(ref[ref_fg], return_counts=True)
    pred_ids, pred_counts = np.unique(pred[pred_fg], return_counts=True)
    ref_size = dict(zip(ref_ids.tolist(), ref_counts.tolist()))
    pred_size = dict(zip(pred_ids.tolist(), pred_counts.tolist()))
    both = ref_fg & pred_fg
    stride = int(pred_ids.max(initial=0)) + 1
    codes, overlap = np.unique(ref[both].astype(np.int64) * stride + pred[both], return_counts=True)
    n_both = int(overlap.sum())
    del ref_fg, pred_fg, both
    spine_total = sum(ref_size.values()) + sum(pred_size.values())
    spine_dice = 1.0 if spine_total == 0 else 2.0 * n_both / spine_total

    candidates: dict[int, list[tuple[int, int]]] = {}
    shared_with_ref: dict[int, int] = {}
    for code, n in zip(codes.tolist(), overlap.tolist()):
        r, p = divmod(code, stride)
        candidates.setdefault(r, []).append((p, n))
        shared_with_ref[p] = shared_with_ref.get(p, 0) + n

    ref_boxes = ndimage.find_objects(ref)
    pred_boxes = ndimage.find_objects(pred)
    if ref_completeness is None:
        ref_completeness = completeness_from_boxes(ref_boxes, ref.shape, spacing_zyx, border_margin_mm)

    vertebrae = []
    for r in ref_size:
        v = VertebraResult(ref_id=r, ref_voxels=ref_size[r], ref_complete=ref_completeness.get(r))
        if r in candidates:
            # largest overlap; ties -> higher Dice (smaller prediction), then lower id
            p, n = max(candidates[r], key=lambda c: (c[1], -pred_size[c[0]], -c[0]))
            v.pred_id, v.pred_voxels, v.overlap_voxels = p, pred_size[p], n
            v.dice = 2.0 * n / (ref_size[r] + pred_size[p])
            v.assd_mm, v.hd95_mm = _pair_distances(ref, r, ref_boxes[r - 1], pred, p, pred_boxes[p - 1], spacing_zyx)
            if pred_completeness is not None and p in pred_completeness:
                v.pred_complete = bool(pred_completeness[p])
        vertebrae.append(v)

    matched_ids = {v.pred_id for v in vertebrae if v.matched}
    extras = [ExtraInstance(p, pred_size[p], shared_with_ref.get(p, 0)) for p in pred_size if p not in matched_ids]
    return CaseResult(vertebrae, extras, list(pred_size), spine_dice, spacing, case,
                      completeness_given=pred_completeness is not None)


def _pair_distances(ref, r, ref_box, pred, p, pred_box, spacing_zyx) -> tuple[float, float]:
    """ASSD and HD95 (mm) of ``pred == p`` vs ``ref == r``, computed inside their joint bounding box."""
    box = tuple(slice(max(min(a.start, b.start) - CROP_MARGIN_VOXELS, 0), min(max(a.stop, b.stop) + CROP_MARGIN_VOXELS, n))
                for a, b, n in zip(ref_box, pred_box, ref.shape))
    a, b = pred[box] == p, ref[box] == r
    da, db = surface_distances(a, b, spacing_zyx)
    return assd_of(da, db, True, True), hd95_of(da, db, True, True)


def evaluate_instance_images(pred: Image, ref: Image, *, ids=None, pred_ids="same", **kwargs) -> CaseResult:
    """:func:`evaluate_instances` of two :class:`Image` label maps on the reference's grid.

    The prediction is put onto the reference grid by :func:`SpineSegLib.core.grids.conform` (exactly when
    the voxel centres coincide, resampled with nearest neighbour when the fields of view overlap
    substantially, else :class:`InputError`), which is told as a note (:mod:`SpineSegLib.core.notes`) when
    the grids differ. ``ids`` keeps only those reference ids (others become background); ``pred_ids`` does
    the same for the prediction (default ``"same"``: the ``ids`` list; None: keep every predicted id). Other
    keywords go to :func:`evaluate_instances`.
    """
    pred, note = conform(pred, ref, label=True, what="the prediction", onto="the reference")
    if note:
        notes.note(note)
    if isinstance(pred_ids, str) and pred_ids == "same":
        pred_ids = ids
    ref_arr = select_ids(label_array(ref.array, "reference"), ids)
    pred_arr = select_ids(label_array(pred.array, "prediction"), pred_ids)
    return evaluate_instances(pred_arr, ref_arr, ref.spacing, **kwargs)


__all__ = [
    "DETECTION_DICE", "VertebraResult", "ExtraInstance", "CaseResult", "SUMMARY_KEYS", "summarize",
    "evaluate_instances", "evaluate_instance_images",
]
