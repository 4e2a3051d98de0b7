"""Per-vertebra report of a vertebra label map and its CT: size, body heights with a Genant-style deformity
grade, trabecular attenuation with an opportunistic osteoporosis screening hint, completeness. Written as
``vertebrae.csv``, ``vertebrae.json`` and a PNG sheet (:mod:`SpineSegLib.evaluation.report_sheet`).

Per vertebra (one row per label id, top to bottom, VerSe ids of :mod:`SpineSegLib.core.labels`):

* **size**: voxels, volume (ml), centroid (LPS mm);
* **heights**: anterior / middle / posterior body heights along the spine's local axis
  (:mod:`SpineSegLib.evaluation.measurements`) and three ratios: ``wedge = anterior / posterior``,
  ``biconcave = middle / posterior``, ``crush = posterior / mean posterior height of the neighbours`` (the
  vertebrae directly above and below in the report that are complete and graded);
* **deformity grade** in the manner of Genant's semi-quantitative method (Genant HK, Wu CY, van Kuijk C,
  Nevitt MC. Vertebral fracture assessment using a semiquantitative technique. J Bone Miner Res
  1993;8:1137-48): the largest height loss ``1 - ratio`` of the three gives grade 0 (< 20 %), 1 (20-25 %),
  2 (25-40 %) or 3 (> 40 %), and its type (wedge / biconcave / crush). Genant grades a radiograph by eye; here
  the same thresholds are applied to heights measured on the 3-D mask, so it is a hint for review. C1, C2
  and the sacrum (no body of that shape) and incomplete vertebrae (cut by the field of view) are not graded;
* **trabecular attenuation**: mean, median, SD and voxel count of the CT in the vertebral body (the
  anterior part of the label, as the heights find it) eroded by ``erosion_mm`` (voxels whose centre lies
  more than ``erosion_mm`` from the nearest voxel outside the body), so that the cortex, the endplates and
  the pedicle bases are left out; a core under ``min_core_ml`` gives NaN and a reason;
* **screening hint** from the L1 thresholds of Pickhardt PJ, Pooler BD, Lauder T, del Rio AM, Bruce RJ,
  Binkley N. Opportunistic screening for osteoporosis using abdominal computed tomography scans obtained for
  other indications. Ann Intern Med 2013;158:588-95 (L1 trabecular attenuation <= 160 HU: ~90 % sensitive,
  <= 110 HU: > 90 % specific for osteoporosis). The thresholds were published for L1 on contrast-free CT; the
  hint is given for every vertebra and says so where it is not L1 (:data:`SCREENING_CAVEAT`);
* **completeness** and its evidence from the caller's ``info`` (e.g. the IIS network's flags), else from the
  grid: a vertebra touching the border of the grid is incomplete
  (:func:`SpineSegLib.evaluation.completeness.reference_completeness`).

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.evaluation.vertebra_report import vertebra_report
    report = vertebra_report(read_image("vertebrae.nii.gz"), read_image("ct.nii.gz"))
    print(report.format_table())
    report.write("report/")        # vertebrae.csv, vertebrae.json, vertebrae.png; refuses existing files
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.grids import conform, describe_grid
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE, by_name
from SpineSegLib.evaluation.completeness import reference_completeness
from SpineSegLib.evaluation.label_maps import label_array
from SpineSegLib.evaluation.measurements import body_voxels, measure_vertebrae
from SpineSegLib.evaluation.reports import check_output, fmt, write_csv, write_json

#: height loss limits of grades 1, 2, 3 (Genant et al. 1993): < 20 % normal, 20-25 %, 25-40 %, > 40 %
GRADE_LIMITS = (0.20, 0.25, 0.40)
GRADE_NAMES = {0: "normal", 1: "mild", 2: "moderate", 3: "severe"}
#: ids not graded: C1 (no body), C2 (the dens), the sacrum
NOT_GRADED = {1: "C1 has no vertebral body", 2: "C2 (dens) is not graded", 26: "the sacrum is not graded"}
MIN_CONTINUITY = 0.9        # a body this solid along its height (measurements.body_heights) is graded
L1_LABEL = 20
#: L1 trabecular attenuation thresholds of Pickhardt et al. 2013 (HU)
SPECIFIC_HU, SENSITIVE_HU = 110.0, 160.0
SCREENING_CAVEAT = ("screening hint from a published threshold for L1 on contrast-free CT, not a diagnosis; "
                    "contrast raises HU")
GENANT_REFERENCE = ("Genant HK, Wu CY, van Kuijk C, Nevitt MC. Vertebral fracture assessment using a semiquantitative "
                    "technique. J Bone Miner Res 1993;8:1137-48")
PICKHARDT_REFERENCE = ("Pickhardt PJ, Pooler BD, Lauder T, del Rio AM, Bruce RJ, Binkley N. Opportunistic screening "
                       "for osteoporosis using abdominal computed tomography scans obtained for other indications. "
                       "Ann Intern Med 2013;158:588-95")
FILE_NAMES = ("vertebrae.csv", "vertebrae.json", "vertebrae.png")


@dataclass
class VertebraRow:
    """One vertebra of a :class:`VertebraReport` (heights in mm, HU of the CT, NaN = not measured)."""

    label: int
    name: str
    voxels: int
    volume_ml: float
    centroid_lps: tuple
    axis_lps: tuple                         # the local spine axis of the heights (unit, superior)
    body_depth_mm: float
    anterior_height_mm: float
    middle_height_mm: float
    posterior_height_mm: float
    height_continuity: float = math.nan     # 1: the body is solid along its height; lower: gaps (not graded)
    wedge_ratio: float = math.nan           # anterior / posterior
    biconcave_ratio: float = math.nan       # middle / posterior
    crush_ratio: float = math.nan           # posterior / neighbours' mean posterior
    height_loss_pct: float = math.nan       # the largest of the three losses, percent
    deformity_type: str = ""                # wedge / biconcave / crush: the ratio of the largest loss
    genant_grade: Optional[int] = None      # 0-3; None = not graded (grade_note says why)
    grade_note: str = ""
    trabecular_mean_hu: float = math.nan
    trabecular_median_hu: float = math.nan
    trabecular_sd_hu: float = math.nan
    trabecular_voxels: int = 0
    trabecular_note: str = ""
    screening_hint: str = ""
    complete: bool = True
    evidence: list = field(default_factory=list)
    info: dict = field(default_factory=dict)   # the caller's other completeness keys (JSON only)

    @property
    def is_l1(self) -> bool:
        return self.label == L1_LABEL

    def to_dict(self) -> dict:
        """The row for JSON (lists kept, NaN becomes null when written)."""
        d = asdict(self)
        d["centroid_lps"] = [round(float(v), 2) for v in self.centroid_lps]
        d["axis_lps"] = [round(float(v), 4) for v in self.axis_lps]
        d["is_l1"] = self.is_l1
        return d

    def csv_row(self) -> dict:
        """The row for CSV: the centroid in three columns, the evidence joined by ``"; "`` (no axis, no info)."""
        d = self.to_dict()
        x, y, z = d.pop("centroid_lps")
        d.pop("info")
        d.pop("axis_lps")
        d.update(centroid_l_mm=x, centroid_p_mm=y, centroid_s_mm=z, evidence="; ".join(self.evidence))
        return d


#: the columns of :meth:`VertebraReport.rows_for_table`: (display name, row attribute, digits, description)
TABLE_COLUMNS = (
    ("Vertebra", "name", None, "vertebra name (VerSe ids of the label map)"),
    ("Volume (ml)", "volume_ml", 1, "volume of the label"),
    ("Anterior height (mm)", "anterior_height_mm", 1, "body height along the local spine axis, anterior third"),
    ("Middle height (mm)", "middle_height_mm", 1, "body height along the local spine axis, middle third"),
    ("Posterior height (mm)", "posterior_height_mm", 1, "body height along the local spine axis, posterior third"),
    ("Wedge A/P", "wedge_ratio", 2, "anterior / posterior height"),
    ("Biconcave M/P", "biconcave_ratio", 2, "middle / posterior height"),
    ("Crush P/neighbours", "crush_ratio", 2, "posterior height / mean posterior height of the neighbours"),
    ("Height loss (%)", "height_loss_pct", 0, "largest loss of the three ratios"),
    ("Deformity type", "deformity_type", None, "ratio with the largest loss"),
    ("Genant grade", "genant_grade", None,
     "0 normal (<20 %), 1 mild (20-25 %), 2 moderate (25-40 %), 3 severe (>40 %)"),
    ("Trabecular HU", "trabecular_mean_hu", 0, "mean CT value in the eroded core of the vertebral body"),
    ("Trabecular HU SD", "trabecular_sd_hu", 0, "standard deviation in that core"),
    ("Screening hint", "screening_hint", None, SCREENING_CAVEAT),
    ("Complete", "complete", None, "the vertebra lies completely inside the scan"),
)


@dataclass
class VertebraReport:
    """The rows (top to bottom) and the header (method, references, caveats, notes) of a report."""

    rows: list
    header: dict
    ct: Optional[Image] = field(default=None, repr=False)        # kept for the sheet (on the label grid)
    labels: Optional[Image] = field(default=None, repr=False)
    cores: dict = field(default_factory=dict, repr=False)   # {label: (box, core)}: where the HU were measured

    def to_dict(self) -> dict:
        return {"header": self.header, "vertebrae": [r.to_dict() for r in self.rows]}

    def rows_for_table(self) -> list[dict]:
        """One dict per vertebra keyed by the display names of :data:`TABLE_COLUMNS` (numbers rounded,
        missing values None), for a table node."""
        out = []
        for r in self.rows:
            entry = {}
            for title, key, digits, _ in TABLE_COLUMNS:
                value = getattr(r, key)
                if isinstance(value, float):
                    value = None if not math.isfinite(value) else round(value, digits)
                entry[title] = value
            out.append(entry)
        return out

    def format_table(self) -> str:
        """The report as a console table."""
        lines = [f"{'vertebra':<9}{'ml':>6}{'ant':>6}{'mid':>6}{'post':>6}{'A/P':>6}{'M/P':>6}{'P/nb':>6}"
                 f"{'grade':>7} {'type':<10}{'HU':>6}{'core':>7}  complete"]
        for r in self.rows:
            grade = "-" if r.genant_grade is None else str(r.genant_grade)
            lines.append(f"{r.name:<9}{fmt(r.volume_ml, 1):>6}{fmt(r.anterior_height_mm, 1):>6}"
                         f"{fmt(r.middle_height_mm, 1):>6}{fmt(r.posterior_height_mm, 1):>6}{fmt(r.wedge_ratio, 2):>6}"
                         f"{fmt(r.biconcave_ratio, 2):>6}{fmt(r.crush_ratio, 2):>6}{grade:>7} {r.deformity_type:<10}"
                         f"{fmt(r.trabecular_mean_hu, 0):>6}{r.trabecular_voxels:>7}  {'yes' if r.complete else 'no'}")
        return "\n".join(lines)

    def write(self, directory, force: bool = False, ct: Optional[Image] = None,
              labels: Optional[Image] = None) -> list[Path]:
        """Write ``vertebrae.csv``, ``vertebrae.json`` and (with a CT and the labels: those given, else the
        report's own) the sheet ``vertebrae.png`` into ``directory``. Every file is checked before any is
        written: an existing one raises :class:`OutputExistsError` unless ``force``."""
        from SpineSegLib.evaluation.report_sheet import save_report_sheet

        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InputError(f"{directory} is a file; the report needs a folder")
        ct = ct if ct is not None else self.ct
        labels = labels if labels is not None else self.labels
        names = FILE_NAMES if ct is not None and labels is not None else FILE_NAMES[:2]
        paths = [check_output(directory / n, force) for n in names]
        write_csv([r.csv_row() for r in self.rows], paths[0], force=force)
        write_json(self.to_dict(), paths[1], force=force)
        if len(paths) == 3:
            save_report_sheet(self, ct, labels, paths[2], force=force)
        return paths


def vertebra_report(labels: Image, ct: Image, info: Optional[dict] = None, erosion_mm: float = 4.0,
                    min_core_ml: float = 0.2, names_uncertain: Optional[str] = None, **options) -> VertebraReport:
    """The per-vertebra report of the label map ``labels`` (VerSe ids) and its CT ``ct``.

    The CT is put onto the label map's grid when the grids differ (:func:`SpineSegLib.core.grids.conform`,
    with a note in the header). ``info``: ``{label: {"complete": bool, "evidence": [str, ...], ...}}`` from the
    caller (other keys are kept in the JSON); vertebrae it lacks fall back on the grid-border rule.
    ``erosion_mm`` / ``min_core_ml``: the trabecular core; ``names_uncertain``: why the names of the label map
    are uncertain (said in the header, and every screening hint says that "L1" may be another vertebra);
    ``options`` go to the body heights
    (:func:`SpineSegLib.evaluation.measurements.body_heights`).
    """
    labels = labels.with_array(label_array(labels.array, "label map"))
    ct, note = conform(ct, labels, label=False, what="the CT", onto="the label map")
    notes = [note] if note else []
    measured = measure_vertebrae(labels, ct, **options)
    if not measured:
        raise InputError("the label map holds no vertebra (every voxel is 0)")
    border = reference_completeness(labels)
    info = {_label_id(k): v for k, v in (info or {}).items()}
    boxes = ndimage.find_objects(labels.array)
    rows, cores = [], {}
    for m in measured:
        row = VertebraRow(m.label, m.name, m.voxels, m.volume_ml, m.centroid_lps, m.axis_lps, m.body_depth_mm,
                          m.anterior_height_mm, m.middle_height_mm, m.posterior_height_mm)
        row.height_continuity = m.height_continuity
        _set_completeness(row, info.get(m.label), border.get(m.label, True))
        core = _set_trabecular(row, labels, ct, boxes[m.label - 1], m, erosion_mm, min_core_ml, options)
        if core is not None:
            cores[m.label] = (boxes[m.label - 1], core)
        row.screening_hint = screening_hint(row.trabecular_mean_hu, row.label)
        if names_uncertain and row.screening_hint:
            row.screening_hint += " [names uncertain]"
        rows.append(row)
    grade_rows(rows)
    header = _header(labels, rows, notes, info, erosion_mm, min_core_ml)
    header["names"] = {"certain": not names_uncertain, "note": names_uncertain or ""}
    if names_uncertain:
        header["screening"]["l1"] = f"names uncertain ({names_uncertain}): {header['screening']['l1']}"
    return VertebraReport(rows, header, ct=ct, labels=labels, cores=cores)


# -- completeness -----------------------------------------------------------------------------------------
def _label_id(key) -> int:
    """A key of the caller's ``info``: a label id (``20``, ``"20"``) or a vertebra name (``"L1"``)."""
    try:
        return int(key)
    except (TypeError, ValueError):
        try:
            return by_name(str(key)).label
        except KeyError:
            raise InputError(f"vertebra info: {key!r} is neither a label id nor a vertebra name") from None


