"""``spineseg evaluate``: compare segmentations with references, one pair or many.

Examples::

    spineseg evaluate pred.nii.gz ref.nii.gz                      # auto mode: per-vertebra table + summary
    spineseg evaluate pred.nii.gz ref.nii.gz --mode binary        # whole-mask IoU/DSC/HD95/ASSD
    spineseg evaluate pred.nii.gz ref.nii.gz --completeness flags.json --csv vertebrae.csv --json case.json
    spineseg evaluate --pairs cases.csv --csv vertebrae.csv --summary-csv cases_summary.csv --json all.json

Modes: ``binary`` treats every non-zero voxel as spine (``SpineSegLib.evaluation.metrics``); ``instance``
matches vertebrae by largest overlap and reports per-vertebra Dice/ASSD/HD95, detection, extra
predictions, identification accuracy, linearly weighted kappa and completeness
(``SpineSegLib.evaluation.instance_metrics``); ``auto`` (default) picks instance when both maps hold more than
one non-zero id. Exit status: 0 done, 2 bad input (one-line message), 1 no command.

``--pairs LIST.csv`` holds one ``pred,ref`` pair per line, optionally followed by a case name and a
predicted-completeness JSON file; a first line naming the columns (``pred,ref,case,completeness,
ref_completeness``) is allowed, as are blank lines and ``#`` comments. Relative paths are taken
relative to the folder of LIST.csv.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

HELP = "compare a predicted mask or vertebra label map with a reference (per-vertebra or binary metrics)"

PAIR_COLUMNS = ("pred", "ref", "case", "completeness", "ref_completeness")
BINARY_KEYS = ("iou", "dsc", "hd95_mm", "assd_mm", "pred_volume_ml", "ref_volume_ml")


def register(sub):
    p = sub.add_parser(
        "evaluate",
        help=HELP,
        description=(
            "Compare PRED with REF on REF's grid. PRED is mapped onto it exactly when the voxel centres\n"
            "coincide (axes flipped/permuted), resampled with nearest neighbour when the two fields of view\n"
            "overlap by at least half (intersection over union) or one lies inside the other (a crop),\n"
            "with a note on stderr; else refused (are they the same scan?). Binary mode treats every\n"
            "non-zero voxel as spine; instance mode compares each reference vertebra with the predicted\n"
            "vertebra it overlaps most (Lessmann et al. 2019). Metric definitions: see\n"
            "SpineSegLib.evaluation.metrics and SpineSegLib.evaluation.instance_metrics."
        ),
        epilog=(
            "examples:\n"
            "  spineseg evaluate pred.nii.gz ref.nii.gz --csv vertebrae.csv\n"
            "  spineseg evaluate --pairs cases.csv --csv vertebrae.csv --summary-csv summary.csv --json all.json\n"
            "cases.csv: one 'pred,ref[,case[,completeness.json]]' per line, paths relative to cases.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pred", metavar="PRED", nargs="?", help="predicted mask or label map (NIfTI, NRRD, MHA, DICOM folder)")
    p.add_argument("ref", metavar="REF", nargs="?", help="reference mask or label map")
    p.add_argument("--pairs", metavar="LIST.csv", help="evaluate many pairs: a CSV with 'pred,ref' per line (instead of PRED REF)")
    p.add_argument("--mode", choices=("auto", "binary", "instance"), default="auto",
                   help="auto (default): instance when both maps hold more than one non-zero id, else binary")
    p.add_argument("--labels", metavar="IDS",
                   help="binary mode: reference ids that count as foreground; instance mode: ids kept in both maps "
                        "(others become background), e.g. '1-28' or '20-24' (default: all non-zero)")
    p.add_argument("--pred-labels", metavar="IDS",
                   help="instance mode: ids kept in the prediction (default: the --labels list, or all)")
    p.add_argument("--completeness", metavar="FILE.json",
                   help="predicted completeness flags, e.g. {\"20\": true, \"L2\": false} (instance mode)")
    p.add_argument("--ref-completeness", metavar="FILE.json",
                   help="reference completeness flags (default: a reference vertebra touching the image border is incomplete)")
    p.add_argument("--border-margin", metavar="MM", type=float, default=0.0,
                   help="derived reference flags: a vertebra within MM of the border is incomplete (default 0: touching it)")
    p.add_argument("--csv", metavar="FILE",
                   help="write the detailed table: one row per reference vertebra and extra prediction "
                        "(binary mode: one row per case)")
    p.add_argument("--summary-csv", metavar="FILE", help="write one row per case plus a final 'ALL' row")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=run)
    return p


# -- helpers used elsewhere (keep their behaviour) -------------------------------------------------
def parse_ids(text):
    """'1-7,28' -> [1, 2, ..., 7, 28]."""
    ids = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            ids.extend(range(int(lo), int(hi) + 1))
        else:
            ids.append(int(part))
    return ids


def format_metrics(m: dict) -> str:
    def f(v, digits=4):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    return (f"IoU {f(m['iou'])}  DSC {f(m['dsc'])}  HD95 {f(m['hd95_mm'], 2)} mm  ASSD {f(m['assd_mm'], 2)} mm"
            f"  (pred {m['pred_volume_ml']:.1f} ml, ref {m['ref_volume_ml']:.1f} ml)")


# -- the command ----------------------------------------------------------------------------------
def _ids_option(text, option):
    from SpineSegLib.core.errors import InputError

    if text is None:
        return None
    try:
        ids = parse_ids(text)
    except ValueError:
        raise InputError(f"{option} {text!r}: expected ids like '1-7,28'") from None
    if not ids:
        raise InputError(f"{option} {text!r}: names no id")
    return ids


def case_name(path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_pairs(path) -> list[dict]:
    """The pairs of a ``--pairs`` list (see the module docstring), paths resolved and checked."""
    from SpineSegLib.core.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pairs list")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (CSV) file") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    rows = [(n, [c.strip() for c in cells]) for (n, _), cells in zip(numbered, csv.reader(l for _, l in numbered))]
    columns = PAIR_COLUMNS
    if rows and rows[0][1] and rows[0][1][0].lower() == "pred":
        columns = tuple(c.lower() for c in rows[0][1])
        unknown = [c for c in columns if c not in PAIR_COLUMNS]
        if unknown or "ref" not in columns:
            raise InputError(f"{path} line {rows[0][0]}: columns must be among {', '.join(PAIR_COLUMNS)} "
                             f"and include pred and ref (got {', '.join(columns)})")
        rows = rows[1:]
    if not rows:
        raise InputError(f"{path}: lists no pairs")
    pairs = []
    for n, cells in rows:
        if len(cells) > len(columns):
            raise InputError(f"{path} line {n}: {len(cells)} fields, at most {len(columns)} expected ({','.join(columns)})")
        entry = {c: v for c, v in zip(columns, cells) if v}
        if "pred" not in entry or "ref" not in entry:
            raise InputError(f"{path} line {n}: expected 'pred,ref' (two paths)")
        for key in ("pred", "ref", "completeness", "ref_completeness"):
            if key in entry:
                p = Path(entry[key]).expanduser()
                p = p if p.is_absolute() else path.parent / p
                if not p.exists():
                    raise InputError(f"{path} line {n}: {entry[key]}: no such file or folder")
                entry[key] = str(p)
        entry["line"] = n
        pairs.append(entry)
    _name_cases(pairs, path)
    return pairs


def _name_cases(pairs, list_path):
    from SpineSegLib.core.errors import InputError

    explicit = [p["case"] for p in pairs if "case" in p]
    dupes = {c for c in explicit if explicit.count(c) > 1}
    if dupes:
        raise InputError(f"{list_path}: case names used twice: {', '.join(sorted(dupes))}")
    for p in pairs:
        p.setdefault("case", case_name(p["ref"]))
    names = [p["case"] for p in pairs]
    for p in pairs:
        if names.count(p["case"]) > 1:  # default names that clash: use the path instead
            p["case"] = str(Path(p["ref"]).relative_to(list_path.parent)) if Path(p["ref"]).is_relative_to(list_path.parent) else p["ref"]


def _resolve_mode(mode, pred, ref) -> str:
    from SpineSegLib.evaluation.label_maps import label_ids

    if mode != "auto":
        return mode
    return "instance" if len(label_ids(pred.array)) > 1 and len(label_ids(ref.array)) > 1 else "binary"


def run(args):
    from SpineSegLib.core.errors import InputError
    from SpineSegLib.evaluation.reports import check_output

    single = args.pred is not None or args.ref is not None
    if args.pairs and single:
        raise InputError("give either PRED REF or --pairs LIST.csv, not both")
    if not args.pairs and (args.pred is None or args.ref is None):
        raise InputError("give PRED and REF (or --pairs LIST.csv)")
    if args.pairs and (args.completeness or args.ref_completeness):
        raise InputError("with --pairs, give completeness files in the list's 'completeness' and "
                         "'ref_completeness' columns")
    if args.border_margin < 0:
        raise InputError(f"--border-margin must be >= 0 mm, got {args.border_margin}")
    outputs = [(opt, getattr(args, opt.replace("-", "_"))) for opt in ("csv", "summary-csv", "json")]
    outputs = [(opt, Path(p)) for opt, p in outputs if p]
    resolved = [p.resolve() for _, p in outputs]
    if len(set(resolved)) < len(resolved):
        raise InputError("--csv, --summary-csv and --json must name different files")
    for _, p in outputs:
        check_output(p, args.force)  # fail before the work, not after
    labels = _ids_option(args.labels, "--labels")
    pred_labels = _ids_option(args.pred_labels, "--pred-labels") if args.pred_labels else labels

    if args.pairs:
        pairs = read_pairs(args.pairs)
    else:
        for p in (args.pred, args.ref, args.completeness, args.ref_completeness):
            if p and not Path(p).exists():
                raise InputError(f"{p}: no such file or folder")
        pairs = [{"pred": args.pred, "ref": args.ref, "case": case_name(args.ref),
                  "completeness": args.completeness, "ref_completeness": args.ref_completeness}]
    inputs = {Path(p[k]).resolve() for p in pairs for k in ("pred", "ref") if p.get(k)}
    for opt, p in outputs:
        if p.resolve() in inputs:
            raise InputError(f"--{opt} {p} is one of the inputs; choose another file")

    results, mode_seen = [], None
    for pair in pairs:
        mode, result = _evaluate_pair(pair, args, labels, pred_labels, batch=bool(args.pairs))
        if mode_seen and mode != mode_seen:
            raise InputError(f"{pair['case']}: evaluated in {mode} mode, earlier cases in {mode_seen} mode; "
                             "pass --mode binary or --mode instance")
        mode_seen = mode
        results.append(result)

    if mode_seen == "instance":
        _finish_instance(results, args, outputs)
    else:
        _finish_binary(results, args, outputs)
    return 0


def _evaluate_pair(pair, args, labels, pred_labels, batch):
    from SpineSegLib.core.errors import InputError
    from SpineSegLib.core.grids import conform
    from SpineSegLib.core.image import read_image
    from SpineSegLib.core.notes import note as tell
    from SpineSegLib.evaluation.completeness import read_completeness
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images
    from SpineSegLib.evaluation.metrics import evaluate_binary_images
    from SpineSegLib.evaluation.reports import format_case_table, format_summary

    where = f"{pair['case']}: " if batch else ""
    pred, ref = read_image(pair["pred"]), read_image(pair["ref"])
    try:
        pred, note = conform(pred, ref, label=True, what="the prediction", onto="the reference")
    except InputError as exc:
        raise InputError(f"{where}{exc}") from None
    if note:
        tell(f"{where}{note}")      # one line "spineseg: note: ..." on stderr
    mode = _resolve_mode(args.mode, pred, ref)
    if mode == "binary":
        if pair.get("completeness") or pair.get("ref_completeness"):
            raise InputError(f"{where}completeness flags need instance mode, but binary mode was chosen "
                             "(PRED or REF holds a single label, or --mode binary); pass --mode instance")
        if args.pred_labels:
            raise InputError(f"{where}--pred-labels needs instance mode, but binary mode was chosen; "
                             "in binary mode every non-zero voxel of PRED counts")
        m = evaluate_binary_images(pred, ref, labels)
        row = {"case": pair["case"], "pred": str(pair["pred"]), "ref": str(pair["ref"]), **m}
        print(f"{pair['case']}: {format_metrics(m)}" if batch else format_metrics(m), flush=True)
        return mode, row

    pred_flags = read_completeness(pair["completeness"]) if pair.get("completeness") else None
    ref_flags = read_completeness(pair["ref_completeness"]) if pair.get("ref_completeness") else None
    res = evaluate_instance_images(pred, ref, ids=labels, pred_ids=pred_labels, pred_completeness=pred_flags,
                                   ref_completeness=ref_flags, border_margin_mm=args.border_margin)
    res.case, res.pred_path, res.ref_path = pair["case"], str(pair["pred"]), str(pair["ref"])
    if not res.vertebrae:
        raise InputError(f"{where}the reference holds no vertebra"
                         + (f" with the ids of --labels {args.labels}" if labels else "")
                         + "; nothing to evaluate")
    if batch:
        s = res.summary()
        print(f"{res.case}: Dice {_f(s['dice_mean'])}, detected {s['detected']}/{s['reference_vertebrae']}, "
              f"missed {s['missed']}, extra {s['extra']}, id accuracy {_f(s['id_accuracy'])}", flush=True)
    else:
        print(f"{len(res.vertebrae)} reference vertebrae, {len(res.pred_ids)} predicted instances (instance mode)")
        print(format_case_table(res))
        print(format_summary(res.summary()))
    return mode, res


def _f(v, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _finish_instance(results, args, outputs):
    from SpineSegLib.evaluation.instance_metrics import SUMMARY_KEYS, summarize
    from SpineSegLib.evaluation.reports import format_summary, write_csv, write_json

    summary = summarize(results)
    if len(results) > 1:
        print(f"--- all {len(results)} cases ---")
        print(format_summary(summary))
    out = dict(outputs)
    if "csv" in out:
        write_csv([row for r in results for row in r.to_rows()], out["csv"], args.force)
    if "summary-csv" in out:
        write_csv([r.summary() for r in results] + [summary], out["summary-csv"], args.force, fields=SUMMARY_KEYS)
    if "json" in out:
        write_json({"mode": "instance", "cases": [r.to_dict() for r in results], "summary": summary},
                        out["json"], args.force)
    for _, p in outputs:
        print(f"wrote {p}")


def _summarize_binary(rows) -> dict:
    import numpy as np

    summary = {"case": "ALL", "pred": None, "ref": None, "cases": len(rows)}
    for key in BINARY_KEYS:
        values = np.array([r[key] for r in rows], dtype=float)
        values = values[~np.isnan(values)]
        summary[key] = float(values.mean()) if values.size else math.nan
        summary[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return summary


def _finish_binary(rows, args, outputs):
    from SpineSegLib.evaluation.reports import write_csv, write_json

    fields = ["case", "pred", "ref", *BINARY_KEYS]
    summary = _summarize_binary(rows)
    if len(rows) > 1:
        print(f"--- all {len(rows)} cases (mean) ---")
        print(format_metrics(summary))
    out = dict(outputs)
    if "csv" in out:
        write_csv(rows, out["csv"], args.force, fields=fields)
    if "summary-csv" in out:
        write_csv(rows + [summary], out["summary-csv"], args.force,
                  fields=fields + ["cases"] + [f"{k}_std" for k in BINARY_KEYS])
    if "json" in out:
        if len(rows) == 1 and not args.pairs:  # one pair: the flat metrics dict, as before, plus mode
            data = {**{k: rows[0][k] for k in BINARY_KEYS}, "mode": "binary", "pred": rows[0]["pred"], "ref": rows[0]["ref"]}
        else:
            data = {"mode": "binary", "cases": rows, "summary": summary}
        write_json(data, out["json"], args.force)
    for _, p in outputs:
        print(f"wrote {p}")
