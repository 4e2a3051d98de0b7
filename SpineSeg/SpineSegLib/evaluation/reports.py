"""Writing and printing evaluation results: CSV and JSON files, console tables.

Files are written atomically (a temporary file in the same folder, then renamed) and an existing
file is never replaced unless ``force=True``. Undefined values (NaN, None) become empty CSV cells
and JSON ``null`` -- never the invalid JSON token ``NaN``.

Console use::

    from SpineSegLib.evaluation.reports import write_csv, write_json, format_case_table
    write_csv(result.to_rows(), "per_vertebra.csv")
    write_json(result.to_dict(), "case.json", force=True)
    print(format_case_table(result))
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import OutputExistsError
from SpineSegLib.core.files import check_force, replaced_atomically


def check_output(path, force: bool = False) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` is a folder, or exists and ``force`` is false."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give a file name")
    return check_force(path, force)


def _atomic_write_text(path, text: str, force: bool) -> Path:
    path = check_output(path, force)
    with replaced_atomically(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:    # the text as given: CSV lines end in "\n" on every system
            f.write(text)
    return path


def plain(value):
    """``value`` with numpy scalars/arrays as Python objects and NaN/inf as None (recursively)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data, path, force: bool = False) -> Path:
    """Write ``data`` as indented JSON (NaN -> null)."""
    return _atomic_write_text(path, json.dumps(plain(data), indent=2) + "\n", force)


def _cell(value):
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6g")
    return value


def csv_text(rows, fields=None) -> str:
    """CSV of a list of dicts; columns: ``fields`` or the keys in order of first appearance."""
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    return buf.getvalue()


def write_csv(rows, path, force: bool = False, fields=None) -> Path:
    """Write a list of dicts as CSV (see :func:`csv_text`)."""
    return _atomic_write_text(path, csv_text(rows, fields), force)


# -- console -------------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_case_table(result) -> str:
    """Per-vertebra table of an instance :class:`~SpineSegLib.evaluation.instance_metrics.CaseResult`."""
    from SpineSegLib.core.labels import name_of

    lines = [f"{'vertebra':<9}{'matched':<9}{'Dice':>7}{'ASSD mm':>9}{'HD95 mm':>9}  status"]
    for v in result.vertebrae:
        matched = name_of(v.pred_id) if v.matched else "-"
        lines.append(f"{v.name:<9}{matched:<9}{fmt(v.dice):>7}{fmt(v.assd_mm, 2):>9}{fmt(v.hd95_mm, 2):>9}  {v.status}")
    voxel_ml = float(np.prod(result.spacing)) / 1000.0
    for e in result.extras:
        detail = (f"{e.overlap_voxels} voxels on reference vertebrae" if e.overlap_voxels else "no reference overlap")
        lines.append(f"{'-':<9}{e.name:<9}{'':>25}  extra ({e.voxels * voxel_ml:.2f} ml, {detail})")
    return "\n".join(lines)


def format_summary(s: dict) -> str:
    """A few lines summarising :func:`~SpineSegLib.evaluation.instance_metrics.summarize` output."""
    n = s["reference_vertebrae"]
    lines = [
        f"Dice {fmt(s['dice_mean'])} ± {fmt(s['dice_std'])}  ASSD {fmt(s['assd_mm_mean'], 2)} ± {fmt(s['assd_mm_std'], 2)} mm"
        f"  HD95 {fmt(s['hd95_mm_mean'], 2)} ± {fmt(s['hd95_mm_std'], 2)} mm  ({n} reference vertebrae"
        f"{'' if s['cases'] == 1 else ', ' + str(s['cases']) + ' cases'}; spine Dice {fmt(s['spine_dice_mean'])})",
        f"detected {s['detected']}/{n} (Dice > 0.5), overlapping {n - s['missed']}/{n}, missed {s['missed']},"
        f" extra predictions {s['extra']}",
        f"identification accuracy {fmt(s['id_accuracy'])} ({s['id_correct']}/{n}), linear kappa {fmt(s['kappa'])}",
    ]
    if s["completeness_scored"]:
        lines.append(f"completeness accuracy {fmt(s['completeness_accuracy'])} ({s['completeness_scored']} scored),"
                     f" FP/scan {fmt(s['completeness_fp_per_scan'], 2)}, FN/scan {fmt(s['completeness_fn_per_scan'], 2)}")
    return "\n".join(lines)