def _set_completeness(row: VertebraRow, given: Optional[dict], inside_grid: bool) -> None:
    if given is not None and "complete" in given:
        row.complete = bool(given["complete"])
        evidence = given.get("evidence", [])
        row.evidence = [evidence] if isinstance(evidence, str) else [str(e) for e in evidence]
        row.info = {str(k): v for k, v in given.items() if k not in ("complete", "evidence")}
        return
    row.complete = bool(inside_grid)
    row.evidence = ["does not touch the border of the grid" if inside_grid
                    else "touches the border of the grid (cut by the field of view)"]


# -- trabecular attenuation -------------------------------------------------------------------------------
def trabecular_core(own: np.ndarray, start, labels: Image, centroid_lps, axis_lps, erosion_mm: float,
                    band_mm: float = 4.0, gap_mm: float = 2.0) -> tuple[np.ndarray, str]:
    """The eroded core of one vertebra's body: ``(core, note)``, ``core`` a bool crop like ``own``.

    ``own``: the vertebra's mask in a crop of ``labels`` starting at index ``start`` (k, j, i). The body is
    what :func:`SpineSegLib.evaluation.measurements.body_voxels` keeps; the core is the body's voxels whose
    centre lies more than ``erosion_mm`` (Euclidean, in mm) from the nearest voxel outside it. ``note`` says
    why the core is empty."""
    kji = np.argwhere(own)
    inside = body_voxels(kji + np.asarray(start), labels, centroid_lps, axis_lps, band_mm=band_mm, gap_mm=gap_mm)
    if inside is None or not inside.any():
        return np.zeros_like(own), "no vertebral body found in the mid-sagittal band"
    body = np.zeros(tuple(s + 2 for s in own.shape), bool)      # a margin of background around the crop
    k, j, i = (kji[inside] + 1).T
    body[k, j, i] = True
    depth = ndimage.distance_transform_edt(body, sampling=labels.spacing_kji)
    core = (depth > erosion_mm)[1:-1, 1:-1, 1:-1]
    return core, "" if core.any() else f"the body is too thin for a core {erosion_mm:g} mm inside it"


