"""Full traversals of a trained IIS model on the validation or test cases of its recipe, scored
per vertebra (Lessmann et al. 4.2 via ``instance_metrics``), with the time per scan.

    .venv/bin/python Testing/benchmarks/iis_model_eval.py WEIGHTS --recipe RECIPE \
        [--split test|validation|both] [--test-source KIND] [--cases N] [--threads 2] [--label NAME] [--json OUT.json]

Generalisation across sources (issue 12): the leave-one-source-out recipes
``mr-vertebral-bodies-cross-myo[-dr]`` (train MyoSegmenTUM, test = every Zukic scan) and
``mr-vertebral-bodies-cross-zukic[-dr]`` (train Zukic, test = every MyoSegmenTUM scan) make
``--split test`` the other source. ``--test-source KIND`` measures every case of the recipe's
sources of that kind whatever its split (e.g. the shipped model on all Zukic scans; the cases the
recipe trained or validated on are counted and named in the output, as they are not unseen).

``WEIGHTS``: a ``.pt`` file (e.g. ``SpineSeg/SpineSegLib/resources/models/mr-vertebral-bodies.pt``
or a run folder's ``model.pt``); ``--recipe`` the training recipe (a file or a bundled recipe's
name) whose split is used (default: ``config.toml`` beside the weights); ``--split held_out`` is the
older name of ``test``. The recipe's datasets are found in ``$SPINESEG_DATA`` (default:
``../shared/data`` beside the checkout) or given with ``--data KIND=PATH``. The scan goes through
``iis.infer.run.segment_vertebrae`` exactly as ``spineseg iis`` runs it (incomplete vertebrae are
left out), then:

* the reference is mapped onto VerSe ids as the training reader maps it;
* the sets label only a range of the spine (MyoSegmenTUM L1-L5, Zukic 7 bodies): predicted
  vertebrae whose centre lies above the highest labelled vertebra and that share no voxel with the
  reference are real but unlabelled vertebrae; they are counted apart ("beyond the labelled range")
  and not scored as false positives; everything else is scored as it is;
* per-vertebra Dice, ASSD, HD95 (mm), detection rate (Dice > 0.5), identification accuracy,
  completeness accuracy and FP/FN per scan (reference flag: the vertebra does not touch the border);
* per vertebra level: mean Dice and detections, and one Markdown table row (``--label``) with
  Dice mean ± sd, ASSD, detected, false positives (extra instances) per scan and seconds per scan.
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from SpineSegLib.annotation.conventions import convert_labels
from SpineSegLib.core.errors import NoSpineFoundError
from SpineSegLib.core.image import read_image
from SpineSegLib.iis.train.conventions import TARGET_IDS
from SpineSegLib.iis.infer.run import segment_vertebrae
from SpineSegLib.iis.train.recipe import load_train_config, set_source_roots
from SpineSegLib.iis.train.cases import gather_cases, split_cases
from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images, select_ids, summarize
from SpineSegLib.core.labels import name_of
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.core.splits import split_name


DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"   # beside the checkout, as in conftest.py


def reference_in_verse_ids(case):
    """The case's label map in VerSe ids, vertebrae only (what the network is trained to segment)."""
    label, _ = convert_labels(read_image(case.label), case.convention)
    return label.with_array(select_ids(label.array, TARGET_IDS))


def split_beyond_range(pred, ref):
    """Remove predicted vertebrae above the labelled range that share no voxel with the reference."""
    from SpineSegLib.core.resample import resample_to_grid

    if not pred.same_grid(ref):
        pred = resample_to_grid(pred, ref, label=True)
    p = to_canonical(pred).image.array            # [z, y, x], z = superior
    r = to_canonical(ref).image.array
    top = np.nonzero(r.any(axis=(1, 2)))[0].max()
    out, beyond = pred.array.copy(), []
    for vid in [int(v) for v in np.unique(p) if v]:
        m = p == vid
        zc = np.nonzero(m)[0].mean()
        if zc > top and not (r[m] > 0).any():
            beyond.append(name_of(vid))
            out[pred.array == vid] = 0
    return pred.with_array(out), beyond


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--recipe", help="training recipe (default: config.toml beside the weights)")
    ap.add_argument("--split", choices=("test", "validation", "both", "held_out"), default="test",
                    help="the recipe's cases to measure (held_out: the older name of test)")
    ap.add_argument("--test-source", metavar="KIND", dest="test_source",
                    help="measure every case of the recipe's sources of this kind (e.g. zukic), whatever its split")
    ap.add_argument("--cases", type=int, default=0, help="only the first N cases (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--label", help="name of the Markdown table row (default: the weights' folder)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--data", action="append", default=[], metavar="KIND=PATH",
                    help="folder of the recipe's source of this kind (default: in $SPINESEG_DATA)")
    return ap.parse_args()


def case_sets(cfg, args) -> dict:
    """``{name: cases}`` to measure, and the cases of each set the recipe trained or validated on."""
    cases = gather_cases(cfg)
    split = split_cases(cases, cfg)
    if args.test_source:
        chosen = [c for c in cases if c.case_id.split("/")[0] == args.test_source]
        if not chosen:
            kinds = sorted({c.case_id.split("/")[0] for c in cases})
            raise SystemExit(f"--test-source {args.test_source}: the recipe has no such cases (it has: {', '.join(kinds)})")
        seen = [c.case_id for c in chosen if c in split["train"] + split["validation"]]
        if seen:
            print(f"note: {len(seen)} of the {len(chosen)} {args.test_source} cases were used in training or validation "
                  f"by the recipe: {', '.join(seen)}")
        return {f"source:{args.test_source}": chosen}
    names = ["validation", "test"] if args.split == "both" else [split_name(args.split)]
    return {name: split[name] for name in names}


