"""Load a SpineSeg module file the way 3D Slicer does, without a Slicer application.

What is real and what is a stand-in:

* ``slicer`` is built from **Slicer 5.12.3's own pure-Python layer** (``../shared/slicer/python-5.12.3/slicer``:
  its ``__init__``, ``ScriptedLoadableModule``, ``parameterNodeWrapper``, ``util``, ``i18n``) merged with the
  ``slicer-core`` wheel, whose MRML classes take the place of Slicer's compiled "kits" -- so the parameter-node
  wrapper really serialises into a ``vtkMRMLScriptedModuleNode`` of a real ``vtkMRMLScene``.
* Stand-ins exist only for Qt and CTK: the modules ``qt`` and ``ctk``, the ``qMRML*``/``qSlicer*`` widget classes,
  a ``QUiLoader`` that builds stand-in widgets from the real ``.ui`` XML (class names, object names, properties,
  dynamic ``SlicerParameterName`` properties and the ``<connections>``, e.g. ``mrmlSceneChanged`` ->
  ``setMRMLScene``), and ``slicer.app`` as far as the module files and Slicer's layer touch it (settings, module
  manager, testing mode, a layout manager whose slice widgets hold real slice nodes). The widgets keep the state the
  parameter-node GUI connectors read and write (checked, value with range and decimals, current index, path, node)
  and emit the signals a real widget emits when that state changes. Any other member of a stand-in is a no-op,
  recorded in ``GENERIC_USES`` so a report can say what was not modelled. The stand-ins are in
  Testing/slicer_standins.py.

Everything here replaces ``sys.modules`` entries (``slicer``, ``qt``, ``ctk``), so use it in its own process: the
tests start ``python Testing/slicer_harness.py ...`` in a subprocess.

Console use::

    python Testing/slicer_harness.py check SpineSeg                # import, Module, Logic, parameters, Widget.setup
    python Testing/slicer_harness.py selftest SpineSeg --hide torch --hide skimage   # a build machine
    python Testing/slicer_harness.py check SpineSegIIS --json      # the report as one JSON line
"""

from __future__ import annotations

import argparse
import enum
import importlib
import importlib.util
import json
import logging
import pathlib
import sys
import traceback
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slicer_standins import (CTK_CLASSES, GENERIC_USES, QT_CLASSES, SLICER_VERSION, SLICER_WIDGETS,  # noqa: E402
                             App, QAbstractButton, QComboBox, QLabel, QLineEdit, QWidget, Ranged, ctkPathLineEdit,
                             QObject, qMRMLNodeComboBox, standin_module)

REPO = Path(__file__).resolve().parents[1]
SHARED_SLICER = REPO.parent / "shared" / "slicer"
SLICER_PYTHON = SHARED_SLICER / "python-5.12.3"
#: the folders of the extension's scripted modules (Slicer installs them all into one qt-scripted-modules folder)
MODULE_DIRS = ("SpineSeg", "SpineSegIIS", "SpineSegAnnotate")

def available() -> bool:
    return (SLICER_PYTHON / "slicer" / "ScriptedLoadableModule.py").is_file()


def module_folders() -> list[str]:
    """The extension's module folders that exist in this checkout (each holds ``<name>/<name>.py``)."""
    return [name for name in MODULE_DIRS if (REPO / name / f"{name}.py").is_file()]


def app_scene():
    """A real MRML scene with the logics Slicer's application registers at start-up (application logic, colours,
    segmentations, markups, subject hierarchy), kept alive on the scene."""
    slicer = sys.modules["slicer"]
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkMRMLApplicationLogic()
    app_logic.SetMRMLScene(scene)
    logics = [app_logic]
    for cls in (slicer.vtkMRMLColorLogic, slicer.vtkSlicerSegmentationsModuleLogic, slicer.vtkSlicerMarkupsLogic,
                slicer.vtkSlicerSubjectHierarchyModuleLogic):
        logic = cls()
        if hasattr(logic, "SetMRMLApplicationLogic"):
            logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        logics.append(logic)
    scene.harness_logics = logics
    return scene


