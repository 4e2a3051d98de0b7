"""``spineseg train CONFIG``: train an IIS network from a TOML recipe (see ``iis.train.recipe``).

Console use::

    spineseg train mr-vertebral-bodies-small --output runs/mr-small     # a bundled recipe, data in $SPINESEG_DATA
    spineseg train runs/mr-small/config.toml --output runs/mr-small --resume      # continue after a stop
    spineseg train recipe.toml --check                                            # list the split, train nothing
    spineseg train ct-vertebrae-paper --data ctspine1k=/data/CTSpine1K --device cuda
"""

from __future__ import annotations

HELP = "train an iterative-instance-segmentation (IIS) network from a TOML recipe"


def register(sub):
    p = sub.add_parser(
        "train",
        help=HELP,
        description=(
            "Train an IIS vertebra network (Lessmann et al. 2019) as the TOML recipe CONFIG says: sections "
            "[model] (network and grid), [data] (datasets, validation / test cases), [training] (schedule, "
            "sampling, augmentation, device) and [output] (run folder). Bundled recipes are named without a path "
            "(e.g. mr-vertebral-bodies-small); their datasets are found in $SPINESEG_DATA or given with --data. "
            "The run folder receives model.pt (final weights), last.pt (resume state), logs and curves.png."
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="training recipe (.toml) or the name of a bundled one")
    p.add_argument("--output", metavar="DIR", help="run folder (default: [output] dir of the recipe)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from its last.pt")
    p.add_argument("--iterations", type=int, metavar="N", help="total iterations (overrides [training] iterations)")
    p.add_argument("--stop-at", type=int, metavar="N", dest="stop_at",
                   help="stop after iteration N with a resumable state (split a long run into sessions)")
    p.add_argument("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (overrides [training] device)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (overrides [training] threads)")
    p.add_argument("--workers", type=int, metavar="N", help="data-loading processes (overrides [training] workers)")
    p.add_argument("--seed", type=int, help="sampling / initialisation seed (overrides [training] seed)")
    p.add_argument("--data", action="append", default=[], metavar="KIND=PATH",
                   help="use PATH as the folder of the recipe's [[data.sources]] of this kind (repeatable), "
                        "e.g. --data ctspine1k=/data/CTSpine1K; otherwise $SPINESEG_DATA/<path> is used")
    p.add_argument("--check", action="store_true", help="read the recipe and the datasets, print the split and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args):
    from pathlib import Path

    from SpineSegLib.core.errors import InputError
    from SpineSegLib.core.splits import SPLITS
    from SpineSegLib.iis.train.recipe import load_train_config, resolve_source_roots, set_source_roots

    cfg = load_train_config(args.config)
    if args.output:
        cfg.output_dir = Path(args.output)
    set_source_roots(cfg, args.data)
    resolve_source_roots(cfg)
    for src in cfg.data.sources:
        if not Path(src.root).exists():
            raise InputError(f"dataset folder not found: {src.root} (the recipe's {src.kind} source; "
                             f"point it at your copy with --data {src.kind}=PATH)")
    t = cfg.training
    for name in ("iterations", "device", "threads", "workers", "seed"):
        value = getattr(args, name)
        if value is not None:
            setattr(t, name, value)
    if t.iterations < 1:
        raise InputError("--iterations must be at least 1")

    if args.check:
        from SpineSegLib.iis.train.cases import gather_cases, split_cases

        split = split_cases(gather_cases(cfg), cfg)
        for name in SPLITS:
            ids = [c.case_id for c in split[name]]
            print(f"{name}: {len(ids)} case(s)" + (f": {', '.join(ids)}" if ids else ""))
        print(f"output: {cfg.output_dir}")
        return 0

    from SpineSegLib.iis.train.loop import train

    summary = train(cfg, resume=args.resume, until=args.stop_at, show_progress=not args.quiet)
    print(f"iteration {summary['iteration']}/{summary['iterations']}, {summary['sec_per_iter']:.3f} s/iteration; "
          f"run folder {cfg.output_dir}")
    return 0
