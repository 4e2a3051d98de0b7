"""The SpineSeg module's logic under slicer-core on LIDC-IDRI-0001: the classical pipeline run on a volume node
must put exactly what the backend computes into the scene (segment, centerline, bounding lines, parabola and DP
points of the slice a view shows, metrics), and bad input or a cancel must leave the scene as it was."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from conftest import REPO, data_path

from SpineSegLib.classical import ClassicalParams, segment_spine
from SpineSegLib.core.errors import InputError, OutputExistsError, SpineSegError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.notes import collect_notes
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.core.resample import resample_to_spacing
from SpineSegLib.evaluation.metrics import evaluate_binary_images
from SpineSegLib.slicer.classical_logic import SPINE_LABEL, ClassicalLogic, classical_default, classical_params
from SpineSegLib.slicer.markups import add_curve, control_points_lps
from SpineSegLib.slicer.scene import add_folder, new_scene, scene_transaction
from SpineSegLib.slicer.segmentations import segmentation_to_image
from SpineSegLib.slicer.tables import table_rows
from SpineSegLib.slicer.volumes import image_to_volume

SAMPLE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm"


@pytest.fixture(scope="module", params=["sample-2.5mm", pytest.param("full", marks=pytest.mark.slow)])
def lidc(request):
    """LIDC-IDRI-0001 and its reference: the bundled 2.5 mm sample (fast tier) and the full-resolution scan (slow)."""
    folder = SAMPLE if request.param == "sample-2.5mm" else data_path("ct", "lidc-idri-0001")
    return read_image(folder / "image.nii.gz"), read_image(folder / "vertebrae.nii.gz")


@pytest.fixture(scope="module")
def run(lidc):
    """The logic on a LIDC volume node (with the reference label map), and the backend run directly."""
    ct, ref = lidc
    scene = new_scene()
    volume = image_to_volume(scene, ct, "LIDC-IDRI-0001")
    reference = image_to_volume(scene, ref, "reference", labelmap=True)
    logic = ClassicalLogic(scene)
    before = scene.GetNumberOfNodes()
    out = logic.run(volume, reference_node=reference)
    direct = segment_spine(ct, ClassicalParams())
    return scene, logic, volume, reference, out, direct, before


def red_slice_node(scene):
    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLScene(scene)
    node = slice_logic.AddSliceNode("Red")
    node.SetOrientationToAxial()
    scene.spineseg_slice_logic = slice_logic
    return node


def test_segment_is_the_backends_mask_named_and_coded(run, lidc):
    scene, logic, volume, _, out, direct, before = run
    segmentation = out.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetNthSegment(0)
    assert segment.GetName() == "Spine"
    assert "421060004^Vertebral column" in segment.GetTerminology()
    ids = segmentation_to_image(out.segmentation, volume)
    assert ids.same_grid(lidc[0])
    assert np.array_equal(ids.array > 0, direct.mask.array > 0)         # voxel for voxel what segment_spine gives
    assert set(np.unique(ids.array)) == {0, SPINE_LABEL}
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(out.segmentation)) == sh.GetItemParent(sh.GetItemByDataNode(volume))


def test_centerline_curve_holds_the_backends_points(run):
    _, _, _, _, out, direct, _ = run
    points = control_points_lps(out.centerline)
    assert len(points) == len(direct.centerline_curve_lps) > 100
    assert np.allclose(points, direct.centerline_curve_lps, atol=1e-4)
    assert out.centerline.GetCurveType() == slicer.vtkCurveGenerator.CURVE_TYPE_LINEAR_SPLINE   # no smoothing added


def test_slice_markups_follow_the_red_view(run):
    scene, logic, _, _, out, direct, _ = run
    red = red_slice_node(scene)
    logic.follow_slice_node(out, red)
    display = out.slice_display
    by_slice = {p.slice_index: p for p in direct.parabolas}
    checked = 0
    for entry in direct.slices[::25]:
        red.SetSliceOffset(entry.z_mm + 0.4)          # anywhere within half a slice: that slice is shown
        assert display.slice_index is not None
        shown = out.result.slices[display.slice_index]
        assert shown.slice_index == entry.slice_index
        for name, node in display.lines.items():
            points = control_points_lps(node)
            expected = np.asarray(entry.segments()[name], float)
            assert np.allclose(points[:, :2], expected[:, :2], atol=1e-4), name
            assert np.allclose(points[:, 2], entry.z_mm + 0.4, atol=1e-4)     # drawn in the view's plane
            assert node.GetDisplayNode().GetVisibility()
        fit = by_slice.get(entry.slice_index)
        if fit is not None:
            assert np.allclose(control_points_lps(display.parabola)[:, :2], np.asarray(fit.parabola)[:, :2], atol=1e-4)
            assert np.allclose(control_points_lps(display.dp_points)[:, :2], np.asarray(fit.dp_points)[:, :2], atol=1e-4)
            assert display.parabola.GetDisplayNode().GetVisibility()
            checked += 1
    assert checked >= 3
    # H lines run from V1 to V6 on their row; V lines from H1 to H3 on their column (Revy et al., Fig. 3)
    entry = direct.slices[len(direct.slices) // 2]
    red.SetSliceOffset(entry.z_mm)
    h1, v1, v6 = (control_points_lps(display.lines[n]) for n in ("H1", "V1", "V6"))
    assert np.isclose(h1[0, 0], v1[0, 0], atol=1e-3) and np.isclose(h1[1, 0], v6[0, 0], atol=1e-3)
    red.SetSliceOffset(max(s.z_mm for s in direct.slices) + 50.0)      # above the spine: nothing shown
    assert display.slice_index is None
    assert not any(n.GetDisplayNode().GetVisibility() for n in display.nodes())
    logic.stop_following(out)
    red.SetSliceOffset(entry.z_mm)
    assert display.slice_index is None                                   # no longer following


def test_metrics_table_holds_evaluate_binary_images(run, lidc):
    _, logic, _, reference, out, direct, _ = run
    expected = evaluate_binary_images(direct.mask, lidc[1])
    rows = table_rows(out.metrics_table)
    assert len(rows) == 1
    for key, value in expected.items():
        assert rows[0][key] == pytest.approx(value, rel=1e-12), key
    assert 0.6 < rows[0]["dsc"] <= 1.0
    assert out.metrics_table.GetColumnUnitLabel("hd95_mm") == "mm"
    # evaluating again (e.g. after editing the segment) updates the same table
    old = out.metrics_table
    table = logic.evaluate(out, reference)
    assert table is old and table.GetScene() is not None
    assert table_rows(table)[0]["iou"] == pytest.approx(expected["iou"], rel=1e-12)
    assert out.grid_notes == [] and table.GetAttribute("SpineSeg.grid_note") is None


def test_a_reference_on_another_grid_is_resampled_with_a_note_or_refused(run, lidc):
    scene, logic, volume, reference, out, direct, _ = run
    ref = lidc[1]
    fine = resample_to_spacing(ref, (ref.spacing[0], ref.spacing[1], ref.spacing[2] / 2), label=True)
    table = logic.evaluate(out, image_to_volume(scene, fine, "fine reference", labelmap=True))
    with collect_notes() as notes:
        expected = evaluate_binary_images(direct.mask, fine)
    assert table_rows(table)[0]["dsc"] == pytest.approx(expected["dsc"], rel=1e-12)
    assert out.grid_notes == notes and notes[0].startswith("resampled the prediction onto the reference's grid")
    assert table.GetAttribute("SpineSeg.grid_note") == out.grid_notes[0]
    logic.evaluate(out, reference)                                           # back to the run's own table
    away = Image(ref.array, ref.spacing, np.add(ref.origin, 1000.0), ref.direction)
    with pytest.raises(InputError, match="do not share a grid and do not overlap in space at all"):
        logic.evaluate(out, image_to_volume(scene, away, "elsewhere", labelmap=True))
    assert out.metrics_table is not None and out.metrics_table.GetScene() is scene


def test_export_writes_the_mask_and_refuses_to_overwrite(run, tmp_path):
    _, logic, _, _, out, direct, _ = run
    path = logic.export_labelmap(out, tmp_path / "spine.nii.gz")
    written = read_image(path)
    assert written.same_grid(direct.mask) and np.array_equal(written.array, direct.mask.array)
    with pytest.raises(OutputExistsError):
        logic.export_labelmap(out, tmp_path / "spine.nii.gz")
    table = logic.export_table(out, tmp_path / "metrics.tsv")
    assert "dsc" in table.read_text(encoding="utf-8").splitlines()[0]


def test_nodes_added_are_those_reported(run):
    scene, _, _, _, out, _, before = run
    for node in out.nodes:
        assert node.GetScene() is scene
    assert scene.GetNumberOfNodes() > before


# -- parameters and bad input --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    """The bundled 2.5 mm LIDC-IDRI-0001 sample: the same patient, fast enough for the runs that stop early."""
    return read_image(SAMPLE / "image.nii.gz")


class ParameterNodeLike:
    """What the module's parameter node wrapper looks like to the logic: attributes named like ClassicalParams."""

    def __init__(self, **values):
        self.inputVolume = None
        self.showSliceMarkups = True
        for key, value in values.items():
            setattr(self, key, value)


