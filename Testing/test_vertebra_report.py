"""The per-vertebra report (heights, Genant-style grade, trabecular HU, screening hint, completeness) and its
CSV / JSON / PNG files, on real CTs with their reference vertebra labels (TotalSegmentator, automatic).

Figures measured (``report = vertebra_report(labels, ct); print(report.format_table())``):

* LIDC-IDRI-0001 (contrast chest CT, 0.7x0.7x2.5 mm, C5-L3): complete T1-L1 heights 15.0-25.4 mm, every graded
  vertebra grade 0 (largest loss 13 %, T7's kyphotic wedge A/P 0.87); trabecular mean HU of T1-L3 86-174 (T1
  174, L1 100, L2 86), SD 43-89 HU; C5 (a sliver at the top) has no core; C5-C7, L2, L3 touch the grid border.
* Erasing the anterior-top wedge of L1 (a plane through the posterior-top corner dropping 0.8 x the posterior
  height to the front): A/P 0.89 -> 0.65, grade 0 -> 2 (35 % wedge loss); T12 stays 0.
* totalseg-example-3mm (abdominal CT, 3 mm, T11-S1): L1-L5 heights 23.5-30.9 mm, grades 0; trabecular HU
  120-140 (L1 120).
"""

from __future__ import annotations

import csv
import json
import math
import struct

import numpy as np
import pytest
from conftest import data_path

from SpineSegLib.core.errors import InputError, OutputExistsError
from SpineSegLib.core.image import read_image
from SpineSegLib.core.labels import by_name
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.evaluation.measurements import _frame
from SpineSegLib.evaluation.report_sheet import SHEET_SIZE_PX
from SpineSegLib.evaluation.vertebra_report import (
    SCREENING_CAVEAT, TABLE_COLUMNS, genant_grade, screening_hint, vertebra_report,
)

LIDC_NAMES = ["C5", "C6", "C7"] + [f"T{i}" for i in range(1, 13)] + ["L1", "L2", "L3"]
LIDC_COMPLETE = [f"T{i}" for i in range(1, 13)] + ["L1"]


def case(name: str):
    folder = data_path("ct", name)
    return read_image(folder / "vertebrae.nii.gz"), read_image(folder / "image.nii.gz")


@pytest.fixture(scope="module")
def lidc():
    labels, ct = case("lidc-idri-0001")
    report = vertebra_report(labels, ct)
    return labels, ct, report, {r.name: r for r in report.rows}


def test_lidc_rows_heights_and_grades(lidc):
    labels, _, report, rows = lidc
    assert [r.name for r in report.rows] == LIDC_NAMES                              # top to bottom
    assert [n for n, r in rows.items() if r.complete] == LIDC_COMPLETE              # C5-C7, L2, L3 touch the border
    for name in LIDC_COMPLETE:
        r = rows[name]
        assert r.voxels == int((labels.array == r.label).sum())
        for h in (r.anterior_height_mm, r.middle_height_mm, r.posterior_height_mm):
            assert 13.0 <= h <= 28.0, (name, h)
        assert r.wedge_ratio == pytest.approx(r.anterior_height_mm / r.posterior_height_mm)
        assert r.biconcave_ratio == pytest.approx(r.middle_height_mm / r.posterior_height_mm)
        assert 0.8 <= r.crush_ratio <= 1.2, name
        assert r.genant_grade == 0 and r.height_loss_pct < 18.0, (name, r.height_loss_pct)
    # the crush ratio compares with the complete neighbours only: T1's are T2 (C7 is cut)
    assert rows["T1"].crush_ratio == pytest.approx(rows["T1"].posterior_height_mm / rows["T2"].posterior_height_mm)
    for name in ("C5", "C6", "C7", "L2", "L3"):
        assert rows[name].genant_grade is None and "incomplete" in rows[name].grade_note
        assert "border" in rows[name].evidence[0]


def test_lidc_trabecular_attenuation_and_hints(lidc):
    _, ct, report, rows = lidc
    for name in LIDC_COMPLETE + ["L2", "L3"]:
        r = rows[name]
        assert 75.0 <= r.trabecular_mean_hu <= 200.0, (name, r.trabecular_mean_hu)   # contrast CT: raised
        assert abs(r.trabecular_median_hu - r.trabecular_mean_hu) < 20.0, name
        assert 20.0 < r.trabecular_sd_hu < 100.0, name
        assert r.trabecular_voxels > 800, name
        # the core is a part of the body, far below the whole vertebra's mean (cortex, endplates left out)
        own = report.labels.array == r.label
        assert r.trabecular_mean_hu < float(ct.array[own].mean()) - 100.0, name
    assert rows["L1"].trabecular_voxels > 2 * rows["T1"].trabecular_voxels          # larger bodies, larger cores
    c5 = rows["C5"]
    assert math.isnan(c5.trabecular_mean_hu) and "too thin" in c5.trabecular_note and c5.screening_hint == ""
    assert rows["L1"].screening_hint == "<= 110 HU: osteoporosis likely (specific threshold)"      # 100 HU
    assert rows["T1"].screening_hint == "> 160 HU: above the threshold [L1 threshold]"             # 174 HU
    assert rows["T4"].screening_hint.startswith("<= 160 HU: low")
    assert report.header["screening"]["caveat"] == SCREENING_CAVEAT
    assert report.header["screening"]["l1"].startswith("L1 is in the report: 100 HU")


