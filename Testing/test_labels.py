"""The one label table: ids, names, codes and colours."""

import numpy as np
import pytest

from conftest import data_path
from SpineSegLib.core import labels
from SpineSegLib.core.image import read_image


def test_ids_and_names_follow_verse():
    expected = {1: "C1", 7: "C7", 8: "T1", 19: "T12", 20: "L1", 24: "L5", 25: "L6", 26: "S1", 28: "T13"}
    for label, name in expected.items():
        assert labels.VERTEBRAE[label].name == name
        assert labels.by_name(name).label == label
    assert sorted(labels.VERTEBRAE) == [*range(1, 27), 28]
    assert labels.by_name("sacrum").label == 26


def test_codes_are_snomed_and_unique_for_regular_vertebrae():
    codes = [labels.VERTEBRAE[i].snomed_code for i in range(1, 25)]
    assert len(set(codes)) == 24 and all(c.isdigit() for c in codes)
    assert labels.VERTEBRAE[1].snomed_code == "14806007"   # atlas
    assert labels.VERTEBRAE[24].snomed_code == "49668003"  # L5
    assert labels.VERTEBRAE[26].snomed_meaning == "Sacrum"


def test_neighbouring_vertebrae_have_distinct_colours():
    ordered = sorted(labels.VERTEBRAE.values(), key=lambda v: v.order)
    for a, b in zip(ordered, ordered[1:]):
        assert np.abs(np.subtract(a.color, b.color)).sum() > 0.25, (a.name, b.name)
    assert len({v.color for v in labels.VERTEBRAE.values()}) == len(labels.VERTEBRAE)


def test_anatomical_order_and_transitional_vertebrae():
    assert labels.next_label(19) == 20
    assert labels.next_label(19, allow_t13=True) == 28
    assert labels.next_label(24, allow_l6=True) == 25
    assert labels.next_label(20, -1) == 19
    with pytest.raises(ValueError):
        labels.next_label(1, -1)


def test_real_label_maps_use_known_ids():
    for path in [data_path("ct", "lidc-idri-0001", "vertebrae.nii.gz"),
                 *sorted(data_path("masks", "verse").glob("*_msk.nii.gz"))]:
        ids = set(np.unique(read_image(path).array)) - {0}
        unknown = {i for i in ids if i not in labels.VERTEBRAE}
        assert not unknown, (path.name, unknown)
        assert all(labels.name_of(i) for i in ids)