def test_parameters_from_the_gui_reach_the_backend():
    params = classical_params(ParameterNodeLike(bone_threshold_hu=180, parabola_count=7.0, refine_with_parabola=0))
    assert params.bone_threshold_hu == 180.0 and params.parabola_count == 7 and params.refine_with_parabola is False
    assert params.disk_radius_mm == ClassicalParams().disk_radius_mm
    assert classical_params({"dp_penalty": 12.5}).dp_penalty == 12.5
    assert classical_default("bone_threshold_hu") == ClassicalParams().bone_threshold_hu
    with pytest.raises(InputError, match="unknown classical parameter.*bone_treshold"):
        classical_params({"bone_treshold": 100})


def test_without_parabola_refinement_the_parabola_markups_stay_hidden(sample):
    scene = new_scene()
    volume = image_to_volume(scene, sample, "sample")
    logic = ClassicalLogic(scene)
    out = logic.run(volume, {"refine_with_parabola": False})
    assert out.result.parabolas == [] and out.result.slices
    entry = out.result.slices[len(out.result.slices) // 2]
    assert logic.show_slice(out, np.mean(entry.h1, axis=0)) is not None
    assert out.slice_display.lines["H2"].GetDisplayNode().GetVisibility()
    assert not out.slice_display.parabola.GetDisplayNode().GetVisibility()
    assert not out.slice_display.dp_points.GetDisplayNode().GetVisibility()
    logic.remove(out)
    assert all(n.GetScene() is None for n in out.nodes)


def _refused(logic, scene, volume, match, **kwargs):
    before = scene.GetNumberOfNodes()
    with pytest.raises(SpineSegError, match=match) as info:
        logic.run(volume, **kwargs)
    assert scene.GetNumberOfNodes() == before, "a refused run must add no node"
    return info.value


def test_bad_input_is_refused_with_a_clear_message(sample):
    scene = new_scene()
    logic = ClassicalLogic(scene)
    assert isinstance(_refused(logic, scene, None, "no input volume selected"), InputError)
    labels = image_to_volume(scene, read_image(SAMPLE / "vertebrae.nii.gz"), "vertebrae", labelmap=True)
    assert isinstance(_refused(logic, scene, labels, "'vertebrae' is a label map"), InputError)
    flat = image_to_volume(scene, Image(sample.array[60:61].copy(), sample.spacing, sample.origin, sample.direction),
                           "one slice")
    assert isinstance(_refused(logic, scene, flat, r"'one slice' is a 2-D image \(144 x 116 x 1 voxels\)"), InputError)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "a segmentation")
    _refused(logic, scene, segmentation, "'a segmentation' is a vtkMRMLSegmentationNode, not a volume")
    mr_scan = image_to_volume(scene, read_image(data_path("mr", "tptbox-c6", "image.nii.gz")), "MR")
    _refused(logic, scene, mr_scan, "does not look like a CT|field of view")
    ct = image_to_volume(scene, sample, "CT")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "not a reference")
    _refused(logic, scene, ct, "reference 'not a reference' is a vtkMRMLTableNode", reference_node=table)
    # a reference of another scan is refused before the pipeline runs (no progress step is reported)
    myo = read_image(data_path("mr", "vertebral-bodies-myosegmentum", "01_vb.nii.gz"))
    other = image_to_volume(scene, myo, "MR bodies", labelmap=True)
    progress = Progress()
    progress.callback = lambda name, fraction: pytest.fail(f"the pipeline ran ({name})")
    _refused(logic, scene, ct, "the prediction and the reference do not share a grid and their fields of view overlap "
             "by only", reference_node=other, progress=progress)