def _set_trabecular(row: VertebraRow, labels: Image, ct: Image, box, m, erosion_mm: float, min_core_ml: float,
                    options: dict) -> Optional[np.ndarray]:
    """Fill the trabecular columns of ``row``; return the core used (None without one)."""
    own = labels.array[box] == m.label
    start = [b.start for b in box]
    core, note = trabecular_core(own, start, labels, m.centroid_lps, m.axis_lps, erosion_mm,
                                 **{k: options[k] for k in ("band_mm", "gap_mm") if k in options})
    row.trabecular_voxels = int(core.sum())
    core_ml = row.trabecular_voxels * labels.voxel_volume_mm3 / 1000.0
    if not note and core_ml < min_core_ml:
        note = f"core of {core_ml:.2f} ml, under the {min_core_ml:g} ml needed"
    if note:
        row.trabecular_note = note
        return None
    values = np.asarray(ct.array[box], dtype=np.float64)[core]
    row.trabecular_mean_hu = float(values.mean())
    row.trabecular_median_hu = float(np.median(values))
    row.trabecular_sd_hu = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    row.trabecular_note = f"core {erosion_mm:g} mm inside the body, {core_ml:.1f} ml"
    return core


def screening_hint(mean_hu: float, label: int) -> str:
    """The screening hint for a trabecular attenuation (Pickhardt et al. 2013's L1 thresholds); ``""`` when
    there is no value. Vertebrae other than L1 say that the threshold is L1's."""
    if mean_hu is None or not math.isfinite(mean_hu):
        return ""
    if mean_hu <= SPECIFIC_HU:
        hint = f"<= {SPECIFIC_HU:g} HU: osteoporosis likely (specific threshold)"
    elif mean_hu <= SENSITIVE_HU:
        hint = f"<= {SENSITIVE_HU:g} HU: low, osteoporosis possible (sensitive threshold)"
    else:
        hint = f"> {SENSITIVE_HU:g} HU: above the threshold"
    return hint if label == L1_LABEL else hint + " [L1 threshold]"


