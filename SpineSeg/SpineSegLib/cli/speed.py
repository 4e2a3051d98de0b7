"""``spineseg speed [--model WEIGHTS]``: what this machine offers for IIS inference, as one JSON line.

Reports the torch version, the GPUs torch sees, the CPU cores and whether the CPU has bf16
instructions; with ``--model`` it also times a few network passes (one warm-up, then the median of
``--repeats``) on each device. Progress goes to stdout as ``{"progress": NaN, "message": ...}``
lines, the result as the last line ``{"probe": {...}}``. With ``--events`` stdout carries only the
JSON-lines events of :mod:`SpineSegLib.core.events` (progress, then a ``report`` event named ``probe``
holding the same object; an error event on failure). The Slicer module runs it that way in a child
process, so that its own process never imports torch, and caches the measured seconds per pass for its
run-time estimate.

Console use::

    spineseg speed
    spineseg speed --model mr-vertebral-bodies --device cpu --repeats 3
    spineseg speed --events          # {"kind":"report","name":"probe","data":{...},"path":null}
"""

from __future__ import annotations

HELP = "report torch/GPU availability and time IIS network passes (one JSON line on stdout)"


def register(sub):
    p = sub.add_parser("speed", help=HELP, description=HELP[0].upper() + HELP[1:] + ".")
    p.add_argument("--model", metavar="WEIGHTS",
                   help="weights file to time, or the name of a bundled model (e.g. mr-vertebral-bodies)")
    p.add_argument("--device", action="append", choices=("auto", "cpu", "cuda"),
                   help="device(s) to time (default: auto = the CPU and, if present, the GPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per device (default 3)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all available cores)")
    p.add_argument("--events", action="store_true", help="JSON-lines events on stdout (for the Slicer module)")
    p.set_defaults(func=run)
    return p


def run(args):
    import json

    if args.events:
        from SpineSegLib.core.events import ReportEvent, events_on_stdout

        with events_on_stdout() as events:
            events(ReportEvent("probe", measure(args, events.progress)))
        return 0
    print(json.dumps({"probe": measure(args)}), flush=True)
    return 0


def measure(args, progress=None) -> dict:
    """The probe's result (:func:`SpineSegLib.iis.infer.runtime_estimate.probe`) for the parsed arguments."""
    from pathlib import Path

    from SpineSegLib.iis.infer.runtime_estimate import probe
    from SpineSegLib.iis.model.catalog import resolve_model

    model = args.model
    if model and not Path(model).is_file():     # a file is reported as given (the caller matches on it)
        model = str(resolve_model(model))
    return probe(model, tuple(args.device or ("auto",)), args.repeats, args.threads, progress=progress)
