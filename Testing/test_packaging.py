"""The house rules of the code base and its packaging: the import graph has no cycle and no upward import,
files and functions stay small, the wheel carries what the package needs at run time, and CMake installs
into the Slicer extension exactly what the wheel ships."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, data_path

LIB = REPO / "SpineSeg" / "SpineSegLib"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
# A file ("" as name) or function over the limit needs a reason here, keyed (path from the repository root, name).
EXCEPTIONS: dict[tuple[str, str], str] = {}


def product_files():
    yield from sorted(LIB.rglob("*.py"))
    yield REPO / "SpineSeg" / "SpineSeg.py"
    yield REPO / "SpineSegIIS" / "SpineSegIIS.py"


def test_import_graph_has_no_cycle_and_no_upward_import():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "import_graph.py")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SpineSegLib.core -> -" in out.stdout      # the bottom layer imports nothing of ours


def test_import_graph_script_catches_a_cycle_and_an_upward_import(tmp_path):
    lib = tmp_path / "SpineSegLib"
    for rel, text in {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "from SpineSegLib.core import b\n",
        "core/b.py": "def f():\n    from SpineSegLib.core.a import x\n",      # a cycle through a function
        "classical/__init__.py": "",
        "classical/c.py": "",
        "core/up.py": "from SpineSegLib.classical import c\n",                  # core imports a higher layer
    }.items():
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_text(text)
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "import_graph.py"), "--lib", str(lib)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "module cycle: SpineSegLib.core.a <-> SpineSegLib.core.b" in out.stdout
    assert "upward import: SpineSegLib.core (layer 0) imports SpineSegLib.classical (layer 1)" in out.stdout


def test_no_product_file_or_function_is_too_long():
    problems = []
    for path in product_files():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + 1
        if lines > MAX_FILE_LINES and (rel, "") not in EXCEPTIONS:
            problems.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (rel, node.name) not in EXCEPTIONS:
                    problems.append(f"{rel}:{node.lineno} {node.name}(): {length} lines")
    assert not problems, "over the limits (split, or add a reason to EXCEPTIONS):\n" + "\n".join(problems)


def test_only_the_slicer_package_touches_mrml_or_qt():
    problems = []
    for path in LIB.rglob("*.py"):
        if "slicer" in path.relative_to(LIB).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                if name.split(".")[0] in ("slicer", "vtk", "qt", "ctk", "mrml"):
                    problems.append(f"{path.relative_to(LIB)} imports {name}")
    assert not problems, problems


# -- the wheel -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                           capture_output=True, text=True, cwd=out)
    assert build.returncode == 0, build.stdout + build.stderr
    shutil.rmtree(REPO / "build", ignore_errors=True)
    (found,) = out.glob("spineseg-*.whl")
    return found


def wheel_lib_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n for n in z.namelist() if n.startswith("SpineSegLib/") and not n.endswith("/")}


def source_lib_files() -> set[str]:
    return {p.relative_to(LIB.parent).as_posix() for p in LIB.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
            and p.suffix not in (".pyc", ".pyo")}


@pytest.mark.slow
def test_wheel_carries_every_module_and_resource(wheel):
    shipped = wheel_lib_files(wheel)
    assert shipped == source_lib_files()
    for needed in ("SpineSegLib/resources/models/mr-vertebral-bodies.pt",
                   "SpineSegLib/resources/models/mr-vertebral-bodies.json",
                   "SpineSegLib/resources/labels/SpineSeg-vertebrae.term.json",
                   "SpineSegLib/resources/recipes/mr-vertebral-bodies.toml",
                   "SpineSegLib/resources/samples/LIDC-IDRI-0001-2.5mm/image.nii.gz"):
        assert needed in shipped


@pytest.mark.slow
def test_unpacked_wheel_segments_an_mr_from_another_folder(wheel, tmp_path):
    """The wheel alone (no checkout on the path) finds its bundled model by name and segments a real MR."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    mr = data_path("mr", "vertebral-bodies-myosegmentum", "44_img.nii.gz")
    run = subprocess.run([sys.executable, "-c",
                          "import sys, SpineSegLib; print(SpineSegLib.__file__); "
                          "from SpineSegLib.cli import main; sys.exit(main(sys.argv[1:]))",
                          "iis", str(mr), "--model", "mr-vertebral-bodies", "-o", "vertebrae.nii.gz",
                          "--device", "cpu"], capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0].startswith(str(site))      # the unpacked wheel, not the checkout
    from SpineSegLib.core.image import read_image
    labels = read_image(work / "vertebrae.nii.gz")
    found = {int(v) for v in set(labels.array.ravel().tolist()) if v}
    assert {20, 21, 22, 23, 24} <= found, found                   # L1-L5


@pytest.mark.slow
def test_cmake_installs_exactly_what_the_wheel_ships(wheel, tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed: the CMake file list cannot be evaluated here")
    script = tmp_path / "list.cmake"
    script.write_text(f'set(SPINESEG_LIB_BASE "{(REPO / "SpineSeg").as_posix()}")\n'
                      f'include("{(REPO / "SpineSeg" / "SpineSegLibFiles.cmake").as_posix()}")\n'
                      "spineseg_lib_files(S R)\n"
                      'foreach(f IN LISTS S R)\n  message("${f}")\nendforeach()\n')
    out = subprocess.run([cmake, "-P", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    installed = set(out.stderr.split())          # message() prints on stderr
    assert installed == wheel_lib_files(wheel)
    spineseg = (REPO / "SpineSeg" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "spineseg_lib_files(SPINESEG_LIB_SCRIPTS SPINESEG_LIB_RESOURCES)" in spineseg
    assert "${SPINESEG_LIB_SCRIPTS}" in spineseg and "${SPINESEG_LIB_RESOURCES}" in spineseg
