"""Print the size of SpineSegLib: lines per package, the largest files and the longest functions.

    python scripts/code_stats.py [--lib SpineSeg/SpineSegLib] [--top 10]
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", type=Path, default=Path(__file__).resolve().parents[1] / "SpineSeg" / "SpineSegLib")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    per_package, files, functions = Counter(), [], []
    for path in sorted(args.lib.rglob("*.py")):
        rel = path.relative_to(args.lib)
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        package = ".".join(rel.parts[:-1]) or "(top level)"
        per_package[package] += lines
        files.append((lines, rel.as_posix()))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel.as_posix()}:{node.name}"))
    print(f"{sum(per_package.values())} lines in {len(files)} modules")
    print("lines per package:")
    for package, lines in sorted(per_package.items()):
        print(f"  {lines:6d}  {package}")
    print(f"largest files: " + ", ".join(f"{p} {n}" for n, p in sorted(files, reverse=True)[: args.top]))
    print(f"longest functions: " + ", ".join(f"{p} {n}" for n, p in sorted(functions, reverse=True)[: args.top]))
    print(f"files over 500 lines: {sum(n > 500 for n, _ in files)}; functions over 80 lines: "
          f"{sum(n > 80 for n, _ in functions)}")


if __name__ == "__main__":
    main()