def wedged(labels, row, drop: float = 0.8):
    """``labels`` with the anterior-top wedge of ``row``'s vertebra erased: above a plane through the
    posterior-top corner of the body that falls by ``drop`` x the posterior height to its front."""
    s, a, _ = _frame(row.axis_lps)
    kji = np.argwhere(labels.array == row.label)
    rel = labels.index_to_lps(kji[:, ::-1].astype(float)) - np.asarray(row.centroid_lps)
    u_s, u_a = rel @ s, rel @ a
    back = u_a.max() - row.body_depth_mm
    top = u_s[u_a > back].max()
    ramp = np.clip((u_a - back) / row.body_depth_mm, 0.0, 1.0)
    cut = (u_a > back) & (u_s > top - drop * row.posterior_height_mm * ramp)
    array = labels.array.copy()
    array[tuple(kji[cut].T)] = 0
    return labels.with_array(array)


def test_a_synthetic_wedge_deformity_raises_the_grade(lidc):
    labels, ct, _, rows = lidc
    before = rows["L1"]
    after = {r.name: r for r in vertebra_report(wedged(labels, before), ct).rows}
    l1 = after["L1"]
    assert before.genant_grade == 0 and l1.genant_grade >= 2, l1.grade_note
    assert l1.deformity_type == "wedge" and l1.wedge_ratio < 0.75 < before.wedge_ratio
    assert l1.posterior_height_mm == pytest.approx(before.posterior_height_mm, abs=1.0)
    assert "wedge loss" in l1.grade_note
    assert after["T12"].genant_grade == 0


def test_totalseg_3mm_report():
    labels, ct = case("totalseg-example-3mm")
    report = vertebra_report(labels, ct)
    rows = {r.name: r for r in report.rows}
    assert list(rows) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    for name in ("L1", "L2", "L3", "L4", "L5"):
        r = rows[name]
        for h in (r.anterior_height_mm, r.middle_height_mm, r.posterior_height_mm):
            assert 20.0 <= h <= 34.0, (name, h)
        assert r.genant_grade == 0, (name, r.grade_note)
        assert 100.0 <= r.trabecular_mean_hu <= 170.0, (name, r.trabecular_mean_hu)
    assert rows["S1"].genant_grade is None and "sacrum" in rows["S1"].grade_note
    assert math.isnan(rows["T11"].trabecular_mean_hu) and "under the" in rows["T11"].trabecular_note
    # the CT on another grid with the same voxels (axes flipped): put onto the labels' grid with a note
    flipped = vertebra_report(labels, to_canonical(ct).image)
    assert flipped.header["notes"] and [r.trabecular_mean_hu for r in flipped.rows][2:] == \
        pytest.approx([r.trabecular_mean_hu for r in report.rows][2:])


def test_completeness_from_the_caller(lidc):
    labels, ct, _, _ = lidc
    small = labels.with_array(np.where(np.isin(labels.array, [19, 20, 21]), labels.array, 0))   # T12, L1, L2
    info = {20: {"complete": False, "evidence": ["network completeness 0.31"], "probability": 0.31},
            "L2": {"complete": True, "evidence": "traversal reached its lower end"}}
    report = vertebra_report(small, ct, info=info)
    rows = {r.name: r for r in report.rows}
    assert not rows["L1"].complete and rows["L1"].evidence == ["network completeness 0.31"]
    assert rows["L1"].info == {"probability": 0.31} and rows["L1"].genant_grade is None
    assert rows["L2"].complete and rows["L2"].evidence == ["traversal reached its lower end"]
    assert rows["L2"].genant_grade == 0 and math.isnan(rows["L2"].crush_ratio)    # its neighbour L1 is incomplete
    assert rows["T12"].complete and "border" in rows["T12"].evidence[0]          # not in info: the grid rule
    assert report.header["completeness_source"] == "caller"
    with pytest.raises(InputError, match="neither a label id nor a vertebra name"):
        vertebra_report(small, ct, info={"L9": {"complete": True}})
    with pytest.raises(InputError, match="no vertebra"):
        vertebra_report(labels.with_array(np.zeros_like(labels.array)), ct)