def test_cancel_mid_run_adds_nothing(sample):
    scene = new_scene()
    volume = image_to_volume(scene, sample, "CT")
    logic = ClassicalLogic(scene)
    steps = []
    progress = Progress()

    def on_step(name, fraction):
        steps.append(name)
        if name == "bounding lines":        # the user clicks Cancel half-way
            progress.cancel()

    progress.callback = on_step
    before = scene.GetNumberOfNodes()
    with pytest.raises(Cancelled):
        logic.run(volume, progress=progress)
    assert scene.GetNumberOfNodes() == before
    assert "bounding lines" in steps and "parabola fit" not in steps


def test_a_failure_while_adding_results_removes_what_was_added(sample):
    """The scene transaction the logic wraps its node creation in: a failure half-way removes every node and folder
    the block created (here the second curve is invalid)."""
    scene = new_scene()
    volume = image_to_volume(scene, sample, "CT")
    before = scene.GetNumberOfNodes()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    with pytest.raises(InputError, match="at least 2 points"):
        with scene_transaction(scene):
            add_curve(scene, np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]), "first", next_to=volume)
            add_folder(scene, "a folder", next_to=volume)
            add_curve(scene, np.array([[0.0, 0.0, 0.0]]), "second")
    assert scene.GetNumberOfNodes() == before
    ids = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
    children = [sh.GetItemName(ids.GetId(i)) for i in range(ids.GetNumberOfIds())]
    assert "a folder" not in children and "first" not in children


