"""The Slicer modules, checked without 3D Slicer: their .ui files and the widgets and parameters the panels use,
what the module files import at load (nothing of each other, nothing heavy), translated user-visible text, the
extension's CMake lists, and the Qt-free helpers the panels rely on (dependencies, model catalogue and the model
preselected for an input, run-time estimate, slice view to follow, start point, one evaluation table reused,
the sample registered with Sample Data).

The module files and the panels (``SpineSegLib/slicer/classical_widget.py``, ``iis_widget.py``, ``widget_*.py``)
import ``qt``/``ctk``/``slicer.ScriptedLoadableModule``, which exist only inside Slicer, so they are read as source
(``ast``) here; Testing/slicer_harness.py loads them the way Slicer does, and their logic is tested in
test_classical_logic.py and test_iis_logic.py under slicer-core.
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

import numpy as np
import pytest
from conftest import REPO

from SpineSegLib.slicer import dependencies
from SpineSegLib.slicer.scene import new_scene
from SpineSegLib.slicer.widget_choices import default_model_index, input_modality
from SpineSegLib.classical.params import ClassicalParams
from SpineSegLib.iis.model.config import IISConfig

MODULES = {
    "SpineSeg": (REPO / "SpineSeg" / "SpineSeg.py", REPO / "SpineSeg" / "Resources" / "UI" / "SpineSeg.ui"),
    "SpineSegIIS": (REPO / "SpineSegIIS" / "SpineSegIIS.py", REPO / "SpineSegIIS" / "Resources" / "UI" / "SpineSegIIS.ui"),
}
SLICER_LIB = REPO / "SpineSeg" / "SpineSegLib" / "slicer"
# the panel each module file builds, and the shared panel code (both use the module's .ui through self.ui)
PANELS = {"SpineSeg": SLICER_LIB / "classical_widget.py", "SpineSegIIS": SLICER_LIB / "iis_widget.py"}
SHARED_PANEL = SLICER_LIB / "widget_base.py"
WIDGET_FILES = [*PANELS.values(), SHARED_PANEL, SLICER_LIB / "widget_support.py"]
MODULE_FILE_MAX_LINES = 200
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
    tree = ast.parse(source_path.read_text(encoding="utf-8"))
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
    panel = PANELS[module].read_text(encoding="utf-8") + SHARED_PANEL.read_text(encoding="utf-8")
    used = set(re.findall(r"(?:self\.ui|\bui)\.(\w+)", panel)) - {"__dict__"}
    assert used, "the panel uses no widget?"
    missing = sorted(used - set(widgets))
    assert not missing, f"{PANELS[module].name} uses widgets that {ui_path.name} does not have: {missing}"
    assert "self.ui." not in source_path.read_text(encoding="utf-8"), f"{module}.py should leave the widgets to its panel"
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
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
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


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_files_are_thin_and_import_no_other_module(module):
    """A module file declares the module and wires its panel from the Lib; it imports no other module's file
    (SpineSegIIS used to import SpineSeg for the dependency installer)."""
    source_path, _ = MODULES[module]
    text = source_path.read_text(encoding="utf-8")
    assert text.count("\n") + 1 <= MODULE_FILE_MAX_LINES, f"{module}.py: {text.count(chr(10)) + 1} lines"
    module_names = {p.stem for p in REPO.glob("*/*.py") if p.stem == p.parent.name}
    assert {"SpineSeg", "SpineSegIIS"} <= module_names
    imported = _imported_roots(source_path)
    assert not (imported & (module_names - {module})), f"{module}.py imports {imported & module_names}"
    tree = ast.parse(text)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {module, f"{module}ParameterNode", f"{module}Widget", f"{module}Logic", f"{module}Test"} <= classes
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}Widget")
    assert f"SpineSegLib.slicer.{PANELS[module].stem}" in ast.unparse(widget), "the Widget builds the Lib's panel"
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}Test")
    assert "SpineSegLib.slicer.self_tests" in ast.unparse(test), "the Test calls the Lib's self-test"


def _literal_text(node) -> bool:
    """A string literal or f-string (text the user would read untranslated)."""
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)
                                                and node.value.strip() != "")


def test_user_visible_text_goes_through_tr():
    """Labels, tool tips, status texts, dialog titles and messages of the panels, and the modules' title, help
    and acknowledgement, are wrapped in ``_()`` (``slicer.i18n.tr``), never an f-string inside ``_()`` (the
    translation would never match)."""
    problems = []
    for path in [*(m[0] for m in MODULES.values()), *WIDGET_FILES]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.ImportFrom) and n.module == "slicer.i18n" and
                   any(a.name == "tr" and a.asname == "_" for a in n.names) for n in tree.body), path.name
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Attribute):
                attr = node.targets[0].attr
                if attr in ("text", "toolTip", "title", "helpText", "acknowledgementText") and _literal_text(node.value):
                    problems.append(f"{where}: .{attr} = a literal")
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name == "_" and node.args and isinstance(node.args[0], ast.JoinedStr):
                    problems.append(f"{where}: _() of an f-string")
                if name in ("showError", "errorDisplay", "confirmOkCancelDisplay") and node.args \
                        and _literal_text(node.args[0]):
                    problems.append(f"{where}: {name}() of a literal")
                for kw in node.keywords:
                    if kw.arg == "windowTitle" and _literal_text(kw.value):
                        problems.append(f"{where}: windowTitle= a literal")
    assert not problems, "\n".join(problems)


MRML_ROOTS = {"slicer", "vtk", "vtkmodules", "qt", "ctk"}


def _imported_roots(path: Path) -> set:
    """The top-level names of everything a file imports, at any depth (function-level imports count too)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
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
from SpineSegLib.slicer.widget_choices import default_model_index, input_modality
from SpineSegLib.slicer.scene import new_scene
from SpineSegLib.slicer.volumes import image_to_volume
from SpineSegLib.core.image import Image
import numpy as np
scene = new_scene()
vol = image_to_volume(scene, Image(np.zeros((40, 40, 40), np.int16), (2.0, 2.0, 2.0)), "v")
card = sys.argv[1]
info = describe_model(card, read_weights=False)
names = ("bone_threshold_hu", "disk_radius_mm", "dp_penalty", "refine_with_parabola", "parabola_count")
models = list_models()
print(json.dumps({"estimate": IISLogic(scene).estimate(vol, card).text("cpu"), "models": len(models),
                  "preselected": default_model_index(models, input_modality(vol)),
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
    assert result["preselected"] is not None          # a model is preselected for the (MR-like) input
    assert "passes" in result["estimate"]
    defaults = ClassicalParams()
    assert result["defaults"] == {n: getattr(defaults, n) for n in result["defaults"]}
    # the requirement check reads distribution metadata and never imports, so blocked imports do not fool it
    assert result["missing"] == []


# -- extension packaging ------------------------------------------------------------------------------------------
def test_cmake_builds_both_modules():
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(SpineSeg)" in top and "add_subdirectory(SpineSegIIS)" in top
    for cmake in (REPO / "SpineSeg" / "CMakeLists.txt", REPO / "SpineSegIIS" / "CMakeLists.txt"):
        assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME.*SCRIPTS.*RESOURCES.*WITH_GENERIC_TESTS",
                         cmake.read_text(encoding="utf-8"), re.S)


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


# -- the panels' Qt-free choices -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_with_ct_and_mr():
    """A scene with a crop of the bundled CT sample, a crop of a real MR, and the CT's reference vertebrae."""
    from SpineSegLib.core.image import Image, read_image
    from SpineSegLib.core.resources import resource_dir
    from SpineSegLib.slicer.volumes import image_to_volume
    from conftest import data_path

    sample = resource_dir("samples") / "LIDC-IDRI-0001-2.5mm"
    ct, ref = read_image(sample / "image.nii.gz"), read_image(sample / "vertebrae.nii.gz")
    mr = read_image(data_path("mr", "vertebral-bodies-myosegmentum", "44_img.nii.gz"))
    z0 = ct.size[2] // 2 - 12

    def slab(image):             # 24 axial slices from z0 on, on the image's own grid
        origin = np.asarray(image.origin) + np.asarray(image.direction)[:, 2] * image.spacing[2] * z0
        return Image(image.array[z0:z0 + 24], image.spacing, origin, image.direction)

    scene = new_scene()
    nodes = {"ct": image_to_volume(scene, slab(ct), "CT"), "mr": image_to_volume(scene, mr, "MR"),
             "ref": slab(ref)}
    return scene, nodes


def test_the_model_preselected_has_the_inputs_modality(scene_with_ct_and_mr):
    from SpineSegLib.iis.model.catalog import list_models

    scene, nodes = scene_with_ct_and_mr
    models = list_models()
    assert {m.modality for m in models} >= {"ct", "mr"}, "a CT and an MR model are bundled"
    assert input_modality(nodes["ct"]) == "ct" and input_modality(nodes["mr"]) == "mr"
    assert models[default_model_index(models, "ct")].modality == "ct"      # even when the only CT model is experimental
    assert models[default_model_index(models, "mr")].modality == "mr"
    assert not models[default_model_index(models, None)].experimental     # no input: a released model
    assert input_modality(None) is None and default_model_index([], "ct") is None


def test_default_model_prefers_a_released_model_of_the_modality(tmp_path):
    from SpineSegLib.iis.model.catalog import list_models

    for name, modality, experimental in (("a-ct-old", "ct", True), ("b-ct", "ct", False), ("c-mr", "mr", False)):
        (tmp_path / f"{name}.pt").write_bytes(b"x")
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, "modality": modality,
                                                           "experimental": experimental}))
    models = list_models([tmp_path])
    assert models[default_model_index(models, "ct")].name == "b-ct"
    assert models[default_model_index(models, "mr")].name == "c-mr"
    assert [m.name for m in models] == ["b-ct", "c-mr", "a-ct-old"]          # experimental ones listed last
    only = [m for m in models if m.experimental]
    assert only[default_model_index(only, "mr")].name == "a-ct-old"             # nothing else to offer


