"""Every MRML / Slicer method the Slicer-facing code calls exists in the oldest Slicer the README claims (5.10), and
in the current stable (5.12.3).

The calls are found by AST in ``SpineSegLib/slicer/*.py`` and the module files: attribute calls ``x.Method(...)``
with a CamelCase name (Qt's methods are lowerCamelCase, VTK's and MRML's CamelCase). A call passes when

* its receiver is a class of the index (``slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode``):
  the method is in that class or one of its parents;
* ``slicer.X(...)`` / ``vtk.X(...)``: X is a class of the index or of the ``vtk`` package;
* otherwise (the receiver's class is not known statically): the method exists in some class of the index or in
  VTK's core/data-model classes (``vtk`` package: VTK's own classes are not in Slicer's index);
* or it is on the commented allow-list below (neither MRML nor VTK).

The indexes are ``../shared/slicer/api/slicer-v<version>.txt``, one line per C++ class:
``class : parent | methods...`` (see that folder's README).
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

import pytest
from conftest import REPO

API_DIR = REPO.parent / "shared" / "slicer" / "api"
OLDEST = "5.10.0"          # the oldest release the README claims
CURRENT = "5.12.3"         # the current stable release
SOURCES = sorted((REPO / "SpineSeg" / "SpineSegLib" / "slicer").glob("*.py")) + [
    REPO / m / f"{m}.py" for m in ("SpineSeg", "SpineSegIIS", "SpineSegAnnotate") if (REPO / m / f"{m}.py").is_file()]

# Receivers that are Python modules whose CamelCase calls are not Slicer's C++ API: the standard library, Qt/CTK
# (class constructors such as qt.QTimer; Qt is stand-in territory, not in the index) and the project's own modules.
NON_SLICER_MODULES = {"qt", "ctk", "queue", "subprocess", "tempfile", "threading", "signal", "enum", "dataclasses",
                      "typing", "pathlib", "collections", "json", "os", "sys", "time", "logging"}
# Calls that are neither MRML nor VTK, each with the reason.
ALLOWED = {
    "PyTorchUtils.PyTorchUtilsLogic",    # the PyTorch extension's Python module (used only when it is installed)
    "slicer.util.WaitCursor",            # Slicer's Python layer (slicer/util.py), a context manager class
    "slicer.util.VTKObservationMixin",   # Slicer's Python layer (slicer/util.py), a mixin class
}
CAMEL = re.compile(r"[A-Z][A-Za-z0-9_]*")


@lru_cache(maxsize=None)
def api_index(version: str) -> dict:
    """``{class: (parent, {methods})}`` of one release."""
    path = API_DIR / f"slicer-v{version}.txt"
    if not path.is_file():
        pytest.fail(f"Slicer API index missing: {path} (needs ../shared/slicer beside the checkout)")
    classes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or " : " not in line:
            continue
        head, _, methods = line.partition(" | ")
        cls, _, parent = head.partition(" : ")
        classes[cls.strip()] = (parent.strip(), set(methods.split()))
    return classes


@lru_cache(maxsize=None)
def vtk_classes() -> dict:
    """``{name: class}`` of VTK's core, data-model, math and transform classes (what the code uses from VTK)."""
    import importlib

    out = {}
    for name in ("vtkCommonCore", "vtkCommonDataModel", "vtkCommonMath", "vtkCommonTransforms",
                 "vtkCommonExecutionModel", "vtkImagingCore"):
        module = importlib.import_module(f"vtkmodules.{name}")
        out.update({n: getattr(module, n) for n in dir(module) if n.startswith("vtk")})
    return out


@lru_cache(maxsize=None)
def vtk_methods() -> frozenset:
    return frozenset(m for cls in vtk_classes().values() for m in dir(cls) if CAMEL.fullmatch(m))


def class_has(version: str, cls: str, method: str) -> bool:
    """``method`` is in ``cls`` of the index or a parent (following VTK parents into the vtk package)."""
    index = api_index(version)
    seen = set()
    while cls and cls != "-" and cls not in seen:
        seen.add(cls)
        if cls in index:
            parent, methods = index[cls]
            if method in methods:
                return True
            cls = parent
        else:
            import vtk

            return hasattr(getattr(vtk, cls, None), method)
    return False


