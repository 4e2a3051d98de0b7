"""Per-vertebra evaluation (SpineSegLib.evaluation.instance_metrics) on real label maps.

Every expected number is derived in the test from voxel counts or geometry, never by calling the
function under test.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import data_path

from SpineSegLib.core.errors import InputError, OutputExistsError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.evaluation.completeness import parse_completeness, reference_completeness
from SpineSegLib.evaluation.identification import kappa_categories, weighted_kappa
from SpineSegLib.evaluation.instance_metrics import DETECTION_DICE, evaluate_instance_images, evaluate_instances, summarize
from SpineSegLib.evaluation.metrics import binary_metrics
from SpineSegLib.evaluation.reports import format_case_table, format_summary, write_csv, write_json


@pytest.fixture(scope="module")
def verse004() -> Image:  # T9-L5 (ids 16-24), 1 x 1 x 2 mm, no vertebra touches the border
    return read_image(data_path("masks", "verse", "sub-verse004_seg-vert_msk.nii.gz"))


@pytest.fixture(scope="module")
def verse010() -> Image:  # L1-L5 (ids 20-24), 1 mm
    return read_image(data_path("masks", "verse", "sub-verse010_seg-vert_msk.nii.gz"))


@pytest.fixture(scope="module")
def panoptica():
    folder = data_path("mr", "panoptica-labels")
    return {name: read_image(folder / f"{name}.nii.gz") for name in
            ("matched_instance_ref", "matched_instance_pred", "unmatched_instance_pred")}


def vertebrae_only(array):
    """The panoptica maps also hold discs (1xx) and endplates (2xx): keep the vertebra ids < 100."""
    return np.where(array < 100, array, 0)


def count(array, value) -> int:
    return int(np.count_nonzero(array == value))


# -- identical, missed, relabelled, extra ---------------------------------------------------------
def test_prediction_equal_to_reference_is_perfect(verse004):
    res = evaluate_instances(verse004.array, verse004.array, verse004.spacing)
    assert [v.ref_id for v in res.vertebrae] == list(range(16, 25))
    for v in res.vertebrae:
        assert (v.pred_id, v.dice, v.assd_mm, v.hd95_mm, v.status) == (v.ref_id, 1.0, 0.0, 0.0, "ok")
        assert v.ref_voxels == v.pred_voxels == v.overlap_voxels == count(verse004.array, v.ref_id)
    assert res.extras == []
    assert (res.detection_rate, res.overlap_rate, res.id_accuracy, res.kappa, res.spine_dice) == (1, 1, 1, 1, 1)


def test_deleted_vertebra_is_missed(verse004):
    ref = verse004.array
    pred = np.where(ref == 20, 0, ref)
    res = evaluate_instances(pred, ref, verse004.spacing)
    by_id = {v.ref_id: v for v in res.vertebrae}
    l1 = by_id[20]
    assert l1.status == "missed" and l1.pred_id is None and l1.dice == 0.0
    assert math.isnan(l1.assd_mm) and math.isnan(l1.hd95_mm)
    assert all(v.dice == 1.0 for i, v in by_id.items() if i != 20)
    assert res.n_missed == 1 and res.extras == []
    assert res.detection_rate == pytest.approx(8 / 9) and res.id_accuracy == pytest.approx(8 / 9)
    n_all, n20 = np.count_nonzero(ref), count(ref, 20)
    assert res.spine_dice == pytest.approx(2 * (n_all - n20) / (n_all + n_all - n20))
    s = res.summary()
    dices = [1.0] * 8 + [0.0]  # missed vertebrae count as Dice 0 in the mean
    assert s["dice_mean"] == pytest.approx(8 / 9)
    assert s["dice_std"] == pytest.approx(math.sqrt(sum((d - 8 / 9) ** 2 for d in dices) / 8))
    assert s["assd_mm_mean"] == 0.0 and s["distance_vertebrae"] == 8  # distances: matched vertebrae only


def test_relabelled_vertebra_is_a_wrong_id_with_full_overlap(verse004):
    ref = verse004.array
    pred = np.where(ref == 22, 26, ref)  # L3 called S1
    res = evaluate_instances(pred, ref, verse004.spacing)
    l3 = next(v for v in res.vertebrae if v.ref_id == 22)
    assert (l3.pred_id, l3.dice, l3.status, l3.detected) == (26, 1.0, "wrong id", True)
    assert res.id_accuracy == pytest.approx(8 / 9) and res.detection_rate == 1.0
    # kappa over 9 pairs, 8 correct, (L3 -> S1) off by 3 positions in C1..T12, L1..L5, S1 (L6 absent)
    pos = {i: i - 16 for i in range(16, 25)} | {26: 9}
    refs = list(range(16, 25))
    preds = [26 if i == 22 else i for i in refs]
    observed = sum(abs(pos[r] - pos[p]) for r, p in zip(refs, preds)) / 9
    expected = sum(abs(pos[r] - pos[p]) for r in refs for p in preds) / 81
    assert res.kappa == pytest.approx(1 - observed / expected)


def test_merge_and_off_by_one_kappa_against_a_hand_computed_matrix(verse010):
    # L2 merged into L1 (both reference L1 and L2 match predicted "L1": many-to-one), L5 called L6.
    ref = verse010.array
    pred = np.where(ref == 21, 20, ref)
    pred = np.where(pred == 24, 25, pred)
    res = evaluate_instances(pred, ref, verse010.spacing)
    got = {v.ref_id: v for v in res.vertebrae}
    assert [(i, got[i].pred_id) for i in range(20, 25)] == [(20, 20), (21, 20), (22, 22), (23, 23), (24, 25)]
    n20, n21 = count(ref, 20), count(ref, 21)
    assert got[20].dice == pytest.approx(2 * n20 / (n20 + (n20 + n21)))
    assert got[21].dice == pytest.approx(2 * n21 / (n21 + (n20 + n21)))
    assert got[21].status == "wrong id" and got[24].status == "wrong id"
    assert res.id_accuracy == pytest.approx(3 / 5)
    # Confusion matrix, categories in anatomical order L1 L2 L3 L4 L5 L6 at positions 0..5 (L6 present):
    # ref marginals 1/5 each on 0..4; pred marginals 2/5 at 0, 1/5 at 2, 3, 5.
    # observed weighted disagreement: (0 + 1 + 0 + 0 + 1) / 5 = 2/5
    # expected: mean over ref positions r of (2|r-0| + |r-2| + |r-3| + |r-5|) / 5
    #           = (10/5 + 9/5 + 8/5 + 9/5 + 12/5) / 5 = 48/25
    # kappa = 1 - (2/5) / (48/25) = 1 - 10/48 = 19/24
    assert res.kappa == pytest.approx(19 / 24)
    assert weighted_kappa([20, 21, 22, 23, 24], [20, 20, 22, 23, 25]) == pytest.approx(19 / 24)


def test_largest_overlap_picks_the_neighbour_that_covers_a_deleted_vertebra_most(verse004):
    ref = verse004.array
    pred = np.zeros_like(ref)
    pred[:, 4:] = ref[:, :-4]  # everything 4 mm further along the rows (inferior)
    pred[pred == 20] = 0       # and L1 deleted: its neighbours T12 (19) and L2 (21) overlap it partly
    l1 = ref == 20
    overlaps = {p: int(np.count_nonzero(l1 & (pred == p))) for p in (19, 21)}
    assert min(overlaps.values()) > 0 and overlaps[19] != overlaps[21]
    best = max(overlaps, key=overlaps.get)
    res = evaluate_instances(pred, ref, verse004.spacing)
    v = next(v for v in res.vertebrae if v.ref_id == 20)
    assert (v.pred_id, v.overlap_voxels) == (best, overlaps[best])
    assert v.dice == pytest.approx(2 * overlaps[best] / (count(ref, 20) + count(pred, best)))
    assert v.dice < 0.5 and v.status == "low dice, wrong id" and not v.detected


def test_split_vertebra_leaves_the_smaller_part_as_an_extra(verse010):
    ref = verse010.array
    k = np.nonzero((ref == 22).any(axis=(1, 2)))[0]
    cut = int(k[0] + (k[-1] - k[0]) * 0.3)  # the first 30 % of its slices become a separate instance
    pred = ref.copy()
    pred[:cut][pred[:cut] == 22] = 27
    small, large = count(pred, 27), count(pred, 22)
    assert 0 < small < large
    res = evaluate_instances(pred, ref, verse010.spacing)
    l3 = next(v for v in res.vertebrae if v.ref_id == 22)
    assert (l3.pred_id, l3.overlap_voxels) == (22, large)
    assert l3.dice == pytest.approx(2 * large / (count(ref, 22) + large))
    assert [(e.pred_id, e.voxels, e.overlap_voxels) for e in res.extras] == [(27, small, small)]
    assert res.spine_dice == 1.0  # the union is unchanged


def test_vertebra_from_another_case_is_an_extra_prediction(verse004, verse010):
    ref = verse004.array
    donor = verse010.array == 23
    z, y, x = (np.nonzero(donor.any(axis=a))[0] for a in ((1, 2), (0, 2), (0, 1)))
    # both maps are PIR; verse010 has 1 mm slices, verse004 2 mm ones: keep every second slice
    piece = donor[z[0]:z[-1] + 1:2, y[0]:y[-1] + 1, x[0]:x[-1] + 1]
    pz, py, px = piece.shape
    # a place in verse004 with no reference vertebra: the last rows (the reference ends at row 287)
    at = (2, ref.shape[1] - py - 1, 2)
    box = tuple(slice(a, a + n) for a, n in zip(at, piece.shape))
    assert piece.shape[0] <= ref.shape[0] - 2 and not ref[box].any()
    pred = ref.copy()
    pred[box][piece] = 8  # a "T1" where the reference has nothing
    res = evaluate_instances(pred, ref, verse004.spacing)
    n_piece, n_all = int(piece.sum()), int(np.count_nonzero(ref))
    assert [(e.pred_id, e.name, e.voxels, e.overlap_voxels) for e in res.extras] == [(8, "T1", n_piece, 0)]
    assert all(v.status == "ok" and v.dice == 1.0 for v in res.vertebrae)
    assert res.spine_dice == pytest.approx(2 * n_all / (n_all + n_all + n_piece))
    assert res.summary()["extra"] == 1 and sorted(res.pred_ids) == [8, *range(16, 25)]


def test_labels_shifted_by_one_give_id_accuracy_0_but_high_dice(panoptica):
    # panoptica's "unmatched" prediction is the matched one with every id + 1 (C2..T1, S1 -> C3..T2, 27)
    ref = vertebrae_only(panoptica["matched_instance_ref"].array)
    pred = vertebrae_only(panoptica["unmatched_instance_pred"].array)
    spacing = panoptica["matched_instance_ref"].spacing
    res = evaluate_instances(pred, ref, spacing)
    ids = [2, 3, 4, 5, 6, 7, 8, 26]
    assert [(v.ref_id, v.pred_id) for v in res.vertebrae] == [(i, i + 1) for i in ids]
    for v in res.vertebrae:
        r, p = ref == v.ref_id, pred == v.ref_id + 1
        assert v.dice == pytest.approx(2 * np.count_nonzero(r & p) / (r.sum() + p.sum()))
        assert v.dice > 0.94 and v.status == "wrong id"
    assert res.id_accuracy == 0.0 and res.detection_rate == 1.0 and res.extras == []
    # kappa: positions C1..T12 = 0..18, L1..L5 = 19..23, S1 = 24, then unknown id 27 = 25
    pos = {i: i - 1 for i in range(1, 20)} | {26: 24, 27: 25}
    pairs = [(i, i + 1) for i in ids]
    observed = sum(abs(pos[r] - pos[p]) for r, p in pairs) / len(pairs)
    expected = sum(abs(pos[r] - pos[p]) for r, _ in pairs for _, p in pairs) / len(pairs) ** 2
    assert res.kappa == pytest.approx(1 - observed / expected)


def test_per_vertebra_distances_equal_whole_volume_binary_metrics(panoptica):
    # cropping each pair to its bounding box must not change ASSD/HD95
    ref_img = panoptica["matched_instance_ref"]
    ref, pred = vertebrae_only(ref_img.array), vertebrae_only(panoptica["matched_instance_pred"].array)
    res = evaluate_instances(pred, ref, ref_img.spacing)
    for v in res.vertebrae[:3] + res.vertebrae[-1:]:
        m = binary_metrics(pred == v.pred_id, ref == v.ref_id, ref_img.spacing)
        assert (v.dice, v.assd_mm, v.hd95_mm) == pytest.approx((m["dsc"], m["assd_mm"], m["hd95_mm"]))
        assert v.pred_id == v.ref_id


# -- kappa edge cases -----------------------------------------------------------------------------
def test_kappa_edge_cases():
    assert math.isnan(weighted_kappa([], []))
    assert math.isnan(weighted_kappa([20, 20], [20, 20]))  # a single class: 0/0
    assert weighted_kappa([20], [21]) == 0.0  # one pair, wrong: observed = expected disagreement
    assert weighted_kappa([20, 21, 22], [20, 21, 22]) == 1.0
    order = kappa_categories([19, 28, 20, 24, 25, 26, 102])
    assert order.index(28) == order.index(19) + 1 and order.index(20) == order.index(28) + 1
    assert order.index(25) == order.index(24) + 1 and order.index(26) == order.index(25) + 1
    assert order[-1] == 102 and 28 not in kappa_categories([19, 20])
    with pytest.raises(ValueError):
        weighted_kappa([1, 2], [1])


# -- completeness ---------------------------------------------------------------------------------
def touches_border(mask: np.ndarray) -> bool:
    return any(mask.take(i, axis=a).any() for a in range(3) for i in (0, -1))


def test_reference_completeness_from_the_image_border(verse004):
    ref = verse004.array[:, 40:, :]  # cut the field of view through T9 (rows 17-64)
    flags = reference_completeness(ref)
    assert flags == {i: not touches_border(ref == i) for i in range(16, 25)}
    assert flags[16] is False and flags[17] is True
    # T10 starts 3 rows (3 mm) below the new border: incomplete once the margin reaches 3 mm
    assert reference_completeness(ref, (1.0, 1.0, 2.0), margin_mm=2.9)[17] is True
    assert reference_completeness(ref, (1.0, 1.0, 2.0), margin_mm=3.0)[17] is False
    assert reference_completeness(Image(ref, verse004.spacing)) == flags


def test_completeness_accuracy_and_fp_fn(verse004):
    ref = verse004.array[:, 40:, :]
    truth = {i: not touches_border(ref == i) for i in range(16, 25)}
    assert truth[16] is False
    pred_flags = dict(truth)
    pred_flags[16] = True   # incomplete classified complete: a false positive (Lessmann's definition)
    pred_flags[20] = False  # complete classified incomplete: a false negative
    del pred_flags[24]      # no flag for L5: not scored
    res = evaluate_instances(ref, ref, verse004.spacing, pred_completeness=pred_flags)
    s = res.summary()
    assert s["completeness_scored"] == 8
    assert s["completeness_accuracy"] == pytest.approx(6 / 8)
    assert s["completeness_fp_per_scan"] == 1 and s["completeness_fn_per_scan"] == 1
    # explicit reference flags replace the derived ones
    res2 = evaluate_instances(ref, ref, verse004.spacing, pred_completeness=pred_flags, ref_completeness=pred_flags)
    assert res2.summary()["completeness_accuracy"] == 1.0


def test_parse_completeness_formats():
    assert parse_completeness({"20": True, "L2": False, "S1": 0.7}) == {20: True, 21: False, 26: True}
    assert parse_completeness({"completeness": [{"label": 19, "complete": False}, {"id": 28, "complete": 1}]}) \
        == {19: False, 28: True}
    for bad in ({"X9": True}, {"20": "yes"}, [{"label": 20}], "complete"):
        with pytest.raises(InputError):
            parse_completeness(bad)


# -- grids, bad input -----------------------------------------------------------------------------
def test_images_on_a_flipped_grid_and_label_selection(panoptica):
    ref = panoptica["matched_instance_ref"]
    d = ref.direction.copy()
    d[:, 2] *= -1  # reverse the k axis, same voxels in space
    flipped = Image(ref.array[::-1].copy(), ref.spacing, ref.index_to_lps((0, 0, ref.size[2] - 1)), d)
    res = evaluate_instance_images(flipped, ref, ids=range(1, 100))
    assert [v.ref_id for v in res.vertebrae] == [2, 3, 4, 5, 6, 7, 8, 26]
    assert all(v.dice == 1.0 and v.assd_mm == 0.0 for v in res.vertebrae)
    # without the id filter the discs and endplates are instances too
    n_ids = len(np.unique(ref.array)) - 1
    assert n_ids == 22 and len(evaluate_instance_images(flipped, ref).vertebrae) == n_ids


def test_bad_label_maps_are_input_errors(verse004):
    ref = verse004.array
    with pytest.raises(InputError, match="non-integer"):
        evaluate_instances(ref + 0.5, ref)
    with pytest.raises(InputError, match="negative"):
        evaluate_instances(ref.astype(np.int16) - 1, ref)
    with pytest.raises(InputError, match="differ in shape"):
        evaluate_instances(ref[1:], ref)
    ok = evaluate_instances(ref.astype(np.float32), ref)  # integral floats are fine
    assert ok.id_accuracy == 1.0


# -- summaries and files --------------------------------------------------------------------------
def test_summary_pools_vertebrae_over_cases(verse004, verse010, tmp_path):
    a = evaluate_instances(verse004.array, verse004.array, verse004.spacing, case="v004")
    pred010 = np.where(verse010.array == 24, 0, verse010.array)  # L5 missed
    b = evaluate_instances(pred010, verse010.array, verse010.spacing, case="v010")
    s = summarize([a, b])
    assert (s["cases"], s["reference_vertebrae"], s["missed"], s["detected"]) == (2, 14, 1, 13)
    assert s["dice_mean"] == pytest.approx(13 / 14) and s["detection_rate"] == pytest.approx(13 / 14)
    assert s["id_accuracy"] == pytest.approx(13 / 14) and s["kappa"] == 1.0
    assert s["extra_per_scan"] == 0.0 and math.isnan(s["completeness_accuracy"])
    assert DETECTION_DICE == 0.5

    rows = a.to_rows() + b.to_rows()
    write_csv(rows, tmp_path / "v.csv")
    with open(tmp_path / "v.csv", newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == 14 and back[-1]["status"] == "missed" and back[-1]["assd_mm"] == ""
    assert back[0]["ref_name"] == "T9" and float(back[0]["dice"]) == 1.0
    with pytest.raises(OutputExistsError):
        write_csv(rows, tmp_path / "v.csv")
    write_csv(rows[:1], tmp_path / "v.csv", force=True)
    assert len((tmp_path / "v.csv").read_text(encoding="utf-8").splitlines()) == 2

    write_json({"cases": [a.to_dict(), b.to_dict()], "summary": s}, tmp_path / "v.json")
    text = (tmp_path / "v.json").read_text(encoding="utf-8")
    assert "NaN" not in text
    data = json.loads(text)
    missed = data["cases"][1]["vertebrae"][-1]
    assert missed["status"] == "missed" and missed["assd_mm"] is None and missed["name"] == "L5"
    assert data["summary"]["missed"] == 1

    table = format_case_table(b)
    assert "L5" in table and "missed" in table
    assert "detected 13/14" in format_summary(s)