# -- vertebrae=True: one named segment per vertebra (classical.vertebrae.label_vertebrae in the engine child) ------
@pytest.fixture(scope="module")
def vertebrae_run(sample):
    """The logic with vertebrae=True on the bundled sample through the real engine child, and the backend directly."""
    from SpineSegLib.classical.vertebrae import label_vertebrae

    scene = new_scene()
    volume = image_to_volume(scene, sample, "CT")
    logic = ClassicalLogic(scene)
    before = scene.GetNumberOfNodes()
    out = logic.run(volume, vertebrae=True)
    return scene, volume, out, label_vertebrae(sample, ClassicalParams()), before


def test_vertebrae_become_named_coded_segments_and_a_report_table(vertebrae_run, sample):
    from SpineSegLib.core.labels import name_of
    from SpineSegLib.slicer.colours import terminology_entry
    from SpineSegLib.slicer.segmentations import TAG_COMPLETENESS, segment_labels, segment_tag

    scene, volume, out, direct, before = vertebrae_run
    expected = [(v.label, v.name, v.complete) for v in direct.vertebrae]
    assert [(r.label, r.name, r.complete) for r in out.vertebrae] == expected and len(expected) >= 8
    assert [r.evidence for r in out.vertebrae] == [list(v.evidence) for v in direct.vertebrae]
    assert out.naming.certain == direct.names_certain and out.naming.note == direct.naming_note
    seg = out.vertebrae_segmentation
    ids = segmentation_to_image(seg, volume)
    assert ids.same_grid(sample) and np.array_equal(ids.array, direct.labels.array)    # voxel for voxel
    assert np.array_equal(segmentation_to_image(out.segmentation, volume).array > 0, direct.spine.mask.array > 0)
    by_label = {label: seg.GetSegmentation().GetSegment(sid) for sid, label in segment_labels(seg).items()}
    assert sorted(by_label) == sorted(label for label, _, _ in expected)
    for label, name, complete in expected:
        segment = by_label[label]
        assert segment.GetName() == name == name_of(label)
        assert segment.GetTerminology() == terminology_entry(label)
        assert segment_tag(segment, TAG_COMPLETENESS) == ("complete" if complete else "incomplete")
        assert segment_tag(segment, "SpineSeg.Evidence")
    rows = table_rows(out.vertebrae_table)
    assert [r["Vertebra"] for r in rows] == [name for _, name, _ in expected]
    assert all(r["Volume (ml)"] > 1.0 for r in rows)
    assert out.vertebrae_table.GetAttribute("SpineSeg.names_certain") == str(direct.names_certain).lower()
    assert out.vertebrae_table.GetAttribute("SpineSeg.naming_note") == direct.naming_note
    assert all(n.GetScene() is scene for n in out.nodes) and out.vertebrae_table in out.nodes