# -- deformity grading ------------------------------------------------------------------------------------
def genant_grade(loss: float) -> int:
    """Genant's grade of a (finite) height loss, a fraction: 0 (< 0.20), 1 (< 0.25), 2 (<= 0.40), 3 (> 0.40)."""
    if loss < GRADE_LIMITS[0]:
        return 0
    if loss < GRADE_LIMITS[1]:
        return 1
    return 2 if loss <= GRADE_LIMITS[2] else 3


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def _adjacent(a: int, b: int) -> bool:
    """Whether two vertebrae are anatomical neighbours (a vertebra missing from the map between them is not)."""
    orders = [VERTEBRAE[v].order if v in VERTEBRAE else math.nan for v in (a, b)]
    return 0 < abs(orders[0] - orders[1]) <= 1.0


def grade_rows(rows: list) -> None:
    """Set the ratios, the largest height loss, its type and the grade of every row (top to bottom)."""
    usable = [r.complete and r.label not in NOT_GRADED and math.isfinite(r.posterior_height_mm)
              and not r.height_continuity < MIN_CONTINUITY for r in rows]
    for n, row in enumerate(rows):
        neighbours = [rows[j].posterior_height_mm for j in (n - 1, n + 1)
                      if 0 <= j < len(rows) and usable[j] and _adjacent(rows[j].label, row.label)]
        row.wedge_ratio = _ratio(row.anterior_height_mm, row.posterior_height_mm)
        row.biconcave_ratio = _ratio(row.middle_height_mm, row.posterior_height_mm)
        row.crush_ratio = _ratio(row.posterior_height_mm, float(np.mean(neighbours))) if neighbours else math.nan
        losses = {kind: 1.0 - ratio for kind, ratio in
                  (("wedge", row.wedge_ratio), ("biconcave", row.biconcave_ratio), ("crush", row.crush_ratio))
                  if math.isfinite(ratio)}
        if losses:
            kind = max(losses, key=losses.get)
            row.height_loss_pct = max(0.0, 100.0 * losses[kind])
            row.deformity_type = kind if losses[kind] > 0 else ""
        if row.label in NOT_GRADED:
            row.grade_note = f"not graded: {NOT_GRADED[row.label]}"
        elif not row.complete:
            row.grade_note = "not graded: incomplete (cut by the field of view, or not bounded by discs)"
        elif not losses:
            row.grade_note = "not graded: the body heights could not be measured"
        elif row.height_continuity < MIN_CONTINUITY:
            row.grade_note = (f"not graded: the body's mask has gaps along its height (continuity "
                              f"{row.height_continuity:.2f}), so its heights would be too short")
        else:
            row.genant_grade = genant_grade(row.height_loss_pct / 100.0)
            loss = f"{row.height_loss_pct:.0f} % {row.deformity_type} loss" if row.deformity_type else "no height loss"
            row.grade_note = f"{GRADE_NAMES[row.genant_grade]} ({loss})"


