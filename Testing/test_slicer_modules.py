"""The Slicer module files, checked without 3D Slicer: their .ui files, the widgets and parameters they use, what
they import at load, the extension's CMake lists, and the Qt-free helpers they rely on (dependencies, model
catalogue, run-time estimate).

The module files import ``qt``/``ctk``/``slicer.ScriptedLoadableModule``, which exist only inside Slicer, so they
are read as source (``ast``), never imported here; their logic is tested in test_classical_logic.py and
test_iis_logic.py under slicer-core.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import REPO

from SpineSegLib.slicer import dependencies
from SpineSegLib.classical.params import ClassicalParams
from SpineSegLib.iis.model.config import IISConfig

MODULES = {
    "SpineSeg": (REPO / "SpineSeg" / "SpineSeg.py", REPO / "SpineSeg" / "Resources" / "UI" / "SpineSeg.ui"),
    "SpineSegIIS": (REPO / "SpineSegIIS" / "SpineSegIIS.py", REPO / "SpineSegIIS" / "Resources" / "UI" / "SpineSegIIS.ui"),
}
# the widget classes the parameter node wrapper's GUI connectors accept for each parameter type
CONNECTABLE = {
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
    "int": {"QSpinBox", "QSlider"},
    "bool": {"QCheckBox", "QPushButton"},
    "node": {"qMRMLNodeComboBox"},
    "path": {"ctkPathLineEdit"},
    "enum": {"QComboBox"},
}
HEAVY = ("torch", "skimage", "sklearn", "SpineSegLib.iis.model.network", "SpineSegLib.iis.infer.run",
         "SpineSegLib.iis.model.checkpoint", "SpineSegLib.iis.infer.predictor")


def ui_widgets(path: Path) -> dict:
    """``{object name: (class, SlicerParameterName or None)}`` of every widget in a .ui file."""
    root = ET.parse(path).getroot()
    out = {}
    for w in root.iter("widget"):
        param = None
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                param = p.find("string").text
        out[w.get("name")] = (w.get("class"), param)
    return out


def parameter_fields(source_path: Path, class_name: str) -> dict:
    """``{field: (kind, annotation source, default source or None)}`` of a ``@parameterNodeWrapper`` class."""
    tree = ast.parse(source_path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in cls.decorator_list)
    out = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            text = ast.unparse(node.annotation)
            base = text.split("[", 1)[1].split(",")[0] if text.startswith("Annotated") else text
            kind = ("float" if base == "float" else "int" if base == "int" else "bool" if base == "bool"
                    else "path" if "Path" in base else "enum" if base == "Device"
                    else "node" if "vtkMRML" in text else base)
            out[node.target.id] = (kind, text, ast.unparse(node.value) if node.value is not None else None)
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_ui_parses_and_names_every_widget_the_code_uses(module):
    source_path, ui_path = MODULES[module]
    widgets = ui_widgets(ui_path)                      # raises on malformed XML
    root = ET.parse(ui_path).getroot()
    assert root.find("class").text == module and root.find("widget").get("class") == "qMRMLWidget"
    used = set(re.findall(r"self\.ui\.(\w+)", source_path.read_text()))
    assert used, "the module code uses no widget?"
    missing = sorted(used - set(widgets))
    assert not missing, f"{module}.py uses widgets that {ui_path.name} does not have: {missing}"
    # every custom widget class is declared, so Designer and QUiLoader know what it extends
    declared = {c.find("class").text for c in root.iter("customwidget")}
    custom = {cls for cls, _ in widgets.values() if cls.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"undeclared custom widgets: {sorted(custom - declared)}"
    # node selectors get the scene from the module widget
    receivers = {c.find("receiver").text for c in root.iter("connection")
                 if c.find("slot").text == "setMRMLScene(vtkMRMLScene*)"}
    selectors = {name for name, (cls, _) in widgets.items() if cls in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert selectors <= receivers, f"node widgets without the scene: {sorted(selectors - receivers)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_parameters_are_bound_to_widgets_of_a_matching_type(module):
    source_path, ui_path = MODULES[module]
    params = parameter_fields(source_path, f"{module}ParameterNode")
    bound = {param: (name, cls) for name, (cls, param) in ui_widgets(ui_path).items() if param}
    assert set(bound) == set(params), (f"parameters without widget: {sorted(set(params) - set(bound))}; "
                                       f"widgets bound to no parameter: {sorted(set(bound) - set(params))}")
    for param, (kind, text, _) in params.items():
        name, cls = bound[param]
        assert cls in CONNECTABLE[kind], f"{param} ({text}) is bound to {name}, a {cls}"


def test_classical_parameters_take_the_backends_defaults_within_their_ranges():
    params = parameter_fields(MODULES["SpineSeg"][0], "SpineSegParameterNode")
    classical = {f.name: f for f in fields(ClassicalParams)}
    defaults = ClassicalParams()
    shown = [p for p in params if p in classical]
    assert len(shown) >= 20, "the Advanced section should expose the paper's parameters"
    for name in ("bone_threshold_hu", "disk_radius_mm", "top_band_mm", "spinous_band_mm", "dp_penalty",
                 "parabola_count", "refine_with_parabola"):
        assert name in shown
    for name in shown:
        kind, text, default = params[name]
        assert re.search(rf"classicalDefault\(['\"]{name}['\"]\)", text), f"{name}: its default must come from ClassicalParams"
        assert kind == type(getattr(defaults, name)).__name__, f"{name}: {kind} vs the backend's {classical[name].type}"
        m = re.search(r"WithinRange\(([-\d.e]+), ([-\d.e]+)\)", text)
        if kind in ("float", "int"):
            assert m, f"{name} needs a range"
            low, high = float(m.group(1)), float(m.group(2))
            assert low <= getattr(defaults, name) <= high, f"{name}: default {getattr(defaults, name)} outside [{low}, {high}]"


def _top_level_imports(path: Path) -> set:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_files_import_nothing_heavy_at_load(module):
    source_path, _ = MODULES[module]
    imports = _top_level_imports(source_path)
    allowed_roots = {"enum", "importlib", "logging", "os", "pathlib", "shutil", "sys", "typing", "qt", "ctk",
                     "slicer", "vtk"}
    assert {i.split(".")[0] for i in imports} <= allowed_roots, imports
    assert not any(i.startswith("SpineSegLib") for i in imports), "SpineSegLib must be imported on first use only"


MRML_ROOTS = {"slicer", "vtk", "vtkmodules", "qt", "ctk"}


def _imported_roots(path: Path) -> set:
    """The top-level names of everything a file imports, at any depth (function-level imports count too)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_slicer_package_touches_mrml():
    """SpineSegLib/slicer/ is the one package that imports slicer, vtk, qt or ctk; every other module of the backend
    runs without 3D Slicer (the CLI, training, a plain Python)."""
    lib = REPO / "SpineSeg" / "SpineSegLib"
    offenders, mrml_modules = [], set()
    for path in sorted(lib.rglob("*.py")):
        touched = _imported_roots(path) & MRML_ROOTS
        if path.relative_to(lib).parts[0] == "slicer":
            mrml_modules |= {path.stem} if touched else set()
        elif touched:
            offenders.append(f"{path.relative_to(lib)} imports {', '.join(sorted(touched))}")
    assert not offenders, "only SpineSegLib/slicer/ may import MRML, VTK or Qt:\n" + "\n".join(offenders)
    assert {"volumes", "segmentations", "scene"} <= mrml_modules     # the check sees imports where they are