def test_a_cancelled_vertebrae_run_adds_nothing(sample):
    scene = new_scene()
    volume = image_to_volume(scene, sample, "CT")
    progress = Progress()
    progress.callback = lambda name, fraction: name == "parabola fit" and progress.cancel()
    before = scene.GetNumberOfNodes()
    with pytest.raises(Cancelled):
        ClassicalLogic(scene).run(volume, progress=progress, vertebrae=True)
    assert scene.GetNumberOfNodes() == before


def test_uncertain_names_reach_the_scene(sample):
    """The upper half of the sample (only the first rib in view): the names are uncertain, and the outputs say so."""
    from SpineSegLib.core.orientation import to_canonical
    from SpineSegLib.slicer.segmentations import segment_tag

    can = to_canonical(sample).image
    half = can.array.shape[0] // 2
    upper = Image(can.array[half:].copy(), can.spacing, tuple(can.index_to_lps([0, 0, half])), can.direction)
    scene = new_scene()
    out = ClassicalLogic(scene).run(image_to_volume(scene, upper, "upper"), vertebrae=True)
    assert out.naming.certain is False and out.naming.note
    assert out.vertebrae_table.GetAttribute("SpineSeg.names_certain") == "false"
    segmentation = out.vertebrae_segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(out.vertebrae) >= 3
    assert segment_tag(segmentation.GetNthSegment(0), "SpineSeg.NamesCertain") == "false"


def test_evaluate_adds_the_per_vertebra_metrics_of_the_shared_evaluation(vertebrae_run, sample):
    """With vertebrae, Evaluate also gives the IIS module's per-vertebra table (slicer/vertebra_evaluation.py):
    exactly evaluate_instance_images of the vertebrae segmentation against the reference, updated in place."""
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images
    from SpineSegLib.slicer.vertebra_evaluation import EVALUATION_OF

    scene, volume, out, direct, _ = vertebrae_run
    ref = read_image(SAMPLE / "vertebrae.nii.gz")
    reference = image_to_volume(scene, ref, "reference vertebrae", labelmap=True)
    metrics = ClassicalLogic(scene).evaluate(out, reference)
    assert metrics is out.metrics_table and out.metrics["dsc"] > 0.75
    table = out.vertebrae_evaluation
    assert table is not None and table.GetAttribute(EVALUATION_OF) == out.vertebrae_segmentation.GetID()
    expected = evaluate_instance_images(direct.labels, ref, pred_completeness={
        v.label: v.complete for v in direct.vertebrae})
    rows, expected_rows = table_rows(table), expected.to_rows()
    assert len(rows) == len(expected_rows) == len(expected.vertebrae) + len(expected.extras)
    for row, want in zip(rows, expected_rows):               # one row per reference vertebra, then the extras
        assert (row["ref_name"] or None, row["pred_name"] or None, row["status"]) == \
            (want["ref_name"], want["pred_name"], want["status"])
        if want["dice"] is not None:
            assert row["dice"] == pytest.approx(want["dice"], rel=1e-9)
            assert str(row["identified"]) == str(want["identified"])      # a table cell holds "True"/"False"
    summary = expected.summary()
    assert summary["reference_vertebrae"] == 18
    assert out.vertebrae_scores["detected"] == summary["detected"] >= 10       # measured 13-14 of 18
    assert out.vertebrae_scores["id_correct"] == summary["id_correct"] >= 10   # measured 15-16
    assert table.GetAttribute("SpineSeg.id_accuracy") == str(summary["id_accuracy"])
    assert table in out.nodes and out.vertebrae_evaluation_note == ""
    ClassicalLogic(scene).evaluate(out, reference)
    assert out.vertebrae_evaluation is table                                   # evaluated again: the same table
    # a reference of the spine as a whole: the spine's metrics, no per-vertebra table, and why
    spine_only = image_to_volume(scene, ref.with_array((ref.array > 0).astype(np.uint8)), "spine", labelmap=True)
    ClassicalLogic(scene).evaluate(out, spine_only)
    assert out.vertebrae_evaluation is None and table.GetScene() is None
    assert "needs one label per vertebra" in out.vertebrae_evaluation_note and out.metrics["dsc"] > 0.75