# ---------------------------------------------------------------------------------------------------------------
# Building ``slicer`` and loading module files
# ---------------------------------------------------------------------------------------------------------------
def install(hide=()):
    """Replace ``qt``, ``ctk`` and ``slicer`` in ``sys.modules`` (this process only) and return the new ``slicer``.

    ``slicer`` runs Slicer 5.12.3's own ``__init__`` with its ``__path__`` = [Slicer's layer, slicer-core's package],
    then takes slicer-core's MRML classes as its kits (``from slicer_core import *``, what Slicer's
    ``from <kit>Python import *`` loop does). ``hide``: module names made unimportable (``sys.modules[name] = None``),
    e.g. ``torch`` to behave like an extension build machine.
    """
    if not available():
        raise RuntimeError(f"Slicer's Python layer is missing: {SLICER_PYTHON} (needs ../shared/slicer beside the "
                           "checkout)")
    _hide_packages(hide)
    sys.modules["qt"] = standin_module("qt", QT_CLASSES, ("Q",))
    sys.modules["ctk"] = standin_module("ctk", CTK_CLASSES, ("ctk",))
    core_spec = importlib.util.find_spec("slicer")
    core_dir = list(core_spec.submodule_search_locations)[0]
    for name in [n for n in sys.modules if n == "slicer" or n.startswith("slicer.")]:
        del sys.modules[name]
    layer = SLICER_PYTHON / "slicer"
    spec = importlib.util.spec_from_file_location("slicer", layer / "__init__.py",
                                                  submodule_search_locations=[str(layer), core_dir])
    slicer = importlib.util.module_from_spec(spec)
    sys.modules["slicer"] = slicer
    spec.loader.exec_module(slicer)
    import slicer_core

    for attr in dir(slicer_core):
        if not attr.startswith("_"):
            setattr(slicer, attr, getattr(slicer_core, attr))
    # the qMRML*/qSlicer* widget classes: those modelled, any other one a generic stand-in (a qMRMLWidget)
    standin_module("slicer", SLICER_WIDGETS, ("qMRML", "qSlicer"), base=SLICER_WIDGETS["qMRMLWidget"], module=slicer)
    for sub in ("util", "i18n", "ScriptedLoadableModule", "parameterNodeWrapper"):
        importlib.import_module(f"slicer.{sub}")
        assert Path(sys.modules[f"slicer.{sub}"].__file__).resolve().is_relative_to(layer.resolve()), sub
    scene = app_scene()
    slicer.mrmlScene = scene
    slicer.app = App(scene)
    for folder in MODULE_DIRS:
        if str(REPO / folder) not in sys.path:
            sys.path.insert(0, str(REPO / folder))
    return slicer


def _hide_packages(names) -> None:
    """Make packages look uninstalled, as on an extension build machine: importing them fails
    (``sys.modules[name] = None``) and their distributions' metadata is not found either (``importlib.metadata``,
    which SpineSeg's dependency check reads)."""
    import importlib.metadata as metadata

    if not names:
        return
    hidden = set(names)
    dists = {d for top, ds in metadata.packages_distributions().items() if top in hidden for d in ds}
    hidden_dists = {d.lower().replace("_", "-") for d in dists}
    for name in hidden:
        sys.modules[name] = None

    def guard(function):
        def wrapper(name, *args, **kwargs):
            if str(name).lower().replace("_", "-") in hidden_dists:
                raise metadata.PackageNotFoundError(name)
            return function(name, *args, **kwargs)
        return wrapper

    metadata.version = guard(metadata.version)
    metadata.distribution = guard(metadata.distribution)
    metadata.metadata = guard(metadata.metadata)


class ModuleParent(QObject):
    """What Slicer hands a scripted module's constructor (a ``qSlicerScriptedLoadableModule``): title, categories,
    help, icon ... are set on it, ``path`` is the module file."""

    def __init__(self, path):
        super().__init__()
        self.__dict__.update(path=str(path), title="", categories=[], dependencies=[], contributors=[],
                             helpText="", acknowledgementText="", icon=None, hidden=False, isEntered=False)


def load_module(name: str, path=None):
    """Import ``<name>/<name>.py`` (or the file ``path``) and construct its module class, as Slicer's module
    factory does: the module object is registered as ``slicer.modules.<name lower>`` (with ``path``) and
    ``slicer.modules.<name>Instance``."""
    slicer = sys.modules["slicer"]
    if path is None:
        path = REPO / name / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    python_module = importlib.util.module_from_spec(spec)
    sys.modules[name] = python_module
    spec.loader.exec_module(python_module)
    parent = ModuleParent(path)
    setattr(slicer.modules, name.lower(), parent)
    setattr(slicer.moduleNames, name, name)
    instance = getattr(python_module, name)(parent)
    setattr(slicer.modules, f"{name}Instance", instance)
    return python_module, parent, instance


