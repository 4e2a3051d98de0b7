"""Full traversal of a trained IIS model on the held-out cases of its recipe, scored per vertebra.

    .venv/bin/python Testing/benchmarks/iis_heldout_traversal.py RUN_DIR [--cases 3] [--threads 1]

RUN_DIR is a ``spineseg train`` run folder (``model.pt`` + ``config.toml``). For each held-out case
(``[data] held_out``) the scan goes through ``iis.inference.segment_vertebrae`` and the result is
compared with the reference by ``instance_metrics.evaluate_instance_images`` (largest-overlap
matching, Lessmann et al. 4.2): per reference vertebra its matched id, Dice, ASSD; extra instances;
identification accuracy; traversal time and network passes.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from SpineSegLib.errors import NoSpineFoundError
from SpineSegLib.image import read_image
from SpineSegLib.iis.datasets import label_values
from SpineSegLib.iis.inference import segment_vertebrae
from SpineSegLib.iis.train_config import load_train_config
from SpineSegLib.iis.training import gather_cases, split_cases
from SpineSegLib.instance_metrics import evaluate_instance_images
from SpineSegLib.labels import name_of
from SpineSegLib.orientation import to_canonical


def reference_in_verse_ids(case):
    label = read_image(case.label)
    mapping = case.vertebra_map(to_canonical(label).image.array)
    lut = np.zeros(int(label.array.max()) + 1, np.uint8)
    for value, key in mapping.items():
        lut[value] = key
    return label.with_array(lut[label.array])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--weights", type=Path, help="weights file (default: RUN_DIR/model.pt)")
    ap.add_argument("--keep-incomplete", action="store_true", help="score vertebrae classified incomplete too")
    args = ap.parse_args()
    cfg = load_train_config(args.run_dir / "config.toml")
    held = split_cases(gather_cases(cfg), cfg)["held_out"][: args.cases]
    report = []
    for case in held:
        ref = reference_in_verse_ids(case)
        t = time.perf_counter()
        try:
            result = segment_vertebrae(read_image(case.image), str(args.weights or args.run_dir / "model.pt"),
                                       device="cpu", threads=args.threads, keep_incomplete=args.keep_incomplete)
        except NoSpineFoundError as exc:
            print(f"{case.case_id}: {exc}")
            report.append({"case": case.case_id, "vertebrae": [{"ref": name_of(i), "pred": None, "dice": 0.0}
                                                               for i in label_values(ref.array)],
                           "id_accuracy": 0.0, "found_in_order": [], "extras": []})
            continue
        seconds = time.perf_counter() - t
        found = [(v.name, round(v.regressed_label, 2), round(v.completeness, 2), v.in_output)
                 for v in sorted(result.instances, key=lambda v: v.traversal_index)]
        res = evaluate_instance_images(result.labels, ref, pred_ids=None,
                                       pred_completeness={v.id: bool(v.complete) for v in result.instances})
        rows = [{"ref": name_of(v.ref_id), "pred": name_of(v.pred_id) if v.pred_id else None,
                 "dice": round(v.dice, 3), "assd_mm": None if np.isnan(v.assd_mm) else round(v.assd_mm, 2),
                 "pred_complete": v.pred_complete} for v in res.vertebrae]
        entry = {"case": case.case_id, "seconds": round(seconds, 1), "found_in_order": found,
                 "vertebrae": rows, "extras": [(name_of(e.pred_id), e.voxels) for e in res.extras],
                 "id_accuracy": res.id_accuracy, "mean_dice": float(np.mean([v.dice for v in res.vertebrae]))}
        report.append(entry)
        print(f"{case.case_id}: {seconds:.0f} s, {result.network_passes} network passes, stop: {result.stop_reason}")
        print(f"   found in traversal order (name, regressed label, P(complete), in output): {found}")
        for r in rows:
            print(f"   {r['ref']}: matched {r['pred']}, Dice {r['dice']:.3f}, ASSD {r['assd_mm']} mm, "
                  f"complete {r['pred_complete']}")
        print(f"   extras {entry['extras']}, id accuracy {res.id_accuracy:.2f}, mean Dice {entry['mean_dice']:.3f}")
    dice = [r["dice"] for e in report for r in e["vertebrae"]]
    in_order = sum(all(r["dice"] > 0.5 for r in e["vertebrae"])
                   and len({r["pred"] for r in e["vertebrae"]}) == len(e["vertebrae"]) for e in report)
    print(f"{len(report)} cases, {len(dice)} reference vertebrae: Dice mean {np.mean(dice):.3f}, median "
          f"{np.median(dice):.3f}, detected (Dice > 0.5) {np.mean(np.array(dice) > 0.5):.0%}; cases with every "
          f"vertebra found once (Dice > 0.5, distinct instances): {in_order}/{len(report)}; "
          f"id accuracy {np.mean([e['id_accuracy'] for e in report]):.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
