"""``spineseg dataset ...``: annotation datasets -- predict, correct, save, fine-tune, export.

Examples::

    spineseg dataset init ds --images 'scans/*_img.nii.gz' --labels 'scans/*_vb.nii.gz' --label-convention top-down:L1
    spineseg dataset predict ds --model iis-mr.pt             # new cases and cases predicted by another model
    spineseg dataset predict ct-ds --method classical         # CT cases without a model (named, model-free)
    spineseg dataset status ds                                # counts per status, then one row per case
    spineseg dataset save ds 07 corrected_07.nii.gz --user anna
    spineseg dataset relabel ds 07 --vertebra L1 --as T12     # the rest of the sequence follows
    spineseg dataset review ds 07 --user ben
    spineseg dataset finetune ds --model iis-mr.pt -o iis-mr-ft1.pt --iterations 500
    spineseg dataset export ds --format nnunet -o nnUNet_raw/Dataset501_Spine
    spineseg dataset check ds --repair                        # after a crash: recover interrupted saves

The folder format is described in ``SpineSegLib.annotation``. Errors are one line on stderr with
exit status 2; nothing the dataset held is changed by a failed command. ``predict`` and ``finetune`` take
``--events`` (the annotation panel's child processes): stdout then carries only the JSON-lines events of
``SpineSegLib.core.events`` -- progress, notes, a ``report`` event (``predict``: the cases predicted, skipped
and failed; ``finetune``: the report ``--json`` writes) and an error event on failure -- and the human
output goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from SpineSegLib.core.progress import console_progress
from SpineSegLib.core.splits import SPLITS

HELP = "annotation datasets: init, predict, status, save, relabel, review, finetune, export, check"
STATUSES = ("new", "predicted", "corrected", "reviewed")   # annotation.manifest's, not imported: the CLI starts fast
STATUS_COLUMNS = (("case", "case"), ("status", "status"), ("version", "version"), ("model", "model"),
                  ("saved_by", "saved by"), ("date", "date"), ("split", "split"))


def register(sub):
    p = sub.add_parser(
        "dataset", help=HELP,
        description=("Build a training dataset by correcting automatic results: a folder of images, versioned label "
                     "maps and per-case manifests (status new / predicted / corrected / reviewed, which model "
                     "predicted, who corrected and when) plus a train / validation / test split. See "
                     "'spineseg dataset COMMAND --help'."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1].split("The folder format", 1)[0],
    )
    s = p.add_subparsers(dest="dataset_command", metavar="COMMAND")
    for add in (_add_init, _add_add, _add_predict, _add_status, _add_save, _add_relabel, _add_review, _add_split,
                _add_finetune, _add_export, _add_check):
        add(s)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
    return p


# -- the subcommands' arguments -------------------------------------------------------------------------
def _add_image_arguments(q) -> None:
    """--images, --labels, --label-convention, --label-status, --copy/--link (init and add)."""
    q.add_argument("--images", nargs="+", required=True, metavar="PATH_OR_GLOB",
                   help="image files, DICOM folders or quoted glob patterns; one case each")
    q.add_argument("--labels", nargs="+", metavar="PATH_OR_GLOB",
                   help="existing label maps, matched to images by name (07_img.nii.gz <-> 07_vb.nii.gz)")
    q.add_argument("--label-convention", default="verse", metavar="CONV",
                   help="what the imported label values mean: verse (default), top-down:L1, bottom-up:L5, "
                        "by-position:L5, spider:L5 ... (mapped onto VerSe ids)")
    q.add_argument("--label-status", default="corrected", choices=("corrected", "reviewed", "predicted"),
                   help="status of cases with imported labels (default corrected)")


def _add_mode_arguments(q) -> None:
    mode = q.add_mutually_exclusive_group()
    mode.add_argument("--copy", dest="mode", action="store_const", const="copy",
                      help="copy the images (default)")
    mode.add_argument("--link", dest="mode", action="store_const", const="link",
                      help="link to the images instead of copying them (DICOM is converted anyway)")


def _add_events_argument(q) -> None:
    q.add_argument("--events", action="store_true",
                   help="JSON-lines events on stdout, human output on stderr (for the annotation panel)")


def _add_init(s) -> None:
    q = s.add_parser("init", help="create a dataset from images (and optional existing labels)")
    q.add_argument("dir", metavar="DIR", help="new dataset folder")
    _add_image_arguments(q)
    q.add_argument("--split", default="0.7,0.15,0.15", metavar="TR,VAL,TEST",
                   help="fractions of train / validation / test cases (default 0.7,0.15,0.15)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    _add_mode_arguments(q)
    q.add_argument("--modality", choices=("ct", "mr"), help="default: guessed from the intensities of the first image")
    q.add_argument("--name", help="dataset name (default: the folder name)")
    q.add_argument("--crop-unlabelled", default="none", choices=("none", "above", "below", "both"),
                   help="vertebrae beyond the labelled ones are visible but unlabelled by protocol (e.g. T12 above "
                        "MyoSegmenTUM's L1-L5): fine-tuning hides them")
    q.add_argument("--user", help="who imports the labels (default: the OS user)")
    q.set_defaults(func=run_init, mode="copy")


def _add_add(s) -> None:
    q = s.add_parser("add", help="add cases to an existing dataset")
    q.add_argument("dir", metavar="DIR")
    _add_image_arguments(q)
    q.add_argument("--split", choices=SPLITS,
                   help="split of the new cases (default: drawn from the dataset's fractions)")
    _add_mode_arguments(q)
    q.add_argument("--user")
    q.set_defaults(func=run_add, mode="copy")


def _add_predict(s) -> None:
    q = s.add_parser("predict", help="predict the cases that need it with an IIS model or the classical method")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--model", metavar="WEIGHTS", help="IIS weights file (.pt); needed unless --method classical")
    q.add_argument("--method", default="model", choices=("model", "classical"),
                   help="model (default): the IIS network of --model; classical: model-free vertebrae of CT cases "
                        "(named from ribs and sacrum; MR cases are refused), recorded with its parameters in place "
                        "of a model, so changed --params predict the cases again")
    q.add_argument("--params", metavar="JSON", help="--method classical: a JSON file of ClassicalParams fields")
    q.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    q.add_argument("--all", action="store_true",
                   help="also predict again cases this model predicted already (corrected/reviewed never)")
    q.add_argument("--cases", nargs="+", metavar="CASE", help="only these cases")
    q.add_argument("--drop-incomplete", action="store_true",
                   help="leave out vertebrae the model classifies as incompletely visible (default: keep them, "
                        "flagged in the version's instance table)")
    q.add_argument("--no-modality-check", action="store_true")
    q.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores)")
    q.add_argument("--quiet", action="store_true")
    _add_events_argument(q)
    q.set_defaults(func=run_predict)


def _add_status(s) -> None:
    q = s.add_parser("status", help="counts per status and one row per case")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--status", nargs="+", choices=STATUSES, help="only these")
    q.add_argument("--split", nargs="+", choices=SPLITS, help="only these")
    q.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    q.set_defaults(func=run_status)


def _add_save(s) -> None:
    q = s.add_parser("save", help="save a corrected label map as a new version of a case")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("case", metavar="CASE")
    q.add_argument("labels", metavar="LABELS", help="label map on the case image's grid (VerSe ids)")
    q.add_argument("--user", help="who corrected it (default: the OS user)")
    q.add_argument("--based-on", type=int, metavar="N", help="the version the correction started from")
    q.add_argument("--reviewed", action="store_true", help="save it as reviewed (a reviewer's own edit)")
    q.add_argument("--note", default="", help="free text stored with the version")
    q.set_defaults(func=run_save)


def _add_relabel(s) -> None:
    q = s.add_parser("relabel", help="renumber a case's vertebrae: 'this is T12', the rest follows")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("case", metavar="CASE")
    q.add_argument("--vertebra", required=True, metavar="ID_OR_NAME",
                   help="the vertebra as it is labelled now (20 or L1)")
    q.add_argument("--as", dest="as_name", required=True, metavar="NAME", help="what it really is (T12)")
    q.add_argument("--only", action="store_true", help="rename just this vertebra, not the sequence")
    q.add_argument("--allow-t13", action="store_true", help="the sequence may include T13")
    q.add_argument("--allow-l6", action="store_true", help="the sequence may include L6")
    q.add_argument("--user")
    q.set_defaults(func=run_relabel)


def _add_review(s) -> None:
    q = s.add_parser("review", help="mark the current version of a case as reviewed")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("case", metavar="CASE", nargs="+")
    q.add_argument("--user")
    q.set_defaults(func=run_review)


def _add_split(s) -> None:
    q = s.add_parser("split", help="move cases to another split")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("case", metavar="CASE", nargs="+")
    q.add_argument("--to", required=True, choices=SPLITS)
    q.set_defaults(func=run_split)


def _add_finetune(s) -> None:
    q = s.add_parser("finetune", help="fine-tune a model on the corrected cases; before/after Dice on validation")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--model", required=True, metavar="WEIGHTS", help="the model to start from")
    q.add_argument("-o", "--output", required=True, metavar="NEW.pt", help="fine-tuned weights file to write")
    q.add_argument("--iterations", type=int, default=500, metavar="N", help="training iterations (default 500)")
    q.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    q.add_argument("--validation-cases", nargs="+", metavar="CASE",
                   help="compare on these cases (default: the corrected cases of the validation split)")
    q.add_argument("--run-dir", metavar="DIR", help="training run folder (default DIR/runs/<time>_<name>)")
    q.add_argument("--threads", type=int, metavar="N", help="CPU threads")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--crop-unlabelled", choices=("none", "above", "below", "both"),
                   help="override the dataset's setting")
    q.add_argument("--no-evaluation", action="store_true", help="skip the before/after comparison")
    q.add_argument("--drop-incomplete", action="store_true",
                   help="compare the models' outputs without the vertebrae they classify as incomplete "
                        "(default: every vertebra they output, as the annotators see them)")
    q.add_argument("--json", metavar="FILE", help="write the report (cases, before/after per case) as JSON")
    q.add_argument("--force", action="store_true", help="overwrite NEW.pt")
    q.add_argument("--user")
    _add_events_argument(q)
    q.set_defaults(func=run_finetune)


def _add_export(s) -> None:
    q = s.add_parser("export", help="write the corrected/reviewed cases as an nnU-Net, VerSe or CTSpine1K dataset")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--format", required=True, choices=("nnunet", "verse", "ctspine1k"))
    q.add_argument("-o", "--output", required=True, metavar="OUT")
    q.add_argument("--status", nargs="+", default=["corrected", "reviewed"], choices=("corrected", "reviewed"),
                   help="which cases (default: corrected and reviewed)")
    q.add_argument("--split", nargs="+", choices=SPLITS, help="only these splits")
    q.add_argument("--subset", help="CTSpine1K sub-folder name (default: the dataset name)")
    q.add_argument("--force", action="store_true", help="overwrite existing files in OUT")
    q.set_defaults(func=run_export)


def _add_check(s) -> None:
    q = s.add_parser("check", help="find (and with --repair fix) inconsistencies, e.g. after a crash")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--repair", action="store_true",
                   help="recover interrupted saves, rebuild broken manifests (the broken file is kept), remove "
                        "stale locks and temporary files")
    q.add_argument("--deep", action="store_true", help="also verify the SHA-256 of every label version")
    q.set_defaults(func=run_check)


# -- helpers ---------------------------------------------------------------------------------------
def _say(*parts) -> None:
    print(*parts, flush=True)


def format_table(rows, columns) -> str:
    widths = {c: max(len(h), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(h) for c, h in columns}
    line = "  ".join(h.ljust(widths[c]) for c, h in columns)
    out = [line, "  ".join("-" * widths[c] for c, _ in columns)]
    for r in rows:
        out.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c, _ in columns))
    return "\n".join(out)


def _with_progress(args, body, quiet: bool = False):
    """``body(progress, events)``: with ``--events`` under :func:`SpineSegLib.core.events.events_on_stdout`
    (progress as events), else with console progress and ``events`` None."""
    if not getattr(args, "events", False):
        return body(console_progress(quiet=quiet, skip_repeats=True), None)
    from SpineSegLib.core.events import events_on_stdout
    from SpineSegLib.core.progress import Progress

    with events_on_stdout() as events:
        return body(Progress(events.progress), events)


# -- commands ----------------------------------------------------------------------------------------
def run_init(args):
    from SpineSegLib.annotation.creation import create_dataset

    ds = create_dataset(args.dir, args.images, args.labels, split=args.split, seed=args.seed, mode=args.mode,
                        label_convention=args.label_convention, label_status=args.label_status,
                        modality=args.modality, name=args.name, crop_unlabelled=args.crop_unlabelled,
                        user=args.user, progress=console_progress(skip_repeats=True))
    counts = ds.counts()
    split = ds.split
    _say(f"created {ds.root}: {len(split)} case(s) ({ds.modality or '?'}), "
         + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
         + "; split " + ", ".join(f"{sum(1 for v in split.values() if v == s)} {s}" for s in SPLITS))
    return 0


def run_add(args):
    from SpineSegLib.annotation.creation import add_cases
    from SpineSegLib.annotation.store import open_dataset

    ds = open_dataset(args.dir)
    added = add_cases(ds, args.images, args.labels, mode=args.mode, label_convention=args.label_convention,
                      label_status=args.label_status, user=args.user, split=args.split,
                      progress=console_progress(skip_repeats=True))
    ds.reload()
    _say(f"added {len(added)} case(s): " + ", ".join(f"{n} ({ds.split.get(n)})" for n in added))
    return 0


def run_predict(args):
    return _with_progress(args, lambda progress, events: _predict(args, progress, events), quiet=args.quiet)


def _predict(args, progress, events):
    from SpineSegLib.annotation.store import open_dataset
    from SpineSegLib.annotation.predict import predict_dataset

    ds = open_dataset(args.dir)
    try:
        report = predict_dataset(ds, args.model, device=args.device, redo=args.all, cases=args.cases,
                                 keep_incomplete=not args.drop_incomplete, check_modality=not args.no_modality_check,
                                 threads=args.threads, progress=progress, log=_say, method=args.method,
                                 params=_classical_params(args))
    except KeyboardInterrupt:
        print("spineseg: interrupted; every saved prediction is complete and the dataset is consistent "
              "(run predict again to continue)", file=sys.stderr)
        raise
    _say(f"predicted {len(report.predicted)} case(s) with {report.model['name']} "
         f"({report.model['sha256'][:12]}), skipped {len(report.skipped)}, failed {len(report.failed)}")
    for name, message in report.failed:
        _say(f"  {name}: {message}")
    if events is not None:
        from dataclasses import asdict

        from SpineSegLib.core.events import ReportEvent
        from SpineSegLib.evaluation.reports import plain

        events(ReportEvent("predict", plain(asdict(report))))
    return 1 if report.failed else 0


def _classical_params(args):
    """The ``--params`` file of ``predict --method classical`` (None: the defaults)."""
    from SpineSegLib.core.errors import InputError

    if not args.params:
        return None
    if args.method != "classical":
        raise InputError("--params sets the classical method's parameters: it needs --method classical")
    from SpineSegLib.cli.classical import read_params_file

    return read_params_file(args.params)


def run_status(args):
    from SpineSegLib.annotation.store import open_dataset

    ds = open_dataset(args.dir)
    entries = ds.list_cases(status=args.status, split=args.split)
    counts = ds.counts()
    _say(f"{ds.name} ({ds.root}): {sum(counts[s] for s in STATUSES)} case(s), "
         f"{ds.modality or '?'}, labels in VerSe ids")
    _say("  " + "  ".join(f"{k}: {v}" for k, v in counts.items()))
    rows = [e.row() if not e.problem else {"case": e.name, "status": "BROKEN", "split": e.split or ""} for e in entries]
    _say(format_table(rows, STATUS_COLUMNS))
    problems = ds.check()
    if problems:
        _say(f"{len(problems)} problem(s):")
        for pr in problems:
            _say(f"  {pr}")
    if args.csv:
        from SpineSegLib.evaluation.reports import write_csv
        write_csv(rows, args.csv, force=False, fields=[c for c, _ in STATUS_COLUMNS])
    return 0


def run_save(args):
    from SpineSegLib.annotation.store import open_dataset
    from SpineSegLib.core.image import read_image

    ds = open_dataset(args.dir)
    label = read_image(args.labels)
    v = ds.save_correction(args.case, label, user=args.user, based_on=args.based_on, note=args.note,
                           status="reviewed" if args.reviewed else "corrected")
    entry = ds.last_save or {}
    _say(f"case {args.case}: saved version {v} ({entry.get('status')}, by {entry.get('user')}) as {entry.get('file')}")
    for w in entry.get("warnings", []):
        _say(f"  warning: {w}")
    return 0


def run_relabel(args):
    from SpineSegLib.annotation.store import open_dataset

    ds = open_dataset(args.dir)
    v, result = ds.relabel(args.case, args.vertebra, args.as_name, user=args.user, only=args.only,
                           allow_t13=args.allow_t13, allow_l6=args.allow_l6)
    if v is None:
        _say(f"case {args.case}: {result.describe()}; nothing saved")
    else:
        _say(f"case {args.case}: {result.describe()}; saved as version {v}")
    return 0


def run_review(args):
    from SpineSegLib.annotation.store import open_dataset

    ds = open_dataset(args.dir)
    for case in args.case:
        v = ds.mark_reviewed(case, user=args.user)
        _say(f"case {case}: version {v} marked reviewed")
    return 0


def run_split(args):
    from SpineSegLib.annotation.store import open_dataset

    ds = open_dataset(args.dir)
    for case in args.case:
        ds.set_split(case, args.to)
    _say(f"{len(args.case)} case(s) moved to {args.to}")
    return 0


def run_finetune(args):
    return _with_progress(args, lambda progress, events: _finetune(args, progress, events))


def _finetune(args, progress, events):
    from SpineSegLib.annotation.store import open_dataset
    from SpineSegLib.annotation.finetune import finetune

    ds = open_dataset(args.dir)
    report = finetune(ds, args.model, args.output, iterations=args.iterations, lr=args.lr, device=args.device,
                      validation_cases=args.validation_cases, run_dir=args.run_dir, threads=args.threads,
                      seed=args.seed, evaluate=not args.no_evaluation, force=args.force,
                      crop_unlabelled=args.crop_unlabelled, keep_incomplete=not args.drop_incomplete,
                      progress=progress, log=_say, user=args.user)
    if report.cases:
        rows = [{"case": c.case, "version": c.version,
                 "before": f"{c.before.get('dice_mean', float('nan')):.3f}",
                 "after": f"{c.after.get('dice_mean', float('nan')):.3f}",
                 "note": "; ".join(n for n in (c.before_note and f"before: {c.before_note}",
                                               c.after_note and f"after: {c.after_note}") if n)} for c in report.cases]
        rows.append({"case": "ALL", "version": "", "before": f"{report.before.get('dice_mean', float('nan')):.3f}",
                     "after": f"{report.after.get('dice_mean', float('nan')):.3f}", "note": ""})
        _say("per-vertebra Dice (mean over the vertebrae of the validation cases):")
        _say(format_table(rows, (("case", "case"), ("version", "labels v"), ("before", "before"), ("after", "after"),
                                 ("note", "note"))))
    if args.json:
        from SpineSegLib.evaluation.reports import write_json
        write_json(report.to_dict(), args.json, force=args.force)
    if events is not None:
        from SpineSegLib.core.events import ReportEvent
        from SpineSegLib.evaluation.reports import plain

        events(ReportEvent("finetune", plain(report.to_dict()), str(args.json) if args.json else None))
    return 0


def run_export(args):
    from SpineSegLib.annotation.store import open_dataset
    from SpineSegLib.annotation.export import export_dataset

    ds = open_dataset(args.dir)
    record = export_dataset(ds, args.format, args.output, statuses=tuple(args.status), splits=args.split,
                            subset=args.subset, force=args.force, progress=console_progress(skip_repeats=True))
    _say(f"exported {len(record['cases'])} case(s) as {args.format} to {args.output}")
    if record.get("note"):
        _say(f"  note: {record['note']}")
    return 0


def run_check(args):
    from SpineSegLib.annotation.store import open_dataset

    ds = open_dataset(args.dir)
    problems = ds.check(repair=args.repair, deep=args.deep)
    if not problems:
        _say(f"{ds.root}: no problems found")
        return 0
    for pr in problems:
        _say(("repaired: " if args.repair and pr.repairable else "") + str(pr))
    left = [pr for pr in problems if not (args.repair and pr.repairable)]
    return 1 if left else 0
