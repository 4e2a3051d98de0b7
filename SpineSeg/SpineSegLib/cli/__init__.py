"""The ``spineseg`` command line.

Each subcommand lives in ``SpineSegLib/cli/<name>.py`` with ``register(subparsers)`` and a
``run(args)`` function that imports its heavy dependencies (torch ...) only when it runs, so that
``spineseg --help`` is instant. Errors derived from :class:`SpineSegError` are printed as one line
(``spineseg: error: ...``) with exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from SpineSegLib import __version__
from SpineSegLib.core.errors import SpineSegError

COMMANDS = ("classical", "evaluate", "iis", "speed", "train", "dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spineseg",
        description="Automatic spine and vertebra segmentation in CT and lumbar MR.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'spineseg COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"spineseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"cli.{name}"):
                continue  # command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except SpineSegError as exc:
        print(f"spineseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spineseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