def setup_widget(python_module, name: str):
    """Build module ``name``'s Widget as Slicer does (a ``qMRMLWidget`` parent with a layout and the scene) and call
    its ``setup()``; returns the parent and the Widget."""
    slicer = sys.modules["slicer"]
    parent_widget = slicer.qMRMLWidget()
    parent_widget.setLayout(sys.modules["qt"].QVBoxLayout())
    parent_widget.setMRMLScene(slicer.mrmlScene)
    widget = getattr(python_module, f"{name}Widget")(parent_widget)
    widget.setup()
    return parent_widget, widget


# ---------------------------------------------------------------------------------------------------------------
# The check: parameters written and read back, widget setup
# ---------------------------------------------------------------------------------------------------------------
def _node_types(datatype) -> list:
    from slicer.parameterNodeWrapper.util import unannotatedType

    base = unannotatedType(datatype)
    args = typing.get_args(base) if typing.get_origin(base) is typing.Union else (base,)
    return list(args)


def _value_for(wrapper_cls, name, current):
    """A value of parameter ``name`` that differs from ``current`` (and fits its range)."""
    from slicer.parameterNodeWrapper import WithinRange
    from slicer.parameterNodeWrapper.util import findFirstAnnotation, splitAnnotations

    datatype = wrapper_cls.dataType(name)
    base, annotations = splitAnnotations(datatype)
    within = findFirstAnnotation(annotations, WithinRange)
    low, high = (within.minimum, within.maximum) if within else (-1e9, 1e9)
    if base is bool:
        return not current
    if base in (int, float):
        for step in (1, -1, 0.5, -0.5, 0.1, -0.1, 0.01, -0.01):
            candidate = base(current + step) if base is int else round(current + step, 6)
            if candidate != current and low <= candidate <= high:
                return candidate
        raise ValueError(f"no other value in [{low}, {high}] for {name}")
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return next(m for m in base if m != current)
    if isinstance(base, type) and issubclass(base, pathlib.PurePath):
        return base(REPO / "harness" / f"{name}.value")
    if base is str:
        return f"harness {name}"
    raise TypeError(f"no test value for {name}: {datatype}")


def check_parameters(wrapper_cls, parameter_node, scene) -> list[dict]:
    """Write every parameter of ``parameter_node`` with a non-default value and read it back; for node parameters,
    one node of each class of the annotation, and None. Returns one record per write."""
    slicer = sys.modules["slicer"]
    records = []
    for name in wrapper_cls.allParameters:
        datatype = wrapper_cls.dataType(name)
        try:
            default = getattr(parameter_node, name)
        except Exception as exc:
            records.append(dict(name=name, value="(read default)", ok=False, error=f"{type(exc).__name__}: {exc}"))
            continue
        node_classes = [t for t in _node_types(datatype) if isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)]
        if node_classes:
            values = [scene.AddNewNodeByClass(cls.__name__, f"harness {name} {cls.__name__}") for cls in node_classes]
            values.append(None)
        else:
            values = [_value_for(wrapper_cls, name, default)]
        for value in values:
            shown = value.GetClassName() if hasattr(value, "GetClassName") else repr(value)
            try:
                setattr(parameter_node, name, value)
                back = getattr(parameter_node, name)
                ok = back is value if (value is None or hasattr(value, "GetClassName")) else back == value
                records.append(dict(name=name, value=shown, ok=ok,
                                    error=None if ok else f"read back {back!r}"))
            except Exception as exc:
                records.append(dict(name=name, value=shown, ok=False, error=f"{type(exc).__name__}: {exc}"))
    return records


def _widget_state(widget):
    """The value a widget shows, for the widget kinds the parameter-node GUI connectors use."""
    if isinstance(widget, qMRMLNodeComboBox):
        return widget.currentNode()
    if isinstance(widget, QAbstractButton):
        return widget.checked
    if isinstance(widget, Ranged):
        return widget.value
    if isinstance(widget, ctkPathLineEdit):
        return widget.currentPath
    if isinstance(widget, QComboBox):
        return widget.currentText
    if isinstance(widget, (QLineEdit, QLabel)):
        return widget.text
    return None