def test_no_model_is_shown_as_an_empty_path():
    from SpineSegLib.slicer.widget_choices import model_path_text, model_path_value

    assert str(Path()) == "."                       # what the parameter node holds when no model is chosen
    assert model_path_text(Path()) == "" and model_path_text(None) == "" and model_path_text("") == ""
    assert model_path_text(Path("/m/model.pt")) == "/m/model.pt"
    assert model_path_value("") == Path() and model_path_value("/m/model.pt") == Path("/m/model.pt")


def test_the_slice_view_followed_is_one_the_layout_shows():
    from SpineSegLib.slicer.widget_choices import slice_node_named, slice_view_to_follow

    assert slice_view_to_follow(["Red", "Yellow", "Green"]) == "Red"
    assert slice_view_to_follow(["Yellow", "Green"]) == "Yellow"            # a layout without the red view
    assert slice_view_to_follow([]) is None                                 # 3-D only: nothing follows
    scene = new_scene()
    assert slice_node_named(scene, "Red") is None
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetLayoutName("Yellow")
    assert slice_node_named(scene, "Yellow") is node and slice_node_named(scene, "Red") is None


def test_start_point_is_the_first_control_point_in_lps():
    from SpineSegLib.slicer.widget_choices import start_point_lps

    scene = new_scene()
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    assert start_point_lps(points) is None and start_point_lps(None) is None
    points.AddControlPoint(10.0, -20.0, 30.0)            # RAS
    points.AddControlPoint(1.0, 2.0, 3.0)
    assert start_point_lps(points) == pytest.approx((-10.0, 20.0, 30.0))