def evaluate_case(case, args):
    """One full traversal of ``case``, scored: ``(CaseResult, row, seconds)``."""
    ref = reference_in_verse_ids(case)
    image = read_image(case.image)
    t = time.perf_counter()
    try:
        run = segment_vertebrae(image, str(args.weights), device=args.device, threads=args.threads)
        pred, comp, note = run.labels, {v.id: bool(v.complete) for v in run.instances if v.in_output}, ""
        passes = run.network_passes
    except NoSpineFoundError as exc:
        pred, comp, note, passes = image.with_array(np.zeros(image.shape, np.uint8)), {}, str(exc), 0
    seconds = time.perf_counter() - t
    pred, beyond = split_beyond_range(pred, ref)
    res = evaluate_instance_images(pred, ref, pred_ids=None,
                                   pred_completeness={k: v for k, v in comp.items() if name_of(k) not in beyond})
    res.case = case.case_id
    s = res.summary()
    row = {"case": case.case_id, "seconds": round(seconds, 2), "network_passes": passes,
           "beyond_labelled_range": beyond, "note": note, **{k: s[k] for k in (
               "dice_mean", "assd_mm_mean", "hd95_mm_mean", "detection_rate", "id_accuracy", "extra")},
           "vertebrae": [(v.name, v.status, round(v.dice, 3)) for v in res.vertebrae]}
    print(f"{case.case_id}: {seconds:.1f} s, {passes} passes; Dice {s['dice_mean']:.3f}, "
          f"detected {res.n_detected}/{res.n_ref}, id {s['id_accuracy']:.2f}, extras {s['extra']}, "
          f"beyond the labelled range {beyond}" + (f" [{note}]" if note else ""))
    return res, row, seconds


def per_level(results) -> dict:
    """``{vertebra name: {"dice_mean", "detected", "n"}}`` from top to bottom of the spine."""
    by = {}
    for v in (v for r in results for v in r.vertebrae):
        by.setdefault(v.ref_id, []).append(v)
    return {name_of(k): {"dice_mean": float(np.mean([v.dice for v in vs])), "detected": sum(v.detected for v in vs),
                         "n": len(vs)} for k, vs in sorted(by.items())}


def print_summary(name, summary, levels, args):
    print(f"== {name}: {summary['cases']} cases, {summary['reference_vertebrae']} reference vertebrae")
    print(f"   Dice {summary['dice_mean']:.3f} ± {summary['dice_std']:.3f}, ASSD {summary['assd_mm_mean']:.2f} ± "
          f"{summary['assd_mm_std']:.2f} mm, HD95 {summary['hd95_mm_mean']:.2f} ± {summary['hd95_mm_std']:.2f} mm")
    print(f"   detection rate {summary['detection_rate']:.3f} ({summary['detected']}/{summary['reference_vertebrae']}), "
          f"identification {summary['id_accuracy']:.3f}, kappa {summary['kappa']:.3f}, extras per scan "
          f"{summary['extra_per_scan']:.2f} (+{summary['beyond_labelled_range']} beyond the labelled range)")
    print(f"   completeness accuracy {summary['completeness_accuracy']:.3f} over {summary['completeness_scored']}, "
          f"FP/scan {summary['completeness_fp_per_scan']:.2f}, FN/scan {summary['completeness_fn_per_scan']:.2f}; "
          f"spine Dice {summary['spine_dice_mean']:.3f}; {summary['seconds_per_scan_mean']:.1f} s per scan "
          f"(max {summary['seconds_per_scan_max']:.1f}) with {args.threads} thread(s)")
    print("   per level: " + ", ".join(f"{k} {v['dice_mean']:.2f} ({v['detected']}/{v['n']})" for k, v in levels.items()))
    label = args.label or args.weights.parent.name
    print("   | model | test cases | Dice mean ± sd | ASSD mm | detected | FP/scan | s/scan |")
    print(f"   | {label} | {name} ({summary['cases']}) | {summary['dice_mean']:.3f} ± {summary['dice_std']:.3f} | "
          f"{summary['assd_mm_mean']:.2f} | {summary['detected']}/{summary['reference_vertebrae']} | "
          f"{summary['extra_per_scan']:.2f} | {summary['seconds_per_scan_mean']:.1f} |")


def main():
    args = parse_args()
    os.environ.setdefault("SPINESEG_DATA", str(DATA))
    cfg = load_train_config(args.recipe or args.weights.parent / "config.toml")
    set_source_roots(cfg, args.data)
    report = {}
    for name, cases in case_sets(cfg, args).items():
        results, rows, seconds = [], [], []
        for case in cases[: args.cases or None]:
            res, row, sec = evaluate_case(case, args)
            results.append(res)
            rows.append(row)
            seconds.append(sec)
        summary = summarize(results, name)
        summary["seconds_per_scan_mean"] = float(np.mean(seconds)) if seconds else math.nan
        summary["seconds_per_scan_max"] = float(np.max(seconds)) if seconds else math.nan
        summary["beyond_labelled_range"] = sum(len(r["beyond_labelled_range"]) for r in rows)
        levels = per_level(results)
        report[name] = {"summary": summary, "per_level": levels, "cases": rows}
        print_summary(name, summary, levels, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