def check_module(name: str, path=None) -> dict:
    """Import module ``name`` the way Slicer does and go as far as possible: Module, Logic, parameter node (every
    parameter written and read back), Widget.setup() with the .ui's stand-in widgets, then the GUI binding (a
    parameter written shows in its widget). Returns a JSON-able report; ``reached`` lists the stages passed."""
    slicer = sys.modules["slicer"]
    report = dict(module=name, slicer_layer=SLICER_VERSION, reached=[], error=None)
    stage = "import"
    try:
        python_module, parent, _ = load_module(name, path)
        report["reached"].append("import")
        report["title"] = parent.title
        stage = "Module"
        report["reached"].append("Module")

        stage = "Logic"
        logic = getattr(python_module, f"{name}Logic")()
        report["reached"].append("Logic")

        stage = "parameter node"
        parameter_node = logic.getParameterNode()
        wrapped = hasattr(type(parameter_node), "allParameters")     # a @parameterNodeWrapper class
        mrml_node = parameter_node.parameterNode if wrapped else parameter_node
        report["parameter_node"] = dict(wrapper=type(parameter_node).__name__ if wrapped else None,
                                        mrml_class=mrml_node.GetClassName(),
                                        parameters=list(type(parameter_node).allParameters) if wrapped else [])
        report["reached"].append("parameter node")

        stage = "parameters written and read back"
        records = check_parameters(type(parameter_node), parameter_node, slicer.mrmlScene) if wrapped else []
        report["parameters"] = records
        if not all(r["ok"] for r in records):
            raise AssertionError("parameters not read back: "
                                 + "; ".join(f"{r['name']}={r['value']}: {r['error']}" for r in records if not r["ok"]))
        report["reached"].append("parameters written and read back")

        stage = "Widget.setup"
        parent_widget, widget = setup_widget(python_module, name)
        setattr(slicer.modules, f"{name}Widget", widget)
        report["reached"].append("Widget.setup")

        stage = "GUI shows the parameters"
        report["gui"] = _check_gui(parent_widget, logic.getParameterNode()) if wrapped else []
        if not all(g["ok"] for g in report["gui"]):
            raise AssertionError("widgets do not show the parameters: "
                                 + "; ".join(f"{g['name']}: {g['error']}" for g in report["gui"] if not g["ok"]))
        report["reached"].append("GUI shows the parameters")

        stage = "enter, close scene, exit, cleanup"       # the module shown, File > Close Scene, another module
        # (Slicer's qSlicerScriptedLoadableModuleWidget calls enter/exit only when the Python class defines them)
        parent_widget.isEntered = True
        if hasattr(widget, "enter"):
            widget.enter()
        slicer.mrmlScene.Clear()        # Slicer's Close Scene: the widget's StartClose/EndClose observers run
        if hasattr(widget, "exit"):
            widget.exit()
        parent_widget.isEntered = False
        widget.cleanup()
        report["reached"].append(stage)
    except BaseException as exc:  # a report, whatever failed (the test asserts on it)
        report["error"] = dict(stage=stage, type=type(exc).__name__, message=str(exc)[:2000],
                               traceback=traceback.format_exc()[-4000:])
    report["generic_stand_in_members"] = list(GENERIC_USES)
    return report


def _check_gui(panel, node) -> list[dict]:
    """For every parameter bound to a widget of the module panel ``panel``: write a new value into the parameter
    node (through the wrapper ``node``: another wrapper of the same MRML node than the one the panel connected), check
    the widget shows it, change the widget and check the parameter node follows (both directions of connectGui)."""
    slicer = sys.modules["slicer"]
    wrapper_cls = type(node)
    bound = {w.property("SlicerParameterName"): w for w in panel.findChildren(QWidget)
             if w.property("SlicerParameterName")}
    out = []
    for name in wrapper_cls.allParameters:
        w = bound.get(name)
        if w is None:
            out.append(dict(name=name, widget=None, ok=True, error=None))
            continue
        entry = dict(name=name, widget=f"{w.name} ({type(w).__name__})", ok=False, error=None)
        try:
            before = getattr(node, name)
            node_classes = [t for t in _node_types(wrapper_cls.dataType(name))
                            if isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)]
            value = (slicer.mrmlScene.AddNewNodeByClass(node_classes[-1].__name__) if node_classes
                     else _value_for(wrapper_cls, name, before))
            setattr(node, name, value)
            shown = _widget_state(w)
            if isinstance(w, qMRMLNodeComboBox):
                ok = shown is value
            elif isinstance(w, QComboBox):
                ok = getattr(node, name) == value
            else:
                ok = shown == (str(value) if isinstance(value, pathlib.PurePath) else value)
            if not ok:
                entry["error"] = f"parameter {value!r}, widget shows {shown!r}"
            else:   # the other direction: the user changes the widget
                if isinstance(w, qMRMLNodeComboBox):
                    w.setCurrentNode(None)
                    ok = getattr(node, name) is None
                elif isinstance(w, QAbstractButton):
                    w.checked = not w.checked
                    ok = getattr(node, name) == w.checked
                elif isinstance(w, Ranged):
                    w.value = before
                    ok = getattr(node, name) == w.value
                elif isinstance(w, ctkPathLineEdit):
                    w.currentPath = str(REPO / "harness" / "from-widget")
                    ok = str(getattr(node, name)) == w.currentPath
                elif isinstance(w, QComboBox):
                    w.currentIndex = 0
                    ok = True
                if not ok:
                    entry["error"] = f"widget changed, parameter is {getattr(node, name)!r}"
            entry["ok"] = ok
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        out.append(entry)
    return out