def module_aliases(tree: ast.AST) -> dict:
    """``{local name: module}`` for ``import x``, ``import x as y`` and ``from p import module`` (module = dotted)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if a.name[:1].islower():          # a submodule or function; classes are CamelCase
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def calls_in(source: str, filename: str = "<source>") -> list[tuple[str, str, str]]:
    """``(receiver text, method, where)`` of every CamelCase attribute call, and of every class constructed as
    ``slicer.vtk...()`` / ``vtk.vtk...()``."""
    tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            text = ast.unparse(receiver) if isinstance(receiver, (ast.Name, ast.Attribute)) else "<expression>"
            if CAMEL.fullmatch(node.func.attr) or (text in ("slicer", "vtk") and node.func.attr.startswith("vtk")):
                out.append((text, node.func.attr, f"{filename}:{node.lineno}"))
    return out


def problem(version: str, receiver: str, method: str, aliases: dict) -> str | None:
    """Why the call ``receiver.method(...)`` is not in Slicer ``version`` (None when it is)."""
    index = api_index(version)
    root = receiver.split(".")[0]
    module = aliases.get(root)
    if f"{receiver}.{method}" in ALLOWED:
        return None
    if receiver in ("slicer", "vtk"):                                   # slicer.vtkMRMLScene(), vtk.vtkMatrix4x4()
        ok = method in index or method in vtk_classes() or hasattr(__import__("vtk"), method)
        return None if ok else f"class {receiver}.{method} does not exist"
    m = re.fullmatch(r"slicer\.(\w+)", receiver)
    if m and m.group(1) in index:                                       # a static method of a known class
        return None if class_has(version, m.group(1), method) else f"{m.group(1)} has no method {method}"
    if module is not None and (module.split(".")[0] in NON_SLICER_MODULES or module.startswith("SpineSegLib")):
        return None
    if any(method in methods for _, methods in index.values()) or method in vtk_methods():
        return None
    return f"no class of Slicer {version} (nor VTK) has a method {method}"


def check_sources(version: str, sources: dict) -> list[str]:
    failures = []
    for name, text in sources.items():
        aliases = module_aliases(ast.parse(text))
        for receiver, method, where in calls_in(text, name):
            why = problem(version, receiver, method, aliases)
            if why:
                failures.append(f"{where}: {receiver}.{method}(): {why}")
    return failures


def project_sources() -> dict:
    return {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in SOURCES}


@pytest.mark.parametrize("version", [OLDEST, CURRENT])
def test_every_mrml_method_called_exists_in_slicer(version):
    sources = project_sources()
    calls = [c for text in sources.values() for c in calls_in(text)]
    assert len(calls) > 100, "the collector found too few calls to be looking at the right files"
    failures = check_sources(version, sources)
    assert not failures, f"calls missing from Slicer {version}:\n" + "\n".join(failures)


def test_the_check_catches_a_method_or_class_that_does_not_exist():
    synthetic = {"synthetic.py": (
        "import slicer\n"
        "seg = slicer.vtkSegment()\n"
        "seg.GetTerminology()\n"                                # exists from 5.10
        "seg.GetTerminologyFoo()\n"                             # exists nowhere
        "slicer.vtkMRMLNoSuchNode()\n"                          # no such class
        "slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(a, b)\n"
        "slicer.vtkSlicerSegmentationsModuleLogic.GetColorIndexByTerminology(a)\n")}   # a method of another class
    failures = check_sources(OLDEST, synthetic)
    assert len(failures) == 3, failures
    assert "GetTerminologyFoo" in failures[0] and "vtkMRMLNoSuchNode" in failures[1], failures
    assert "GetColorIndexByTerminology" in failures[2]
    # a method that arrived after the oldest release (markups line direction markers, 5.12) fails only there
    newer = {"newer.py": "line = scene.GetFirstNodeByClass('vtkMRMLMarkupsLineNode')\n"
                         "line.GetDisplayNode().GetLineDirectionVisibility()\n"}
    assert check_sources(CURRENT, newer) == []
    assert len(check_sources(OLDEST, newer)) == 1


def test_terminology_calls_need_5_10_so_the_check_is_version_sensitive():
    """The index of 5.10 has the terminology API that issue 10 found missing before 5.10, so checking against it
    means something (an index without these would make every terminology call fail)."""
    assert class_has(OLDEST, "vtkSegment", "SetTerminology") and class_has(OLDEST, "vtkSegment", "HasTerminology")
    assert class_has(OLDEST, "vtkMRMLSegmentationNode", "GetLabelmapConversionColorTableNodeID")
    assert class_has(OLDEST, "vtkMRMLColorTableNode", "SetTerminology")      # inherited from vtkMRMLColorNode
    assert not class_has(OLDEST, "vtkSegment", "GetTerminologyFoo")


def test_readme_claims_the_version_the_check_uses():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    claims = set(re.findall(r"\b(\d+\.\d+) or newer\b", text))
    assert claims == {OLDEST.rsplit(".", 1)[0]}, f"README claims {claims}; the API check uses Slicer {OLDEST}"
    assert (API_DIR / f"slicer-v{OLDEST}.txt").is_file()