# -- header -----------------------------------------------------------------------------------------------
def _header(labels: Image, rows: list, notes: list, info: dict, erosion_mm: float,
            min_core_ml: float) -> dict:
    l1 = next((r for r in rows if r.is_l1), None)
    return {
        "kind": "SpineSeg vertebra report",
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "label_grid": describe_grid(labels), "notes": notes,
        "vertebrae": [r.name for r in rows],
        "completeness_source": "caller" if info else "grid border (a vertebra touching it is incomplete)",
        "heights": "anterior / middle / posterior body heights along the local spine axis "
                   "(SpineSegLib.evaluation.measurements)",
        "grading": {"method": "Genant-style semi-quantitative grade from the largest height loss of the ratios "
                              "anterior/posterior (wedge), middle/posterior (biconcave) and posterior/neighbours "
                              "(crush), measured on the 3-D label; a hint for review, not a reading",
                    "grades": {"0": "normal, loss < 20 %", "1": "mild, 20-25 %", "2": "moderate, 25-40 %",
                               "3": "severe, > 40 %"},
                    "reference": GENANT_REFERENCE},
        "trabecular": {"region": f"vertebral body eroded by {erosion_mm:g} mm (cortex and endplates excluded)",
                       "erosion_mm": erosion_mm, "min_core_ml": min_core_ml},
        "screening": {"caveat": SCREENING_CAVEAT,
                      "thresholds_hu": {"specific": SPECIFIC_HU, "sensitive": SENSITIVE_HU},
                      "l1": (f"L1 is in the report: {l1.trabecular_mean_hu:.0f} HU" if l1 is not None
                             and math.isfinite(l1.trabecular_mean_hu) else
                             "L1 is in the report without a trabecular value" if l1 is not None else
                             "no L1 in the label map: the hints use L1's thresholds on other vertebrae"),
                      "reference": PICKHARDT_REFERENCE},
    }
