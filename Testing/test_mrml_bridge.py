"""SpineSegLib.slicer's MRML modules (scene, volumes, colours, segmentations, markups, tables, storage) under
slicer-core, on real scans: exact geometry, named/coloured/coded segments, stable exported ids, markups and tables in
the right coordinates, files that re-load, and the committed label files."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import slicer   # slicer-core, part of the test requirements
import vtk
from conftest import REPO, data_path

from SpineSegLib.core.errors import InputError, OutputExistsError, SpineSegError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.label_files import CSV, TERMINOLOGY_CONTEXT, write_label_files
from SpineSegLib.core.labels import CATEGORY_CODE, VERTEBRAE, by_name
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.core.resources import resource_dir
from SpineSegLib.slicer.colours import COLOUR_TABLE_ROLE, fill_colour_table, terminology_entry, vertebra_colour_table
from SpineSegLib.slicer.markups import add_box, add_curve, add_curves, add_points, box_lps, control_points_lps
from SpineSegLib.slicer.scene import new_scene
from SpineSegLib.slicer.segmentations import (INCOMPLETE_OPACITY, STATUS_TAG, TAG_COMPLETENESS, TAG_LABEL,
                                              _segment_ids, annotate_segments, labelmap_to_segmentation,
                                              segment_labels, segment_tag, segmentation_to_image,
                                              segmentation_to_labelmap)
from SpineSegLib.slicer.storage import (load_markups, load_segmentation, load_table, read_scene_bundle, save_node,
                                        save_results)
from SpineSegLib.slicer.tables import add_table, table_rows
from SpineSegLib.slicer.volumes import LPS_TO_RAS, image_to_volume, lps_to_ras, volume_to_image, vtk_matrix

CASES = {
    "lidc-LAS": ("ct", "lidc-idri-0001"),
    "tptbox-l3-PIR": ("ct", "tptbox-l3"),
    "mr-tptbox-c6-PIR": ("mr", "tptbox-c6"),
    "mr-myosegmentum-LPI": ("mr", "vertebral-bodies-myosegmentum"),
}
FILES = {"mr-myosegmentum-LPI": "01_img.nii.gz"}
# the full LIDC scan (512 x 512 x 133) in the slow tier; its crop around the spine, written by SimpleITK, in the fast
CASE_PARAMS = [pytest.param("lidc-LAS", marks=pytest.mark.slow), "lidc-crop-LAS", *sorted(set(CASES) - {"lidc-LAS"})]


def crop(image: Image, box) -> Image:
    """``image[k0:k1, j0:j1:step, i0:i1:step]`` (numpy order) with the geometry that keeps every voxel in place."""
    (k0, k1), (j0, j1), (i0, i1), step = box
    spacing = (image.spacing[0] * step, image.spacing[1] * step, image.spacing[2])
    return Image(image.array[k0:k1, j0:j1:step, i0:i1:step].copy(), spacing,
                 tuple(image.index_to_lps([i0, j0, k0])), image.direction)


@pytest.fixture(scope="session")
def lidc():
    """LIDC-IDRI-0001 (left-handed LAS grid, C5-L3) and its vertebra ids, cropped around the spine with every second
    voxel in-plane: all 18 vertebrae and every slice, a thirtieth of the voxels."""
    folder = data_path("ct", "lidc-idri-0001")
    box = ((0, 133), (79, 290), (169, 330), 2)
    return crop(read_image(folder / "image.nii.gz"), box), crop(read_image(folder / "vertebrae.nii.gz"), box)


@pytest.fixture(scope="session")
def lidc_crop_file(lidc, tmp_path_factory):
    return write_image(lidc[0], tmp_path_factory.mktemp("lidc-crop") / "image.nii.gz")


def case_file(case: str, request):
    if case == "lidc-crop-LAS":
        return request.getfixturevalue("lidc_crop_file")
    return data_path(*CASES[case], FILES.get(case, "image.nii.gz"))


@pytest.fixture
def scene():
    return new_scene()


def rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def node_matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def assert_same_image(a: Image, b: Image):
    assert a.array.dtype == b.array.dtype
    assert np.array_equal(a.array, b.array)
    assert a.spacing == b.spacing and a.origin == b.origin
    assert np.array_equal(a.direction, b.direction)


# -- volumes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_volume_round_trip_is_exact(scene, case, request):
    image = read_image(case_file(case, request))
    node = image_to_volume(scene, image, "scan")
    back = volume_to_image(node)
    assert_same_image(back, image)
    # Slicer's own IJK->RAS matrix places every voxel where the LPS geometry says, x and y negated
    corner = np.array([image.size[0] - 1, 3, image.size[2] - 2, 1.0])
    ras = node_matrix(node) @ corner
    assert np.allclose(ras[:3], lps_to_ras(image.index_to_lps(corner[:3])), atol=1e-9)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_geometry_agrees_with_slicers_own_reader(scene, case, request):
    """Slicer reading the file itself and SimpleITK + our conversion must give the same grid and voxels."""
    path = case_file(case, request)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "read by Slicer")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    ours, theirs = to_canonical(read_image(path)).image, to_canonical(volume_to_image(node)).image
    # (Slicer's reader may store the slices in the other order -- it does for LIDC's left-handed grid -- so the
    # images are compared voxel by voxel in the canonical layout, i.e. by physical position)
    assert theirs.same_grid(ours, tol=1e-4), (theirs.origin, ours.origin, theirs.direction, ours.direction)
    assert np.array_equal(theirs.array, ours.array)


def test_oblique_and_label_map_volumes_round_trip(scene, lidc):
    ct, labels = lidc
    oblique = Image(ct.array, ct.spacing, ct.origin, rotation((1, 2, 3), 23) @ ct.direction)
    node = image_to_volume(scene, oblique, "oblique")
    assert_same_image(volume_to_image(node), oblique)
    m = node_matrix(node)
    assert np.allclose(m[:3, :3], LPS_TO_RAS @ oblique.direction @ np.diag(oblique.spacing), atol=1e-12)

    label_node = image_to_volume(scene, labels, "labels", labelmap=True)
    assert label_node.IsA("vtkMRMLLabelMapVolumeNode")
    assert_same_image(volume_to_image(label_node), labels)
    colours = label_node.GetDisplayNode().GetColorNode()
    assert colours.GetColorName(20) == "L1" and colours.GetAttribute(COLOUR_TABLE_ROLE) == "vertebrae"

    boolean = volume_to_image(image_to_volume(scene, labels.with_array(labels.array == 20), "L1 mask"))
    assert boolean.array.dtype == np.uint8 and boolean.array.sum() == (labels.array == 20).sum()


def test_volume_under_linear_transform_is_returned_where_shown(scene):
    image = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    node = image_to_volume(scene, image, "moved")
    rigid = np.eye(4)
    rigid[:3, :3] = rotation((0, 0, 1), 30)
    rigid[:3, 3] = (5.0, -7.0, 12.5)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(vtk_matrix(rigid))
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = volume_to_image(node)
    voxel = np.array([10.0, 20.0, 30.0])
    expected_ras = rigid[:3, :3] @ lps_to_ras(image.index_to_lps(voxel)) + rigid[:3, 3]
    assert np.allclose(lps_to_ras(moved.index_to_lps(voxel)), expected_ras, atol=1e-6)

    shear = np.eye(4)
    shear[0, 1] = 0.3
    transform.SetMatrixTransformToParent(vtk_matrix(shear))
    with pytest.raises(InputError, match="shears"):
        volume_to_image(node)


def test_bad_volumes_are_refused(scene, lidc):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no voxels"):
        volume_to_image(empty)
    _, labels = lidc
    with pytest.raises(InputError, match="whole numbers"):
        labelmap_to_segmentation(scene, labels.with_array(labels.array + 0.5))


# -- segmentations ------------------------------------------------------------------------------------------------
def make_segmentation(scene, lidc, **kwargs):
    ct, labels = lidc
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "LIDC-IDRI-0001"), "CT chest")
    volume = image_to_volume(scene, ct, "CT")
    sh.CreateItem(study, volume)
    return volume, labelmap_to_segmentation(scene, labels, reference_volume=volume, **kwargs)


def segments(seg_node):
    segmentation = seg_node.GetSegmentation()
    return [segmentation.GetSegment(i) for i in _segment_ids(seg_node)]


def test_segments_are_named_coloured_coded_and_placed(scene, lidc):
    volume, seg = make_segmentation(scene, lidc, vertebrae={22: {"complete": False, "regressed_label": 21.62},
                                                            20: {"complete": True}})
    present = sorted(int(v) for v in np.unique(lidc[1].array) if v)
    assert [s.GetName() for s in segments(seg)] == [VERTEBRAE[v].name for v in present]   # C5 ... L3
    for segment in segments(seg):
        v = VERTEBRAE[int(segment_tag(segment, TAG_LABEL))]
        assert segment.GetName() == v.name
        assert np.allclose(segment.GetColor(), v.color)
        entry = slicer.vtkSlicerTerminologyEntry()
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
        assert entry.GetTerminologyContextName() == TERMINOLOGY_CONTEXT
        category, kind = entry.GetCategoryObject(), entry.GetTypeObject()
        assert (category.GetCodingSchemeDesignator(), category.GetCodeValue()) == CATEGORY_CODE[:2]
        assert (kind.GetCodingSchemeDesignator(), kind.GetCodeValue(), kind.GetCodeMeaning()) == \
            ("SCT", v.snomed_code, v.snomed_meaning)
    by_name = {s.GetName(): s for s in segments(seg)}
    display = seg.GetDisplayNode()
    l3_id = seg.GetSegmentation().GetSegmentIdBySegmentName("L3")
    assert segment_tag(by_name["L3"], TAG_COMPLETENESS) == "incomplete"
    assert segment_tag(by_name["L3"], STATUS_TAG) == "flagged"
    assert float(segment_tag(by_name["L3"], "SpineSeg.RegressedLabel")) == 21.62
    assert display.GetSegmentOpacity3D(l3_id) == INCOMPLETE_OPACITY
    assert segment_tag(by_name["L1"], TAG_COMPLETENESS) == "complete"
    assert segment_tag(by_name["L1"], STATUS_TAG) is None
    # the Segmentations module's own export defaults to the SpineSeg table; no temporary node is left behind
    assert seg.GetLabelmapConversionColorTableNode() is vertebra_colour_table(scene)
    assert not [scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())
                if scene.GetNthNode(i).GetName().startswith("Vertebrae ")]
    with pytest.raises(SpineSegError, match="no segment for L5"):
        annotate_segments(seg, {24: {"complete": False}})

    # reference geometry is the CT's grid, and the segmentation sits beside the CT in its study
    geometry = seg.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    grid = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, grid, False)
    m = vtk.vtkMatrix4x4()
    grid.GetImageToWorldMatrix(m)
    assert np.allclose([[m.GetElement(r, c) for c in range(4)] for r in range(4)], node_matrix(volume), atol=1e-6)
    assert grid.GetDimensions() == tuple(lidc[0].size)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(seg))
    assert parent == sh.GetItemParent(sh.GetItemByDataNode(volume)) and sh.GetItemName(parent) == "CT chest"


def test_export_gives_back_the_original_ids(scene, lidc):
    volume, seg = make_segmentation(scene, lidc)
    exported = segmentation_to_image(seg, reference_volume=volume)
    assert exported.same_grid(lidc[1])
    assert np.array_equal(exported.array, lidc[1].array)
    # Slicer's own rule with the scene's SpineSeg colour table (what the GUI export does) picks the same ids
    ids = vtk.vtkStringArray()
    seg.GetSegmentation().GetSegmentIDs(ids)
    values = vtk.vtkIntArray()
    slicer.vtkSlicerSegmentationsModuleLogic.GetLabelValuesFromColorNode(seg, vertebra_colour_table(scene), ids,
                                                                         values)
    names = [seg.GetSegmentation().GetSegment(ids.GetValue(i)).GetName() for i in range(ids.GetNumberOfValues())]
    assert [values.GetValue(i) for i in range(values.GetNumberOfValues())] == [by_name(n).label for n in names]


def test_ids_stay_stable_when_segments_are_edited(scene, lidc):
    volume, seg = make_segmentation(scene, lidc)
    segmentation = seg.GetSegmentation()
    sid = segmentation.GetSegmentIdBySegmentName
    expected = lidc[1].array.copy()
    segmentation.GetSegment(sid("L1")).SetName("L1 fractured")          # renamed: terminology still says L1
    segmentation.RemoveSegment(sid("T5"))                                 # removed
    expected[expected == 12] = 0
    segmentation.SetSegmentIndex(sid("L3"), 0)                            # reordered
    segmentation.SetSegmentIndex(sid("C5"), segmentation.GetNumberOfSegments() - 1)
    t7 = segmentation.GetSegment(sid("T7"))                               # terminology cleared: the name decides
    t7.RemoveTag(t7.GetTerminologyEntryTagName())
    t8 = segmentation.GetSegment(sid("T8"))                               # Slicer's default terminology + name
    t8.SetTerminology(slicer.vtkSegment().GetTerminology())
    exported = segmentation_to_image(seg, reference_volume=volume)
    assert np.array_equal(exported.array, expected)
    assert segment_labels(seg)[sid("L1 fractured")] == 20
    # exporting into a label map shown with the scene's SpineSeg table leaves that table as it was
    target = image_to_volume(scene, lidc[1], "target", labelmap=True)
    segmentation_to_labelmap(seg, volume, node=target)
    assert np.array_equal(volume_to_image(target).array, expected)
    assert vertebra_colour_table(scene).GetColorName(20) == "L1"

    # a correction by renaming alone contradicts the terminology: refused, not guessed
    segmentation.GetSegment(sid("L2")).SetName("L3 (was L2)")
    segmentation.GetSegment(sid("L3")).SetName("L2")
    with pytest.raises(SpineSegError, match="coded as L3 .* named L2"):
        segmentation_to_image(seg, reference_volume=volume)
    segmentation.GetSegment(sid("L2")).SetTerminology(terminology_entry(21))   # fixed by picking terminology
    segmentation.GetSegment(sid("L3 (was L2)")).SetTerminology(terminology_entry(22))
    swapped = segmentation_to_image(seg, reference_volume=volume).array
    assert np.array_equal(swapped[expected == 21], np.full((expected == 21).sum(), 22))
    assert np.array_equal(swapped[expected == 22], np.full((expected == 22).sum(), 21))

    # segments that identify no vertebra, or the same one twice, are errors naming them
    new = segmentation.AddEmptySegment("", "Segment_1")
    with pytest.raises(SpineSegError, match="Segment_1"):
        segmentation_to_image(seg, reference_volume=volume)
    segmentation.GetSegment(new).SetName("T9")
    with pytest.raises(SpineSegError, match="both T9"):
        segmentation_to_image(seg, reference_volume=volume)


def test_ids_outside_the_table_round_trip(scene):
    """tptbox C6 MR: vertebrae 5-7 plus discs 105-107 and endplates 205-207 (ids no table names)."""
    folder = data_path("mr", "tptbox-c6")
    image, labels = read_image(folder / "image.nii.gz"), read_image(folder / "vertebrae.nii.gz")
    volume = image_to_volume(scene, image, "MR")
    seg = labelmap_to_segmentation(scene, labels, reference_volume=volume)
    names = [s.GetName() for s in segments(seg)]
    assert names == ["C5", "C6", "C7", "label 105", "label 106", "label 205", "label 206", "label 207"]
    assert not segments(seg)[3].HasTerminology()
    exported = segmentation_to_image(seg, reference_volume=volume)
    assert np.array_equal(exported.array, labels.array) and exported.same_grid(labels)


def test_saved_segmentation_reloads_intact(scene, lidc, tmp_path):
    volume, seg = make_segmentation(scene, lidc, vertebrae={8: {"complete": False}})
    path = save_node(seg, tmp_path / "vertebrae.seg.nrrd")
    with pytest.raises(OutputExistsError):
        save_node(seg, path)
    save_node(seg, path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vertebrae.seg.nrrd"]

    other = new_scene()
    loaded = load_segmentation(other, path)
    original, reloaded = segments(seg), segments(loaded)
    assert [s.GetName() for s in reloaded] == [s.GetName() for s in original]
    for a, b in zip(original, reloaded):
        assert np.allclose(a.GetColor(), b.GetColor(), atol=1e-6)
        assert a.GetTerminology() == b.GetTerminology()
        for tag in (TAG_LABEL, TAG_COMPLETENESS, STATUS_TAG):
            assert segment_tag(a, tag) == segment_tag(b, tag)
    assert segment_tag(reloaded[3], TAG_COMPLETENESS) == "incomplete"     # T1
    reference = image_to_volume(other, lidc[0], "CT")
    assert np.array_equal(segmentation_to_image(loaded, reference_volume=reference).array, lidc[1].array)
    with pytest.raises(InputError, match="no such file"):
        load_segmentation(other, tmp_path / "missing.seg.nrrd")


# -- markups, tables, files ---------------------------------------------------------------------------------------
def vertebra_centres_lps(labels: Image) -> np.ndarray:
    ids = [v for v in np.unique(labels.array) if v]
    centres = []
    for v in ids:
        k, j, i = np.nonzero(labels.array == v)
        centres.append(labels.index_to_lps([i.mean(), j.mean(), k.mean()]))
    return np.array(centres)


def test_curve_and_points_hold_the_given_lps_points(scene, lidc, tmp_path):
    centres = vertebra_centres_lps(lidc[1])        # C5 ... L3 body centres, LPS mm
    curve = add_curve(scene, centres, "Centreline")
    ras = slicer.util.arrayFromMarkupsControlPoints(curve)
    assert np.allclose(ras, centres * [-1, -1, 1], atol=1e-9)
    assert np.allclose(control_points_lps(curve), centres, atol=1e-9)
    assert np.isclose(curve.GetCurveLengthWorld(), np.linalg.norm(np.diff(centres, axis=0), axis=1).sum(), rtol=1e-6)

    # the .mrk.json file states LPS and holds the LPS numbers; it loads back into the same curve
    path = save_node(curve, tmp_path / "centreline.mrk.json")
    markup = json.loads(path.read_text(encoding="utf-8"))["markups"][0]
    assert markup["coordinateSystem"] == "LPS"
    assert np.allclose([p["position"] for p in markup["controlPoints"]], centres, atol=1e-6)
    assert np.allclose(control_points_lps(load_markups(scene, path)), centres, atol=1e-6)

    points = add_points(scene, centres, "DP points", labels=[f"p{i}" for i in range(len(centres))])
    assert np.allclose(control_points_lps(points), centres, atol=1e-9)
    assert points.GetNthControlPointLabel(2) == "p2"

    parabolas = [centres[i] + np.stack([np.linspace(-20, 20, 9), 0.02 * np.linspace(-20, 20, 9) ** 2,
                                        np.zeros(9)], axis=1) for i in range(len(centres))]
    folder, nodes = add_curves(scene, parabolas, "Parabolas", next_to=curve)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetNumberOfItemChildren(folder) == len(parabolas)
    assert all(np.allclose(control_points_lps(n), p) for n, p in zip(nodes, parabolas))
    with pytest.raises(InputError, match="N x 3"):
        add_curve(scene, centres[:, :2], "bad")


def test_box_has_the_given_centre_size_and_axes(scene, tmp_path):
    axes = rotation((0.2, 1, 0.4), 35)                      # columns: box axes in LPS
    centre, size = np.array([12.5, -40.0, 101.25]), np.array([96.0, 80.0, 64.0])
    box = add_box(scene, centre, size, axes, "patch 3")
    got_centre, got_size, got_axes = box_lps(box)
    assert np.allclose(got_centre, centre) and np.allclose(got_size, size) and np.allclose(got_axes, axes)
    assert np.allclose(box.GetCenter(), centre * [-1, -1, 1])
    # points just inside / outside each face, in RAS, by Slicer's own test
    for a in range(3):
        for sign in (-1, 1):
            inside = centre + sign * 0.49 * size[a] * axes[:, a]
            outside = centre + sign * 0.51 * size[a] * axes[:, a]
            assert box.IsPointInROIWorld(lps_to_ras(inside))
            assert not box.IsPointInROIWorld(lps_to_ras(outside))
    path = save_node(box, tmp_path / "patch.mrk.json")
    loaded = load_markups(scene, path)
    assert loaded.IsA("vtkMRMLMarkupsROINode")
    assert all(np.allclose(x, y) for x, y in zip(box_lps(loaded), (centre, size, axes)))
    mirrored = axes.copy()
    mirrored[:, 2] *= -1                                      # left-handed: same box, third axis reversed
    assert np.allclose(box_lps(add_box(scene, centre, size, mirrored))[2], axes)
    with pytest.raises(InputError, match="orthonormal"):
        add_box(scene, centre, size, axes * 2)


def test_table_columns_are_typed(scene, lidc, tmp_path):
    labels = lidc[1]
    rows = []
    for v in (int(x) for x in np.unique(labels.array) if x):
        voxels = int((labels.array == v).sum())
        rows.append({"label": v, "name": VERTEBRAE[v].name, "voxels": voxels,
                     "volume_ml": voxels * labels.voxel_volume_mm3 / 1000.0, "complete": v != 22,
                     "hd95_mm": None if v == 5 else 1.5 * v, "note": None if v != 22 else "cut by FOV"})
    table = add_table(scene, rows, "Vertebrae")
    types = {table.GetColumnName(c): table.GetColumnType(table.GetColumnName(c))
             for c in range(table.GetNumberOfColumns())}
    assert types == {"label": vtk.VTK_INT, "name": vtk.VTK_STRING, "voxels": vtk.VTK_INT, "volume_ml": vtk.VTK_DOUBLE,
                     "complete": vtk.VTK_BIT, "hd95_mm": vtk.VTK_DOUBLE, "note": vtk.VTK_STRING}
    assert table.GetColumnUnitLabel("volume_ml") == "mL" and table.GetColumnUnitLabel("hd95_mm") == "mm"
    back = table_rows(table)
    assert np.isnan(back[0]["hd95_mm"]) and back[0]["note"] == ""
    for got, given in zip(back, rows):
        assert got["label"] == given["label"] and got["complete"] == given["complete"]
        assert got["volume_ml"] == pytest.approx(given["volume_ml"], rel=1e-12)

    path = save_node(table, tmp_path / "vertebrae.tsv")
    assert (tmp_path / "vertebrae.schema.tsv").exists()
    reloaded = table_rows(load_table(scene, path))
    assert [r["name"] for r in reloaded] == [r["name"] for r in rows]
    assert [r["complete"] for r in reloaded] == [r["complete"] for r in rows]
    assert reloaded[3]["volume_ml"] == pytest.approx(rows[3]["volume_ml"], rel=1e-6)

    metrics = add_table(scene, {"dsc": 0.912, "hd95_mm": 2.4, "cases": 3}, "Metrics")
    assert table_rows(metrics) == [{"dsc": 0.912, "hd95_mm": 2.4, "cases": 3}]


def test_results_folder_and_scene_bundle(scene, tmp_path):
    folder = data_path("ct", "tptbox-l3")
    ct, labels = read_image(folder / "image.nii.gz"), read_image(folder / "vertebrae.nii.gz")
    volume = image_to_volume(scene, ct, "CT")
    seg = labelmap_to_segmentation(scene, labels, reference_volume=volume)
    curve = add_curve(scene, vertebra_centres_lps(labels), "Centreline", next_to=volume)
    table = add_table(scene, [{"vertebra": "L3", "volume_ml": 41.0}], "Vertebrae table")
    out = tmp_path / "case"
    written = save_results(out, [seg, curve, table], reference_volume=volume, scene=scene, bundle="case.mrb")
    assert sorted(p.name for p in out.iterdir()) == [
        "Centreline.mrk.json", "Vertebrae table.schema.tsv", "Vertebrae table.tsv", "Vertebrae.nii.gz",
        "Vertebrae.seg.nrrd", "case.mrb"]
    ids = read_image(written["Vertebrae label map"])
    assert np.array_equal(ids.array, labels.array) and ids.same_grid(labels)

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OutputExistsError):
        save_results(out, [seg, curve], reference_volume=volume, scene=scene, bundle="case.mrb")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    names = zipfile.ZipFile(written["scene"]).namelist()
    assert "case/case.mrml" in names and "case/Data/Vertebrae.seg.nrrd" in names and "case/Data/CT.nrrd" in names
    reopened = new_scene()
    read_scene_bundle(reopened, written["scene"])
    segs = reopened.GetNodesByClass("vtkMRMLSegmentationNode")
    assert segs.GetNumberOfItems() == 1
    assert [s.GetName() for s in segments(segs.GetItemAsObject(0))] == [s.GetName() for s in segments(seg)]
    curves = reopened.GetNodesByClass("vtkMRMLMarkupsCurveNode")
    assert curves.GetNumberOfItems() == 1
    assert np.allclose(control_points_lps(curves.GetItemAsObject(0)), vertebra_centres_lps(labels), atol=1e-6)
    volumes = reopened.GetNodesByClass("vtkMRMLScalarVolumeNode")
    assert volumes.GetNumberOfItems() == 1 and volume_to_image(volumes.GetItemAsObject(0)).same_grid(ct)


# -- label resources ----------------------------------------------------------------------------------------------
def test_committed_label_files_are_up_to_date(tmp_path):
    """The files in resources/labels are what scripts/make_label_files.py writes from core/labels.py (its
    ``--check`` says so too), and the .csv writer agrees byte for byte with Slicer's own colour-table writer."""
    committed = resource_dir("labels")
    for path in write_label_files(tmp_path):
        assert (committed / path.name).read_bytes() == path.read_bytes(), \
            f"{path.name} is out of date: run python scripts/make_label_files.py --force"
    with pytest.raises(OutputExistsError):
        write_label_files(tmp_path)
    check = [sys.executable, str(REPO / "scripts" / "make_label_files.py"), "--check"]
    assert subprocess.run(check, capture_output=True, timeout=60).returncode == 0
    (tmp_path / CSV).write_text("stale\n")
    stale = subprocess.run([*check[:2], str(tmp_path), "--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and CSV in stale.stdout
    storage = slicer.vtkMRMLColorTableStorageNode()
    storage.SetFileName(str(tmp_path / "by-slicer.csv"))
    assert storage.WriteData(fill_colour_table(slicer.vtkMRMLColorTableNode()))
    assert (tmp_path / "by-slicer.csv").read_bytes() == (committed / CSV).read_bytes()


def test_committed_label_files_load_in_slicer():
    committed = resource_dir("labels")
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    context = terminologies.LoadTerminologyFromFile(str(committed / "SpineSeg-vertebrae.term.json"))
    assert context == TERMINOLOGY_CONTEXT
    for v in VERTEBRAE.values():
        entry = slicer.vtkSlicerTerminologyEntry()
        if v.region_code:  # T13 / L6: the generic type "Vertebra", told apart by the anatomic region
            assert not terminologies.FindTypeInTerminologyBy3dSlicerLabel(context, v.name, entry)
            assert terminologies.FindTypeInTerminologyBy3dSlicerLabel(context, "Vertebra", entry)
            assert entry.GetTypeObject().GetCodeValue() == v.snomed_code == "51282000"
            continue
        assert terminologies.FindTypeInTerminologyBy3dSlicerLabel(context, v.name, entry)
        assert entry.GetTypeObject().GetCodeValue() == v.snomed_code
        assert tuple(entry.GetTypeObject().GetRecommendedDisplayRGBValue()) == v.color_255

    scene = new_scene()
    for name in ("SpineSeg-vertebrae.ctbl", "SpineSeg-vertebrae.csv"):
        table = scene.AddNewNodeByClass("vtkMRMLColorTableNode")
        storage = slicer.vtkMRMLColorTableStorageNode()
        storage.SetFileName(str(committed / name))
        assert storage.ReadData(table)
        for v in VERTEBRAE.values():
            assert table.GetColorName(v.label) == v.name
            rgba = [0.0] * 4
            table.GetColor(v.label, rgba)
            assert np.allclose(rgba[:3], v.color, atol=1.01 / 255)     # 8-bit colours in the files
        assert not table.GetColorDefined(27)
    assert table.GetContainsTerminology()
    assert slicer.vtkSlicerTerminologiesModuleLogic.GetColorIndexByTerminology(table, terminology_entry(23)) == 23


def test_transitional_vertebrae_keep_their_ids_by_anatomic_region(lidc):
    """T13 and L6 share the SNOMED type "Vertebra"; the anatomic region tells them apart even after renaming."""
    labels = lidc[1]
    array = labels.array.copy()
    array[array == 19] = 28   # call T12 a T13
    array[array == 22] = 25   # and L3 an L6 (a made-up spine, only the codes matter here)
    image = labels.with_array(array)
    scene = new_scene()
    volume = image_to_volume(scene, image, "labels")
    seg = labelmap_to_segmentation(scene, image, volume)
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        if segment.GetName() in ("T13", "L6"):
            assert "SCT^51282000^Vertebra" in segment.GetTerminology()
            region = "Thoracic spine" if segment.GetName() == "T13" else "Lumbar spine"
            assert region in segment.GetTerminology()
            segment.SetName(f"renamed {i}")
    out = segmentation_to_image(seg, volume)
    assert np.array_equal(out.array, array)