def test_evaluating_twice_updates_one_table(scene_with_ct_and_mr):
    from SpineSegLib.slicer.vertebra_evaluation import EVALUATION_OF, evaluate
    from SpineSegLib.slicer.segmentations import labelmap_to_segmentation
    from SpineSegLib.slicer.tables import table_rows
    from SpineSegLib.slicer.volumes import image_to_volume

    scene, nodes = scene_with_ct_and_mr
    ref = nodes["ref"]
    assert len(set(np.unique(ref.array)) - {0}) >= 2, "the crop holds vertebrae"
    segmentation = labelmap_to_segmentation(scene, ref, reference_volume=nodes["ct"], name="prediction")
    reference = image_to_volume(scene, ref, "reference", labelmap=True)
    tables = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    table, result = evaluate(scene, segmentation, reference, nodes["ct"])
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables + 1
    assert table.GetAttribute(EVALUATION_OF) == segmentation.GetID()
    assert [r["dice"] for r in table_rows(table)] == pytest.approx([1.0] * len(table_rows(table)))
    # the reference loses its top vertebra: the same table node now says so
    top = int(max(set(np.unique(ref.array)) - {0}))
    fewer = image_to_volume(scene, ref.with_array(np.where(ref.array == top, 0, ref.array)), "fewer", labelmap=True)
    again, result2 = evaluate(scene, segmentation, fewer, nodes["ct"])
    assert again is table and scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables + 1
    assert result2.n_ref == result.n_ref - 1
    assert table.GetAttribute("SpineSeg.reference_vertebrae") == str(result2.n_ref)
    # another segmentation gets its own table
    other = labelmap_to_segmentation(scene, ref, reference_volume=nodes["ct"], name="other")
    third, _ = evaluate(scene, other, reference, nodes["ct"])
    assert third is not table and scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables + 2


def test_the_bundled_sample_is_registered_with_sample_data():
    import hashlib
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from SpineSegLib.slicer.widget_samples import register_sample_data, sample_sources

    (source,) = sample_sources()
    n = len(source["uris"])
    assert n == 2 and all(len(source[k]) == n for k in ("fileNames", "nodeNames", "loadFileTypes", "checksums"))
    assert source["loadFileTypes"] == ["VolumeFile", "SegmentationFile"]
    for uri, checksum in zip(source["uris"], source["checksums"]):
        path = Path(url2pathname(urlparse(uri).path))
        assert uri.startswith("file://") and path.is_file()        # SampleData copies it with urllib
        assert checksum == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["uris"][0].endswith("LIDC-IDRI-0001-2.5mm/image.nii.gz")
    assert len(set(source["fileNames"])) == n                        # distinct names in SampleData's cache

    calls = []

    class SampleDataLogic:      # records what Slicer's SampleData module would be told
        @staticmethod
        def registerCustomSampleDataCategory(category, title):
            calls.append(("category", category, title))

        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                           nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                           loadFileTypes=None, loadFiles=None, loadFileProperties={},
                                           checksums=None, loadFileType=None):   # Slicer 5.10's signature
            calls.append(("source", category, sampleName))

    class SampleData:
        pass

    SampleData.SampleDataLogic = SampleDataLogic
    assert register_sample_data(SampleData, title="SpineSeg") == 1
    assert calls == [("category", "SpineSeg", "SpineSeg"), ("source", "SpineSeg", "SpineSegChestCT")]