@pytest.mark.slow
def test_the_panel_with_vertebrae_on_the_sample_through_the_harness():
    """The SpineSeg panel driven through its buttons (Testing/slicer_drive.py, the engine's real child behind it):
    the Vertebrae checkbox on, Apply gives one named segment per vertebra in the label table's colours and the
    report table; Evaluate against the sample's reference vertebrae gives the per-vertebra table; on the upper half
    of the sample the status line says the names are uncertain."""
    import json
    import os
    import subprocess
    import sys

    from SpineSegLib.core.labels import VERTEBRAE, by_name

    proc = subprocess.run([sys.executable, str(REPO / "Testing" / "slicer_drive.py"), "classical-vertebrae"],
                          capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DRIVE-REPORT ")]
    assert lines, f"no report (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1].split(" ", 1)[1])
    assert not report.get("error"), report.get("traceback")
    assert report["vertebrae_parameter"] is True and report["errors"] == [] and report["temporary_nodes_left"] == []
    apply, evaluate, upper = report["steps"]
    assert apply["state"] == "done" and apply["segmentation"] == "LIDC-IDRI-0001 vertebrae", apply
    names = apply["segments"]
    assert names[0] in ("C6", "C7", "T1") and names[-1] in ("L2", "L3", "L4") and len(names) >= 14, names   # C7-L3
    assert names == apply["rows"] and apply["table_shown"] and not apply["spine_visible"]
    for name, colour, label in zip(names, apply["colours"], apply["labels"]):
        assert by_name(name).label == label and colour == pytest.approx(VERTEBRAE[label].color, abs=1e-3), name
    assert apply["names_certain"] and "names: named from the ribs" in apply["status"]
    assert evaluate["enabled"] and evaluate["reference_parameter"] and evaluate["table_shown"], evaluate
    assert evaluate["table"] == "LIDC-IDRI-0001 vertebrae evaluation" and evaluate["spine_dice"] > 0.75
    rows = {r["ref_name"]: r for r in evaluate["rows"] if r["ref_name"]}           # the extras have none
    assert len(rows) == evaluate["summary"]["reference_vertebrae"] >= 16
    yes = ("True", True)                                   # a table cell holds "True" / "False"
    assert sum(r["identified"] in yes for r in rows.values()) == evaluate["summary"]["id_correct"] >= 10  # 15-16
    assert sum(r["detected"] in yes for r in rows.values()) >= 10 and rows["T8"]["dice"] > 0.6           # 13-14; 0.74
    assert evaluate["status"].startswith("Spine: Dice") and "detected" in evaluate["status"]
    assert upper["state"] == "done" and upper["names_certain"] is False and len(upper["segments"]) >= 3, upper
    assert "NAMES UNCERTAIN" in upper["status"] and upper["segments"] == upper["rows"]
