"""Print SpineSegLib's package-level import graph; exit 1 on an import cycle or an upward import.

    python scripts/import_graph.py [--modules] [--lib SpineSeg/SpineSegLib]

Every ``import`` counts, also those inside functions: a function-level import that closes a cycle
is a cycle all the same. The layers (lower first) are the ones ARCHITECTURE.md describes; a package
may import its own layer's package and any lower one, never a higher one, and two packages of the
same layer never import each other. Within a package, modules must not import each other in a
cycle either (``--modules`` prints that graph too).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

LIB_NAME = "SpineSegLib"
# package -> layer; a module belongs to the longest package prefix listed here.
LAYERS = {
    "SpineSegLib": 0,            # the package face (__init__, __main__): version only
    "SpineSegLib.core": 0,
    "SpineSegLib.classical": 1,
    "SpineSegLib.evaluation": 1,
    "SpineSegLib.iis": 1,        # the package face only
    "SpineSegLib.iis.model": 1,
    "SpineSegLib.iis.infer": 2,
    "SpineSegLib.iis.train": 3,
    "SpineSegLib.annotation": 4,
    "SpineSegLib.cli": 5,
    "SpineSegLib.slicer": 5,
}
ALLOWED: set = set()   # (importer, imported) pairs exempt from the layer rule: none


def module_name(lib: Path, path: Path) -> str:
    parts = list(path.relative_to(lib.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, is_package: bool) -> set[str]:
    """Every SpineSegLib module named by an import statement anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == LIB_NAME)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != LIB_NAME:
                continue
            found.add(target)
            for alias in node.names:          # "from pkg import module"
                found.add(f"{target}.{alias.name}")
    return found


def package_of(module: str) -> str:
    if module == f"{LIB_NAME}.__main__":      # ``python -m SpineSegLib`` is the CLI's entry point
        return f"{LIB_NAME}.cli"
    best = LIB_NAME
    for pkg in LAYERS:
        if (module == pkg or module.startswith(pkg + ".")) and len(pkg) > len(best):
            best = pkg
    return best


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def build(lib: Path):
    files = {module_name(lib, p): p for p in sorted(lib.rglob("*.py"))}
    modules = defaultdict(set)
    for name, path in files.items():
        for target in imports_of(path, name, path.name == "__init__.py"):
            if target in files and target != name:
                modules[name].add(target)
        modules.setdefault(name, set())
    packages = defaultdict(set)
    for src, targets in modules.items():
        for dst in targets:
            a, b = package_of(src), package_of(dst)
            if a != b:
                packages[a].add(b)
    return files, modules, packages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", type=Path, default=Path(__file__).resolve().parents[1] / "SpineSeg" / LIB_NAME)
    ap.add_argument("--modules", action="store_true", help="also print the module-level graph")
    args = ap.parse_args(argv)
    files, modules, packages = build(args.lib)
    problems = []
    unknown = sorted({package_of(m) for m in files} - set(LAYERS))
    print("package import graph (layer: package -> what it imports)")
    for pkg in sorted(LAYERS, key=lambda p: (LAYERS[p], p)):
        targets = sorted(packages.get(pkg, ()), key=lambda p: (LAYERS[p], p))
        print(f"  {LAYERS[pkg]}: {pkg} -> {', '.join(t.replace(LIB_NAME + '.', '') for t in targets) or '-'}")
        for t in targets:
            if (pkg, t) in ALLOWED:
                continue
            if LAYERS[t] > LAYERS[pkg]:
                problems.append(f"upward import: {pkg} (layer {LAYERS[pkg]}) imports {t} (layer {LAYERS[t]})")
    for comp in find_cycles({p: set(t) for p, t in packages.items()}):
        problems.append("package cycle: " + " <-> ".join(comp))
    for comp in find_cycles({m: set(t) for m, t in modules.items()}):
        problems.append("module cycle: " + " <-> ".join(comp))
    if args.modules:
        print("module import graph")
        for m in sorted(modules):
            print(f"  {m} -> {', '.join(sorted(modules[m])) or '-'}")
    if unknown:
        problems.append(f"packages without a layer: {', '.join(unknown)}")
    for line in problems:
        print("error:", line)
    print(f"{len(files)} modules, {sum(len(t) for t in modules.values())} module imports: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
