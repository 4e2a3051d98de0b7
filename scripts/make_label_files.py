"""Write SpineSeg's vertebra label files (colour tables and terminology) from SpineSegLib/core/labels.py.

    python scripts/make_label_files.py --force          # regenerate SpineSeg/SpineSegLib/resources/labels/
    python scripts/make_label_files.py --check          # exit 1 when the committed files are out of date
    python scripts/make_label_files.py out/labels       # into another folder

What the files are: :mod:`SpineSegLib.core.label_files`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSeg"))
from SpineSegLib.core.errors import SpineSegError  # noqa: E402
from SpineSegLib.core.label_files import write_label_files  # noqa: E402
from SpineSegLib.core.resources import resource_dir  # noqa: E402


def out_of_date(folder: Path) -> list[str]:
    """The label files in ``folder`` that differ from what :func:`write_label_files` writes (or are missing)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_label_files(tmp)
        return [p.name for p in fresh if not (folder / p.name).is_file()
                or (folder / p.name).read_bytes() != p.read_bytes()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=resource_dir("labels"),
                        help="output folder (default: the package's resources/labels)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = out_of_date(args.folder)
        for name in stale:
            print(f"{args.folder / name} is out of date: run python scripts/make_label_files.py --force")
        return 1 if stale else 0
    try:
        written = write_label_files(args.folder, force=args.force)
    except SpineSegError as exc:
        print(f"make_label_files: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
