"""``spineseg evaluate PRED REF``: compare a segmentation with a reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

HELP = "compare a predicted mask (or label map) with a reference: IoU, DSC, HD95, ASSD"


def register(sub):
    p = sub.add_parser(
        "evaluate",
        help=HELP,
        description=(
            "Compare PRED with REF on REF's grid (PRED is mapped onto it exactly when the grids differ only "
            "by flipped/permuted axes, else resampled with nearest neighbour). Binary mode treats every "
            "non-zero voxel as spine. Metric definitions: see SpineSegLib.metrics."
        ),
    )
    p.add_argument("pred", metavar="PRED", help="predicted mask or label map (NIfTI, NRRD, MHA, DICOM folder)")
    p.add_argument("ref", metavar="REF", help="reference mask or label map")
    p.add_argument("--labels", metavar="IDS",
                   help="reference ids that count as foreground in binary mode, e.g. '1-24' or '8,9,10' (default: all non-zero)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(func=run)
    return p


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


def write_json(data, path, force=False):
    from ..errors import OutputExistsError

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=lambda v: None))
    tmp.replace(path)


def run(args):
    from ..image import read_image
    from ..metrics import evaluate_binary_images

    pred, ref = read_image(args.pred), read_image(args.ref)
    labels = parse_ids(args.labels) if args.labels else None
    m = evaluate_binary_images(pred, ref, labels)
    print(format_metrics(m))
    if args.json:
        write_json(m, args.json, args.force)
    return 0