def test_grade_and_hint_thresholds():
    assert [genant_grade(x) for x in (0.0, 0.199, 0.20, 0.249, 0.25, 0.40, 0.401)] == [0, 0, 1, 1, 2, 2, 3]
    assert screening_hint(110.0, 20).startswith("<= 110 HU: osteoporosis likely")
    assert screening_hint(110.5, 20).startswith("<= 160 HU: low, osteoporosis possible")
    assert screening_hint(160.5, 20) == "> 160 HU: above the threshold"
    assert screening_hint(90.0, 22).endswith("[L1 threshold]")
    assert screening_hint(math.nan, 20) == ""


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_files_are_written_and_never_replaced_without_force(lidc, tmp_path):
    _, _, report, _ = lidc
    out = tmp_path / "report"
    paths = report.write(out)
    assert [p.name for p in paths] == ["vertebrae.csv", "vertebrae.json", "vertebrae.png"]
    with open(paths[0], newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == LIDC_NAMES
    assert table[15]["genant_grade"] == "0" and table[0]["trabecular_mean_hu"] == ""     # NaN: an empty cell
    assert "border" in table[0]["evidence"] and float(table[15]["centroid_s_mm"]) < float(table[3]["centroid_s_mm"])
    data = json.loads(paths[1].read_text(encoding="utf-8"))
    assert data["header"]["screening"]["caveat"] == SCREENING_CAVEAT
    assert data["vertebrae"][15]["is_l1"] and data["vertebrae"][0]["trabecular_mean_hu"] is None
    assert png_size(paths[2]) == SHEET_SIZE_PX and paths[2].stat().st_size > 100_000
    before = {p: p.read_bytes() for p in paths}
    with pytest.raises(OutputExistsError):
        report.write(out)
    assert {p: p.read_bytes() for p in paths} == before
    # one existing file refuses the whole report before anything is written
    other = tmp_path / "other"
    other.mkdir()
    (other / "vertebrae.png").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="vertebrae.png"):
        report.write(other)
    assert sorted(p.name for p in other.iterdir()) == ["vertebrae.png"]
    assert report.write(other, force=True)[2].read_bytes() != b"old"
    # without images: the CSV and the JSON only
    bare = type(report)(report.rows, report.header)
    assert [p.name for p in bare.write(tmp_path / "bare")] == ["vertebrae.csv", "vertebrae.json"]


def test_rows_for_table(lidc):
    _, _, report, _ = lidc
    table = report.rows_for_table()
    assert len(table) == len(LIDC_NAMES)
    assert list(table[0]) == [title for title, *_ in TABLE_COLUMNS]
    l1 = table[LIDC_NAMES.index("L1")]
    assert l1["Vertebra"] == "L1" and l1["Genant grade"] == 0 and l1["Complete"] is True
    assert l1["Trabecular HU"] == round(l1["Trabecular HU"]) and l1["Wedge A/P"] == round(l1["Wedge A/P"], 2)
    assert table[0]["Trabecular HU"] is None and table[0]["Genant grade"] is None


def test_a_body_with_gaps_along_its_height_is_not_graded(lidc):
    """A body segmented as pieces (a gap across its middle, as the classical mask leaves in low-density
    lumbar bodies) would measure as a crush fracture: it is not graded, and the note says why."""
    labels, ct, _, rows = lidc
    array = labels.array.copy()
    l1 = array == by_name("L1").label
    middle = int(round(labels.lps_to_index(rows["L1"].centroid_lps)[2]))   # the body's mid-height slice
    array[middle - 1:middle + 1][l1[middle - 1:middle + 1]] = 0      # a 5 mm gap across the whole vertebra
    after = {r.name: r for r in vertebra_report(labels.with_array(array), ct).rows}
    assert rows["L1"].height_continuity >= 0.95
    assert after["L1"].height_continuity < 0.9
    assert after["L1"].genant_grade is None and "gaps along its height" in after["L1"].grade_note
    assert after["T12"].genant_grade == 0                            # its neighbours stay graded


def test_uncertain_names_are_carried_into_the_hints(lidc):
    """When the names come from a convention (no rib, no pelvis in view), "L1" may be another vertebra: the
    header and every screening hint say so."""
    labels, ct, _, _ = lidc
    report = vertebra_report(labels, ct, names_uncertain="no ribs and no other anatomical anchor in view")
    assert report.header["names"] == {"certain": False, "note": "no ribs and no other anatomical anchor in view"}
    assert report.header["screening"]["l1"].startswith("names uncertain")
    hints = [r.screening_hint for r in report.rows if r.screening_hint]
    assert hints and all(h.endswith("[names uncertain]") for h in hints)
