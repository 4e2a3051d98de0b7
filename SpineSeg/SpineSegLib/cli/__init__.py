"""The ``spineseg`` command line.

Each subcommand lives in ``SpineSegLib/cli/<name>.py`` with ``register(subparsers)`` and a
``run(args)`` function that imports its heavy dependencies (torch ...) only when it runs, so that
``spineseg --help`` is instant.

Errors derived from :class:`SpineSegError` are printed as one line (``spineseg: error: ...``) with exit
status 2; so are the errors of a full or read-only disk that did not come through ``core.files`` (never
a bug, so a traceback would only hide the cause). Ctrl-C ends with ``spineseg: interrupted`` (and what
was kept, for :class:`Interrupted`) and exit status 130. Anything else is a bug and keeps its traceback.

Console use::

    from SpineSegLib.cli import main
    main(["classical", "ct.nii.gz", "-o", "spine.nii.gz"])      # 0, 2 (one-line error) or 130
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from SpineSegLib import __version__
from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.files import describe_os_error, write_failure
from SpineSegLib.core.notes import notes_on_stderr

#: OSErrors reported as one line wherever they come from: a full or read-only disk, a quota
DISK_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS") if hasattr(errno, n))

COMMANDS = ("classical", "evaluate", "iis", "speed", "train", "dataset", "engine")


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
        with notes_on_stderr():     # a choice made while reading an input: one line "spineseg: note: ..."
            return int(args.func(args) or 0)
    except SpineSegError as exc:
        print(f"spineseg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        message = write_failure(exc.filename, exc) if exc.filename else describe_os_error(exc)
        print(f"spineseg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("spineseg: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
