"""The module files loaded the way 3D Slicer loads them (Testing/slicer_harness.py: Slicer 5.12.3's own Python layer
over slicer-core, stand-ins only for Qt/CTK): import, Module, Logic, the parameter node with every parameter written
and read back, Widget.setup() with the real .ui, the GUI binding, and the self-tests as a build machine without
PyTorch runs them.

Each check runs in its own process (the harness replaces ``slicer``, ``qt`` and ``ctk`` in ``sys.modules``).
``python scripts/slicer_harness_report.py`` prints the same report for the closing note / CI log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, data_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slicer_harness  # noqa: E402  (the harness module itself is import-safe: it changes nothing until install())

MODULES = slicer_harness.module_folders()
HARNESS = Path(slicer_harness.__file__)


def run_harness(*args, timeout=300) -> dict:
    proc = subprocess.run([sys.executable, str(HARNESS), *args, "--json"], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HARNESS-REPORT ")]
    assert lines, f"the harness printed no report (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1].split(" ", 1)[1])


@pytest.fixture(scope="module", autouse=True)
def slicer_layer():
    if not slicer_harness.available():
        pytest.fail(f"Slicer's Python layer missing: {slicer_harness.SLICER_PYTHON} (the tests need ../shared/slicer "
                    "beside the checkout)")


@pytest.fixture(scope="module")
def reports():
    # as a fresh Slicer: PyTorch not installed yet (the panels must open without it)
    return {name: run_harness("check", name, "--hide", "torch") for name in MODULES}


def test_the_extensions_modules_are_found():
    assert {"SpineSeg", "SpineSegIIS"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_loads_like_in_slicer_up_to_the_end_of_widget_setup(reports, module):
    report = reports[module]
    print("\n" + slicer_harness.summary(report))
    assert report["error"] is None, f"{report['error']['stage']}: {report['error']['traceback']}"
    assert report["reached"] == ["import", "Module", "Logic", "parameter node", "parameters written and read back",
                                 "Widget.setup", "GUI shows the parameters", "enter, close scene, exit, cleanup"]
    assert report["slicer_layer"] == "5.12.3" and report["title"]
    assert report["parameter_node"]["mrml_class"] == "vtkMRMLScriptedModuleNode"
    # no Qt/CTK class the panel relies on was left to a generic stand-in (those accept anything)
    assert not [m for m in report["generic_stand_in_members"] if m.split(".")[0] in ("qMRMLNodeComboBox", "QCheckBox")]


@pytest.mark.parametrize("module", MODULES)
def test_every_parameter_is_written_and_read_back(reports, module):
    report = reports[module]
    params = report["parameter_node"]["parameters"]
    records = report.get("parameters") or []
    if report["parameter_node"]["wrapper"] is None:
        pytest.skip(f"{module} keeps no typed parameter node (its logic's getParameterNode is the plain "
                    "vtkMRMLScriptedModuleNode)")
    assert params and {r["name"] for r in records} == set(params)
    assert all(r["ok"] for r in records), [r for r in records if not r["ok"]]
    # node parameters: a node of every class of the annotation, then None (a selector set to "None")
    node_writes = [r for r in records if r["value"].startswith("vtkMRML")]
    for name in {r["name"] for r in node_writes}:
        assert any(r["name"] == name and r["value"] == "None" for r in records), f"{name}: None not written"
    if "referenceNode" in params:      # a segmentation or a label map: both classes written
        assert {r["value"] for r in node_writes if r["name"] == "referenceNode"} == {
            "vtkMRMLSegmentationNode", "vtkMRMLLabelMapVolumeNode"}


@pytest.mark.parametrize("module", MODULES)
def test_every_bound_widget_shows_its_parameter_and_writes_it_back(reports, module):
    if not reports[module]["parameter_node"]["parameters"]:
        pytest.skip(f"{module} has no typed parameters to bind")
    gui = [g for g in reports[module]["gui"] if g["widget"]]
    assert gui, "no parameter is bound to a widget of the .ui"
    assert all(g["ok"] for g in gui), [g for g in gui if not g["ok"]]


def _without_none(source: str) -> str:
    """The module source with ``None`` taken out of every node ``Union[...]`` (the bug of issue 10)."""
    return re.sub(r"(Union\[[^\]]*vtkMRML[^\]]*?), None\]", r"\1]", source)


@pytest.mark.parametrize("module", [m for m in MODULES
                                    if _without_none((REPO / m / f"{m}.py").read_text(encoding="utf-8"))
                                    != (REPO / m / f"{m}.py").read_text(encoding="utf-8")])
def test_an_optional_node_union_without_none_fails_as_in_slicer(module, tmp_path):
    """Issue 10's bug, put back into a copy of the module file: creating the parameter node must fail in the harness
    exactly as Slicer fails in setup() -- so the harness would have caught it."""
    broken = tmp_path / f"{module}.py"
    broken.write_text(_without_none((REPO / module / f"{module}.py").read_text(encoding="utf-8")))
    report = run_harness("check", module, "--file", str(broken))
    assert report["error"] is not None and report["error"]["stage"] == "parameter node", report["error"]
    assert "Unable to write value 'None'" in report["error"]["message"]


# -- self-tests as an extension build machine runs them (no PyTorch; Sample Data cannot download here) --------------
@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_self_test_passes_or_skips_with_a_reason_without_torch(module):
    """Slicer's "Reload and Test" path (module.runTest -> <Module>Test().runTest()) with torch uninstalled (import
    and metadata hidden) and no SampleData module: a test that needs torch says so through skipTest; the rest runs
    on the bundled sample (the classical pipeline on LIDC-IDRI-0001 at 2.5 mm for SpineSeg)."""
    report = run_harness("selftest", module, "--hide", "torch", timeout=900)
    print(f"\n{module} self-test without torch: {report['outcome']} {report['error'] and report['error']['message']}"
          f"; delayDisplay: {report['messages']}")
    assert report["outcome"] in ("passed", "skipped"), report["error"]
    if report["outcome"] == "skipped":
        assert "torch" in report["error"]["message"], report["error"]
    if module == "SpineSeg":      # the classical pipeline needs no torch: it must really run
        assert report["outcome"] == "passed" and "Test passed" in report["messages"]


def test_classical_self_test_skips_without_scikit_image():
    """A build machine has neither scikit-image nor torch: the classical self-test skips, naming the package."""
    report = run_harness("selftest", "SpineSeg", "--hide", "skimage", "--hide", "torch")
    print(f"\nSpineSeg self-test without scikit-image: {report['outcome']}: {report['error']}")
    assert report["outcome"] == "skipped", report["error"]
    assert "scikit-image" in report["error"]["message"]


# -- the panels driven through their buttons (Testing/slicer_drive.py), the engine's real child behind them ---------
def run_drive(*args, timeout=1800) -> dict:
    proc = subprocess.run([sys.executable, str(HARNESS.parent / "slicer_drive.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DRIVE-REPORT ")]
    assert lines, f"the driver printed no report (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1].split(" ", 1)[1])
    assert not report.get("error"), report.get("traceback")
    print(f"\n{report['module']} panel driven: " + json.dumps(report["steps"], indent=1))
    return report


@pytest.mark.slow
def test_classical_panel_apply_and_cancel_on_the_sample():
    """Apply on the bundled sample: the panel's timer polls the child until the segmentation, the centerline and the
    slice markups (following the red view) are in the scene; Apply then Cancel leaves the scene as it was."""
    report = run_drive("classical")
    assert report["input"] == "LIDC-IDRI-0001" and report["errors"] == []
    cancel, apply = report["steps"]
    assert cancel["state"] == "cancelled" and cancel["scene_unchanged"], cancel
    assert "nothing was added" in cancel["status"]
    assert apply["state"] == "done" and apply["segments"] == ["Spine"] and apply["segmentation_in_scene"], apply
    assert apply["centerline_points"] > 20 and apply["progress"] == 100 and apply["status"].startswith("Done in")
    assert apply["markups_checkbox"] and apply["slice_markups_follow_red"] and apply["export_enabled"]
    assert not apply["running"]


@pytest.mark.slow
def test_iis_panel_run_step_and_cancel_on_mr():
    """The IIS panel on MyoSegmenTUM 44 (MR) loaded as a volume node: the MR model is preselected; the CT model is
    refused by the child with its message (no gate in the parent); Run then Cancel, and Step x3 then Cancel, leave
    the scene as it was; Step then Run to end (the same child) and Run give the same named vertebra segments."""
    volume = data_path("mr", "vertebral-bodies-myosegmentum") / "44_img.nii.gz"
    report = run_drive("iis", "--volume", str(volume), "--threads", "2", "--passes", "3")
    assert report["model"] == "mr-vertebral-bodies" and report["input"] == "44_img", report
    assert report["device_info"].startswith("torch ")          # the device probe ran in its child
    steps = {s["action"]: s for s in report["steps"]}
    mismatch = next((s for s in report["steps"] if s["action"].startswith("Run with")), None)
    if mismatch is not None:      # a bundled CT model: the child's modality check is the one message
        assert mismatch["state"] == "failed" and mismatch["scene_unchanged"], mismatch
        assert mismatch["dialogs"] and mismatch["message"] in mismatch["dialogs"][0], mismatch
        assert "MR" in mismatch["message"] or "looks like" in mismatch["message"], mismatch
    cancel = steps["Run, Cancel"]
    assert cancel["state"] == "cancelled" and cancel["scene_unchanged"] and not cancel["cancel_enabled"], cancel
    stepped = steps["Step x3"]
    assert stepped["states"] == ["waiting"] * 3 and stepped["passes"] == 3 and stepped["box_shown"], stepped
    assert stepped["run_to_end_enabled"] and stepped["status"].startswith("pass 3")
    assert steps["Cancel stepping"]["state"] == "cancelled" and steps["Cancel stepping"]["scene_unchanged"]
    for action in ("Step, Run to end", "Run"):
        done = steps[action]
        assert done["state"] == "done" and done["segmentation_in_scene"] and done["table_in_scene"], done
        assert done["table_shown"] and done["export_enabled"] and len(done["segments"]) >= 4, done
        assert done["segments"] == done["rows"] and len(set(done["labels"])) == len(done["segments"]), done
    assert steps["Step, Run to end"]["same_child"] and report["same_vertebrae"]
    assert report["temporary_nodes_left"] == [] and report["errors"] == []
