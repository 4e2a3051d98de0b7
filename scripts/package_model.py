"""Copy a finished ``spineseg train`` run into ``SpineSeg/SpineSegLib/resources/models`` as NAME.pt
with its JSON card.

    .venv/bin/python scripts/package_model.py runs/mr-vertebral-bodies mr-vertebral-bodies \
        --recipe SpineSeg/SpineSegLib/resources/recipes/mr-vertebral-bodies.toml --eval test.json \
        --summary "Lumbar vertebral bodies in sagittal MR ..." --license CC-BY-SA-4.0 [--experimental] [--force]

The card (``NAME.json``, read by ``SpineSegLib.iis.model.catalog`` and checked on every load by
``SpineSegLib.iis.model.checkpoint.read_checkpoint``) records the SHA-256 of the weights, the model
configuration, the training data and split, the recipe, and the figures of
``Testing/benchmarks/iis_model_eval.py --json`` (``--eval``). The human-readable model card
(``NAME.md``) is written by hand beside it.
"""

import argparse
import json
import os
import shutil
from pathlib import Path

from SpineSegLib.core.errors import OutputExistsError
from SpineSegLib.core.files import check_force, replaced_atomically, write_text_atomic
from SpineSegLib.core.resources import resource_dir
from SpineSegLib.core.files import sha256_of
from SpineSegLib.iis.model.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("name")
    ap.add_argument("--recipe", type=Path, required=True)
    ap.add_argument("--eval", type=Path, action="append", default=[], help="iis_model_eval.py --json output(s)")
    ap.add_argument("--summary", required=True)
    ap.add_argument("--license", required=True, help="licence of the weights (follows the training data)")
    ap.add_argument("--experimental", action="store_true", help="mark the model experimental (listed last, never preselected)")
    ap.add_argument("--per-pass-cpu", type=float, help="measured seconds per network pass on 2 CPU threads")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()

    out = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "models"
    out.mkdir(parents=True, exist_ok=True)
    weights, card = out / f"{args.name}.pt", out / f"{args.name}.json"
    try:
        check_force(weights, args.force)
        check_force(card, args.force)
    except OutputExistsError as exc:
        raise SystemExit(str(exc)) from None
    ck = read_checkpoint(args.run_dir / "model.pt")
    meta = ck.get("metadata") or {}
    recipe = args.recipe.resolve()
    # a bundled recipe is reproduced by name (spineseg train NAME)
    command = recipe.stem if recipe.parent == resource_dir("recipes").resolve() else recipe.relative_to(REPO)
    metrics = {}
    for path in args.eval:
        for split, entry in json.loads(path.read_text(encoding="utf-8")).items():
            metrics[split] = entry["summary"]
    data = {
        "name": args.name,
        "summary": args.summary,
        "modality": ck["config"]["modality"],
        "variant": ck["config"]["variant"],
        "config": ck["config"],
        "sha256": sha256_of(args.run_dir / "model.pt"),
        "size_bytes": (args.run_dir / "model.pt").stat().st_size,
        "license": args.license,
        "recipe": str(recipe.relative_to(REPO)),
        "reproduce": f"spineseg train {command}",
        # dataset roots relative to the checkout (e.g. ../shared/data/...), not this machine's paths
        "training_data": [{**d, "root": os.path.relpath(d["root"], REPO)} for d in meta.get("datasets") or []],
        "train_cases": meta.get("train_cases"),
        "validation_cases": meta.get("validation_cases"),
        "test_cases": meta.get("test_cases", meta.get("held_out_cases")),   # held_out_cases: runs before the rename
        "iteration": meta.get("iteration"),
        "final_weights": meta.get("final_weights"),
        "label_convention": meta.get("label_convention"),
        "metrics": metrics,
        "citation": "Lessmann et al., Medical Image Analysis 53 (2019) 142-155",
    }
    if args.experimental:
        data["experimental"] = True
    if args.per_pass_cpu:
        data["per_pass_seconds"] = {"cpu": args.per_pass_cpu}
    with replaced_atomically(weights, ".pt") as tmp:
        shutil.copyfile(args.run_dir / "model.pt", tmp)
    write_text_atomic(card, json.dumps(data, indent=2, default=float) + "\n")
    print(f"{weights} ({data['size_bytes'] / 1e6:.2f} MB, sha256 {data['sha256']})\n{card}")


if __name__ == "__main__":
    main()
