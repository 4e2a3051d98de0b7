"""Maximum-likelihood label sequence (Lessmann et al. 2019, 3.4) with constructed regressed labels,
and on the labels an oracle traversal of a real scan reports."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import data_path
from SpineSegLib.core.image import read_image
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.core.label_sequence import REGULAR_CHAIN, T13_CHAIN, chain_probabilities, fit_label_sequence
from SpineSegLib.iis.infer.oracle import LabelMapOracle
from SpineSegLib.iis.infer.preprocess import to_model_grid
from SpineSegLib.iis.infer.traversal import IISTraversal
from SpineSegLib.iis.infer.traversal_options import TraversalOptions
from SpineSegLib.core.labels import VERTEBRAE


def test_the_papers_interpolation():
    p = chain_probabilities(22.8, REGULAR_CHAIN)
    assert p[REGULAR_CHAIN.index(23)] == pytest.approx(0.8)
    assert p[REGULAR_CHAIN.index(22)] == pytest.approx(0.2)
    assert p.sum() == pytest.approx(1.0) and np.count_nonzero(p) == 2
    assert chain_probabilities(-3.0, REGULAR_CHAIN)[0] == 1.0          # below C1: C1
    assert chain_probabilities(30.0, REGULAR_CHAIN)[-1] == 1.0         # past the chain: its end (S1)
    t13 = chain_probabilities(19.8, T13_CHAIN)
    assert t13[T13_CHAIN.index(28)] == pytest.approx(0.4) and t13[T13_CHAIN.index(20)] == pytest.approx(0.6)


def test_off_by_one_corrected_by_the_sequence():
    # upward traversal: L5 first. The third vertebra (L3) was regressed as L2.
    regressed = [24.2, 23.1, 21.4, 21.0, 19.9]
    fit = fit_label_sequence(regressed, [True] * 5, direction="up")
    assert fit.ids == [24, 23, 22, 21, 20]
    assert fit.names == ["L5", "L4", "L3", "L2", "L1"]
    naive = [int(round(v)) for v in regressed]
    assert naive[2] == 21 and len(set(naive)) < 5            # rounding alone gives a duplicate
    assert fit.transitional is None and not fit.anchored
    assert 0 < fit.score < 1


def test_direction_only_reverses_the_order():
    regressed = [9.3, 10.2, 10.9, 12.1]                      # downward: T2 first
    down = fit_label_sequence(regressed, [True] * 4, direction="down")
    up = fit_label_sequence(regressed[::-1], [True] * 4, direction="up")
    assert down.ids == [9, 10, 11, 12] and up.ids == [12, 11, 10, 9]
    assert down.score == pytest.approx(up.score)


def test_incomplete_vertebrae_do_not_vote():
    # two complete lumbar vertebrae lean towards L5/L4, three incomplete ones above towards T12..L2
    regressed = [23.6, 22.6, 21.0, 20.0, 19.0]              # upward traversal
    only_complete = fit_label_sequence(regressed, [True, True, False, False, False], direction="up")
    everyone = fit_label_sequence(regressed, [True] * 5, direction="up")
    assert only_complete.ids == [24, 23, 22, 21, 20]
    assert everyone.ids == [23, 22, 21, 20, 19]
    assert only_complete.voters == [True, True, False, False, False]
    # no complete vertebra at all: all vote
    none_complete = fit_label_sequence(regressed, [False] * 5, direction="up")
    assert none_complete.ids == everyone.ids and none_complete.voters == [True] * 5


def test_t13_only_when_the_evidence_supports_it():
    # a regular spine with label noise: a T13 sequence must not be chosen even when allowed
    noisy = [18.2, 19.3, 19.9, 21.0, 21.6]                  # T11, T12, L1, L2, L3 (downward)
    fit = fit_label_sequence(noisy, [True] * 5, direction="down", allow_t13=True)
    assert fit.transitional is None and fit.ids == [18, 19, 20, 21, 22]
    # a thirteenth thoracic vertebra, regressed between T12 and L1 as the training targets place it
    t13 = [17.1, 18.0, 19.1, 19.5, 20.1, 20.9]
    plain = fit_label_sequence(t13, [True] * 6, direction="down")
    allowed = fit_label_sequence(t13, [True] * 6, direction="down", allow_t13=True)
    assert plain.transitional is None and 28 not in plain.ids
    assert allowed.transitional == "T13"
    assert allowed.ids == [17, 18, 19, 28, 20, 21]
    assert allowed.names[3] == "T13"
    assert allowed.score >= allowed.regular_score + 0.1
    # the same values, but the candidate T13 incomplete: no evidence, no T13
    weak = fit_label_sequence(t13, [True, True, True, False, True, True], direction="down", allow_t13=True)
    assert weak.transitional is None


def test_l6_only_when_the_evidence_supports_it():
    six = [24.5, 24.0, 23.0, 22.1, 21.0, 20.1]              # upward: L6 first
    fit = fit_label_sequence(six, [True] * 6, direction="up", allow_l6=True)
    assert fit.transitional == "L6" and fit.ids == [25, 24, 23, 22, 21, 20]
    assert fit_label_sequence(six, [True] * 6, direction="up").transitional is None
    # an ordinary lumbar spine with an L5 regressed a little high stays regular
    five = [24.3, 23.1, 22.0, 21.1, 19.8]
    assert fit_label_sequence(five, [True] * 5, direction="up", allow_l6=True).ids == [24, 23, 22, 21, 20]


def test_uninformative_labels_are_anchored_at_l5():
    fit = fit_label_sequence([0.0, 0.1, 0.2], [True] * 3, direction="up")
    assert fit.anchored and fit.ids == [24, 23, 22]
    assert fit_label_sequence([], [], direction="up").ids == []


def test_ids_are_those_of_the_label_table():
    fit = fit_label_sequence([1.2, 2.1, 2.8], [True] * 3, direction="down")
    assert fit.ids == [1, 2, 3] and all(v in VERTEBRAE for v in fit.ids)


def test_sequence_repairs_a_noisy_oracle_on_a_real_scan():
    """Oracle traversal of VerSe sub-verse004 (T9-L5) reporting labels with an off-by-one error and
    noise; the fitted sequence recovers the reference ids."""
    ref = read_image(data_path("masks", "verse", "sub-verse004_seg-vert_msk.nii.gz"))
    config = IISConfig(width=8, patch_size=(64, 64, 64), voxel_size_mm=(2.0, 2.0, 2.0))
    grid = to_model_grid(ref.with_array(ref.array.astype(np.float32)), config)
    labels = grid.labels(ref).array.astype(np.int16)
    rng = np.random.default_rng(3)
    noise = {v: float(rng.uniform(-0.35, 0.35)) for v in range(16, 25)}
    noise[20] = -0.7                                  # L1 regressed almost as T12

    oracle = LabelMapOracle(labels, "up", regressed=lambda v: v + noise[v], min_visible_voxels=125)
    trav = IISTraversal(grid.image.with_array(labels.astype(np.float32)), oracle, TraversalOptions(),
                        patch_size=config.patch_size)
    result = trav.run()
    truth = [16 + 24 - 16 - k for k in range(9)]     # 24, 23, ..., 16
    regressed = [i.label for i in result.instances]
    assert [int(round(v)) for v in regressed] != truth
    fit = fit_label_sequence(regressed, [i.complete for i in result.instances], direction="up")
    assert fit.ids == truth
