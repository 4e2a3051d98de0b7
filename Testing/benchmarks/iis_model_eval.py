"""Full traversals of a trained IIS model on the validation or test cases of its recipe, scored
per vertebra (Lessmann et al. 4.2 via ``instance_metrics``), with the time per scan.

    .venv/bin/python Testing/benchmarks/iis_model_eval.py WEIGHTS --recipe RECIPE \
        [--split test|validation|both] [--cases N] [--threads 2] [--json OUT.json]

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
  completeness accuracy and FP/FN per scan (reference flag: the vertebra does not touch the border).
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--recipe", help="training recipe (default: config.toml beside the weights)")
    ap.add_argument("--split", choices=("test", "validation", "both", "held_out"), default="test",
                    help="the recipe's cases to measure (held_out: the older name of test)")
    ap.add_argument("--cases", type=int, default=0, help="only the first N cases (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--data", action="append", default=[], metavar="KIND=PATH",
                    help="folder of the recipe's source of this kind (default: in $SPINESEG_DATA)")
    args = ap.parse_args()
    os.environ.setdefault("SPINESEG_DATA", str(DATA))
    cfg = load_train_config(args.recipe or args.weights.parent / "config.toml")
    set_source_roots(cfg, args.data)
    split = split_cases(gather_cases(cfg), cfg)
    names = ["validation", "test"] if args.split == "both" else [split_name(args.split)]
    report = {}
    for name in names:
        cases = split[name][: args.cases or None]
        results, rows, seconds = [], [], []
        for case in cases:
            ref = reference_in_verse_ids(case)
            image = read_image(case.image)
            t = time.perf_counter()
            try:
                run = segment_vertebrae(image, str(args.weights), device=args.device, threads=args.threads)
                pred, comp, note = run.labels, {v.id: bool(v.complete) for v in run.instances if v.in_output}, ""
                passes = run.network_passes
            except NoSpineFoundError as exc:
                pred, comp, note, passes = image.with_array(np.zeros(image.shape, np.uint8)), {}, str(exc), 0
            seconds.append(time.perf_counter() - t)
            pred, beyond = split_beyond_range(pred, ref)
            res = evaluate_instance_images(pred, ref, pred_ids=None,
                                           pred_completeness={k: v for k, v in comp.items() if name_of(k) not in beyond})
            res.case = case.case_id
            results.append(res)
            s = res.summary()
            rows.append({"case": case.case_id, "seconds": round(seconds[-1], 2), "network_passes": passes,
                         "beyond_labelled_range": beyond, "note": note, **{k: s[k] for k in (
                             "dice_mean", "assd_mm_mean", "hd95_mm_mean", "detection_rate", "id_accuracy", "extra")},
                         "vertebrae": [(v.name, v.status, round(v.dice, 3)) for v in res.vertebrae]})
            print(f"{case.case_id}: {seconds[-1]:.1f} s, {passes} passes; Dice {s['dice_mean']:.3f}, "
                  f"detected {res.n_detected}/{res.n_ref}, id {s['id_accuracy']:.2f}, extras {s['extra']}, "
                  f"beyond the labelled range {beyond}" + (f" [{note}]" if note else ""))
        summary = summarize(results, name)
        summary["seconds_per_scan_mean"] = float(np.mean(seconds)) if seconds else math.nan
        summary["seconds_per_scan_max"] = float(np.max(seconds)) if seconds else math.nan
        summary["beyond_labelled_range"] = sum(len(r["beyond_labelled_range"]) for r in rows)
        report[name] = {"summary": summary, "cases": rows}
        print(f"== {name}: {len(cases)} cases, {summary['reference_vertebrae']} reference vertebrae")
        print(f"   Dice {summary['dice_mean']:.3f} ± {summary['dice_std']:.3f}, ASSD {summary['assd_mm_mean']:.2f} ± "
              f"{summary['assd_mm_std']:.2f} mm, HD95 {summary['hd95_mm_mean']:.2f} ± {summary['hd95_mm_std']:.2f} mm")
        print(f"   detection rate {summary['detection_rate']:.3f} ({summary['detected']}/{summary['reference_vertebrae']}), "
              f"identification {summary['id_accuracy']:.3f}, kappa {summary['kappa']:.3f}, extras per scan "
              f"{summary['extra_per_scan']:.2f} (+{summary['beyond_labelled_range']} beyond the labelled range)")
        print(f"   completeness accuracy {summary['completeness_accuracy']:.3f} over {summary['completeness_scored']}, "
              f"FP/scan {summary['completeness_fp_per_scan']:.2f}, FN/scan {summary['completeness_fn_per_scan']:.2f}; "
              f"spine Dice {summary['spine_dice_mean']:.3f}; {summary['seconds_per_scan_mean']:.1f} s per scan "
              f"(max {summary['seconds_per_scan_max']:.1f}) with {args.threads} thread(s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