def summary(report: dict) -> str:
    """One line per module: parameters written and read back, widget setup reached."""
    params = report.get("parameters") or []
    written = sorted({r["name"] for r in params})
    gui = [g for g in report.get("gui") or [] if g["widget"]]
    if (report.get("parameter_node") or {}).get("wrapper", "") is None:
        parameters = "no typed parameter node (the logic keeps a plain vtkMRMLScriptedModuleNode)"
    else:
        parameters = (f"{sum(r['ok'] for r in params)}/{len(params)} writes of {len(written)} parameters "
                      f"({', '.join(written) or 'none'})")
    line = (f"{report['module']}: parameters written and read back: {parameters}; widget setup reached: "
            f"{'end of setup()' if 'Widget.setup' in report['reached'] else 'NOT reached'}; GUI bound: "
            f"{sum(g['ok'] for g in gui)}/{len(gui)} parameters shown in and read from their widgets; "
            f"stages: {' > '.join(report['reached'])}")
    if report.get("error"):
        e = report["error"]
        line += f"; FAILED at {e['stage']}: {e['type']}: {e['message'][:300]}"
    return line


# ---------------------------------------------------------------------------------------------------------------
# The self-test, as Slicer's "Reload and Test" runs it
# ---------------------------------------------------------------------------------------------------------------
def run_self_test(name: str) -> dict:
    """Run ``<name>Test().runTest()`` through the module's ``runTest`` (as Slicer's SelfTests do), with
    ``delayDisplay`` recording its messages; a ``unittest.SkipTest`` is reported as skipped with its message."""
    import unittest

    slicer = sys.modules["slicer"]
    messages = []
    report = dict(module=name, messages=messages, outcome=None, error=None)
    original = slicer.util.delayDisplay
    slicer.util.delayDisplay = lambda message, *args, **kwargs: messages.append(str(message))
    try:
        _, _, instance = load_module(name)
        instance.runTest(msec=0)
        report["outcome"] = "passed"
    except unittest.SkipTest as exc:
        report["outcome"] = "skipped"
        report["error"] = dict(type="SkipTest", message=str(exc))
    except BaseException as exc:
        report["outcome"] = "failed"
        report["error"] = dict(type=type(exc).__name__, message=str(exc)[:2000],
                               traceback=traceback.format_exc()[-4000:])
    finally:
        slicer.util.delayDisplay = original
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("check", "selftest"))
    parser.add_argument("module", help="module folder, e.g. SpineSeg")
    parser.add_argument("--file", help="check this module file instead of <module>/<module>.py")
    parser.add_argument("--hide", action="append", default=[], help="make a package unimportable (e.g. torch)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line (last line)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    install(hide=args.hide)
    report = check_module(args.module, args.file) if args.command == "check" else run_self_test(args.module)
    if args.json:
        print("HARNESS-REPORT " + json.dumps(report, default=str))
    else:
        print(summary(report) if args.command == "check" else
              f"{args.module} self-test: {report['outcome']}"
              + (f" ({report['error']['type']}: {report['error']['message']})" if report["error"] else "")
              + "".join(f"\n  delayDisplay: {m}" for m in report["messages"]))
    return 0 if not report.get("error") or report.get("outcome") == "skipped" else 1


if __name__ == "__main__":
    sys.exit(main())