def test_widget_setup_needs_nothing_heavy():
    """What the widgets call before the user clicks Run (parameter defaults, model list and card, run-time
    estimate), in a fresh interpreter where torch, scikit-image and scikit-learn cannot be imported -- as in a
    Slicer whose dependencies are not installed yet: it works, and loads no network code."""
    code = """
import importlib.abc, json, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "skimage", "sklearn"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocked())
import SpineSegLib.slicer.classical_logic as cl, SpineSegLib.slicer.iis_logic
import SpineSegLib.slicer.dependencies, SpineSegLib.slicer.process
from SpineSegLib.iis.model.catalog import list_models, describe_model
from SpineSegLib.slicer.iis_logic import IISLogic
from SpineSegLib.slicer.scene import new_scene
from SpineSegLib.slicer.volumes import image_to_volume
from SpineSegLib.core.image import Image
import numpy as np
scene = new_scene()
vol = image_to_volume(scene, Image(np.zeros((40, 40, 40), np.int16), (2.0, 2.0, 2.0)), "v")
card = sys.argv[1]
info = describe_model(card, read_weights=False)
names = ("bone_threshold_hu", "disk_radius_mm", "dp_penalty", "refine_with_parabola", "parabola_count")
print(json.dumps({"estimate": IISLogic(scene).estimate(vol, card).text("cpu"), "models": len(list_models()),
                  "defaults": {n: cl.classical_default(n) for n in names},
                  "missing": [m.requirement.pip_name for m in SpineSegLib.slicer.dependencies.check()],
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "skimage", "sklearn")
                                   or m in %r)}))
""" % (HEAVY,)
    folder = Path(__import__("tempfile").mkdtemp())
    weights = folder / "m.pt"
    weights.write_bytes(b"not read")
    (folder / "m.json").write_text(json.dumps({"name": "m", "config": IISConfig.default_mr(width=8).to_dict()}))
    out = subprocess.run([sys.executable, "-c", code, str(weights)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"imported at widget setup: {result['loaded']}"
    assert "passes" in result["estimate"]
    defaults = ClassicalParams()
    assert result["defaults"] == {n: getattr(defaults, n) for n in result["defaults"]}
    # the requirement check reads distribution metadata and never imports, so blocked imports do not fool it
    assert result["missing"] == []


# -- extension packaging ------------------------------------------------------------------------------------------
def test_cmake_builds_both_modules():
    top = (REPO / "CMakeLists.txt").read_text()
    assert "add_subdirectory(SpineSeg)" in top and "add_subdirectory(SpineSegIIS)" in top
    for cmake in (REPO / "SpineSeg" / "CMakeLists.txt", REPO / "SpineSegIIS" / "CMakeLists.txt"):
        assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME.*SCRIPTS.*RESOURCES.*WITH_GENERIC_TESTS",
                         cmake.read_text(), re.S)


def test_dependency_check_reports_what_is_missing_or_too_old():
    assert dependencies.check(dependencies.CLASSICAL) == []      # this environment has everything
    assert dependencies.check(dependencies.IIS) == []
    absent = dependencies.Requirement("spineseg_absent_pkg", "spineseg-absent-pkg", "1.0", "test")
    old = dependencies.Requirement("numpy", "numpy", "999.0", "test")
    missing = dependencies.check([absent, old, dependencies.SCIPY])
    assert [m.requirement.pip_name for m in missing] == ["spineseg-absent-pkg", "numpy"]
    assert missing[0].installed is None and "not installed" in missing[0].reason
    assert missing[1].installed and "older than the 999.0" in missing[1].reason
    assert dependencies.version_at_least("2.13.0+cpu", "2.1") and not dependencies.version_at_least("0.19.3", "0.21")


def test_install_plan_never_touches_simpleitk_or_an_installed_torch():
    M, R = dependencies.Missing, dependencies.Requirement
    plan = dependencies.install_plan([
        M(dependencies.SKIMAGE, None), M(dependencies.SKLEARN, "1.0"), M(dependencies.SIMPLEITK, None),
        M(dependencies.TORCH, "1.13.1")])
    assert plan.pip == ["scikit-image>=0.21", "scikit-learn>=1.3"]
    assert plan.torch is None                                   # installed but old: not replaced
    refused = {m.requirement.pip_name: advice for m, advice in plan.refused}
    assert set(refused) == {"SimpleITK", "torch"} and "comes with 3D Slicer" in refused["SimpleITK"]
    text = dependencies.describe(plan)
    assert "scikit-image>=0.21" in text and "reinstall or update 3D Slicer" in text and "PyTorch" in text
    plan = dependencies.install_plan([M(dependencies.TORCH, None)])
    assert plan.torch is not None and not plan.pip and not plan.refused
    assert "PyTorch extension" in dependencies.describe(plan)
    # import names and pip names differ for these two
    assert (dependencies.SKIMAGE.import_name, dependencies.SKIMAGE.pip_name) == ("skimage", "scikit-image")
    assert (dependencies.SKLEARN.import_name, dependencies.SKLEARN.pip_name) == ("sklearn", "scikit-learn")


# -- model catalogue and run-time estimate ----------------------------------------------------------------------
def test_model_catalogue_reads_json_and_markdown_cards(tmp_path):
    from SpineSegLib.core.errors import InputError
    from SpineSegLib.iis.model.catalog import describe_model, list_models, read_card

    config = IISConfig.default_mr(width=16, levels=4, patch_size=(48, 48, 32), voxel_size_mm=(2.0, 2.0, 2.0))
    (tmp_path / "a.pt").write_bytes(b"x")
    (tmp_path / "a.json").write_text(json.dumps({"name": "Lumbar MR small", "summary": "L1-L5 bodies.",
                                                 "config": config.to_dict(), "per_pass_seconds": {"cpu": 0.2}}))
    (tmp_path / "b.pt").write_bytes(b"x")
    (tmp_path / "b.md").write_text("---\nmodality: ct\n---\n# Chest CT model\n\nFinds C7 to L2 in chest CT.\nTwo lines.\n\n"
                                   "## Training\nmore\n")
    (tmp_path / "c.pt").write_bytes(b"x")
    (tmp_path / "c.json").write_text("{broken")
    models = list_models([tmp_path])
    assert [m.name for m in models] == ["c", "Chest CT model", "Lumbar MR small"]
    c, b, a = models
    assert "unreadable" in c.summary
    assert b.modality == "ct" and b.summary == "Finds C7 to L2 in chest CT. Two lines." and b.config is None
    assert a.modality == "mr" and a.config == config and a.per_pass_seconds == {"cpu": 0.2}
    assert "patch 48 x 48 x 32 voxels of 2 x 2 x 2 mm" in a.details() and a.label() == "Lumbar MR small [MR]"
    assert read_card(tmp_path / "b.md")["name"] == "Chest CT model"
    with pytest.raises(InputError, match="not found"):
        describe_model(tmp_path / "missing.pt")


def test_runtime_estimate_from_config_and_measured_pass_time():
    from SpineSegLib.iis.infer import runtime_estimate as rt

    ct = IISConfig()                       # the paper's CT network: 64 channels, 128^3
    assert rt.network_tflop(ct) == pytest.approx(2.2, rel=0.02)          # 2.2 TFLOP per pass (measured note)
    assert rt.network_tflop(IISConfig(width=32)) == pytest.approx(rt.network_tflop(ct) / 4, rel=0.02)
    low, typical, high = rt.expected_passes(ct, (330.0, 350.0, 350.0))   # a chest CT
    assert low < typical < high and 30 <= typical <= 120
    est = rt.estimate(ct, (330.0, 350.0, 350.0), per_pass_s={"cpu": 3.8}, card={"cuda": 0.05})
    assert est.sources == {"cpu": "measured", "cuda": "model card"}
    assert est.seconds("cpu")[1] == pytest.approx(est.setup_s + typical * 3.8)
    assert "passes x 3.8 s (measured)" in est.text("cpu")
    guessed = rt.estimate(ct, (330.0, 350.0, 350.0), cpu_cores=2)
    assert guessed.sources["cpu"] == "guessed" and guessed.per_pass_s["cpu"] > 10 * guessed.per_pass_s["cuda"]
    assert rt.format_duration(30) == "30 s" and rt.format_duration(600) == "10 min"


def test_pass_time_cache_round_trip(tmp_path):
    from SpineSegLib.iis.infer.runtime_estimate import PassTimeCache

    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    cache = PassTimeCache(tmp_path / "cache" / "times.json")
    assert cache.get(model) == {}
    cache.put(model, {"cpu": 1.5})
    cache.put(model, {"cuda": 0.02})
    assert PassTimeCache(tmp_path / "cache" / "times.json").get(model) == {"cpu": 1.5, "cuda": 0.02}
