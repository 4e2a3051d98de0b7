"""Vertebral body heights and per-vertebra measurements on real label maps: manual lumbar MR body labels
(MyoSegmenTUM) and LIDC-IDRI-0001's full CT vertebrae (TotalSegmentator reference).

Figures measured on all 50 MyoSegmenTUM cases (python -c 'see SpineSegLib.evaluation.measurements'): mean anterior / middle /
posterior heights L1 25.8/25.1/25.9 mm ... L5 28.9/25.5/24.3 mm, all between 18.8 and 32.8 mm; L5 anterior >
posterior in 50/50 cases (its lordotic wedge); the floors below sit a little under these.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import data_path

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.evaluation.measurements import _frame, measure_vertebrae, spine_axes

MR_CASES = ("01", "02", "03", "04", "05")


def mr_case(case: str) -> tuple[Image, Image]:
    folder = data_path("mr", "vertebral-bodies-myosegmentum")
    labels = read_image(folder / f"{case}_vb.nii.gz")
    ids = labels.with_array(np.where(labels.array > 0, labels.array + 19, 0).astype(np.uint8))   # 1-5 -> L1-L5
    return read_image(folder / f"{case}_img.nii.gz"), ids


@pytest.fixture(scope="module")
def mr_rows():
    out = {}
    for case in MR_CASES:
        image, labels = mr_case(case)
        out[case] = {m.name: m for m in measure_vertebrae(labels, image)}
    return out


@pytest.fixture(scope="module")
def lidc():
    folder = data_path("ct", "lidc-idri-0001")
    ct, labels = read_image(folder / "image.nii.gz"), read_image(folder / "vertebrae.nii.gz")
    return ct, labels, {m.name: m for m in measure_vertebrae(labels, ct)}


def test_lumbar_body_heights_are_anatomical(mr_rows):
    for case, rows in mr_rows.items():
        assert list(rows) == ["L1", "L2", "L3", "L4", "L5"]
        for name, m in rows.items():
            for h in (m.anterior_height_mm, m.middle_height_mm, m.posterior_height_mm):
                assert 17.0 <= h <= 35.0, (case, name, h)
            assert 20.0 <= m.body_depth_mm <= 42.0, (case, name, m.body_depth_mm)
        assert rows["L5"].anterior_height_mm > rows["L5"].posterior_height_mm, case     # the wedge of L5
    # biconcave endplates: the middle of L2-L4 is lower than its rims, on average over the cases
    for name in ("L2", "L3", "L4"):
        middle = np.mean([rows[name].middle_height_mm for rows in mr_rows.values()])
        rims = np.mean([(rows[name].anterior_height_mm + rows[name].posterior_height_mm) / 2 for rows in mr_rows.values()])
        assert middle < rims, name


def test_volume_and_mean_intensity_are_those_of_the_mask():
    image, labels = mr_case("01")
    rows = measure_vertebrae(labels, image, ids=[22, 99])         # an id that is not there is skipped
    assert [m.name for m in rows] == ["L3"]
    own = labels.array == 22
    assert rows[0].voxels == int(own.sum())
    assert rows[0].volume_ml == pytest.approx(own.sum() * labels.voxel_volume_mm3 / 1000.0)
    assert rows[0].mean_intensity == pytest.approx(float(image.array[own].mean()))
    assert math.isnan(measure_vertebrae(labels)[0].mean_intensity)            # no image, no intensity
    with pytest.raises(InputError, match="whole numbers"):
        measure_vertebrae(labels.with_array(labels.array + 0.5))
    with pytest.raises(InputError, match="differ in size"):
        measure_vertebrae(labels, Image(image.array[:-1], image.spacing, image.origin, image.direction))


def rotated(image: Image, degrees: float, axis=(1.0, 0.0, 0.0)) -> Image:
    """The same voxels rigidly rotated about the image centre (an exact rotation: no resampling)."""
    a = np.radians(degrees)
    k = np.array(axis) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K
    centre = image.index_to_lps((np.array(image.size) - 1) / 2.0)
    origin = centre + R @ (np.asarray(image.origin) - centre)
    return Image(image.array, image.spacing, tuple(origin), R @ image.direction)


def test_heights_follow_the_spine_not_the_image_axes():
    """Tilting the whole spine by 20 degrees in the sagittal plane leaves the heights as they were, although each
    body's extent along the image's superior axis changes by millimetres."""
    image, labels = mr_case("02")
    straight = {m.name: m for m in measure_vertebrae(labels)}
    tilted_labels = rotated(labels, 20.0)
    tilted = {m.name: m for m in measure_vertebrae(tilted_labels)}
    changed = 0
    for name, m in straight.items():
        t = tilted[name]
        for key in ("anterior_height_mm", "middle_height_mm", "posterior_height_mm"):
            assert getattr(t, key) == pytest.approx(getattr(m, key), abs=0.5), (name, key)
        assert t.body_depth_mm == pytest.approx(m.body_depth_mm, abs=1.0)
        angle = np.degrees(np.arccos(np.clip(np.dot(t.axis_lps, m.axis_lps), -1, 1)))
        assert 15.0 < angle < 25.0, (name, angle)          # the local axis turned with the spine
        z_extent = [float(np.ptp(img.index_to_lps(np.argwhere(img.array == m.label)[:, ::-1].astype(float))[:, 2]))
                    for img in (labels, tilted_labels)]
        changed += abs(z_extent[1] - z_extent[0]) > 1.0
    assert changed >= 4


def test_full_ct_vertebrae_are_measured_on_their_bodies(lidc):
    ct, labels, rows = lidc
    complete = [f"T{i}" for i in range(3, 13)] + ["L1", "L2"]
    for name in complete:
        m = rows[name]
        for h in (m.anterior_height_mm, m.middle_height_mm, m.posterior_height_mm):
            assert 13.0 <= h <= 30.0, (name, h)
        # the body only: the whole vertebra (with its arch and spinous process) is far deeper
        s, a, _ = _frame(m.axis_lps)
        points = labels.index_to_lps(np.argwhere(labels.array == m.label)[:, ::-1].astype(float))
        assert m.body_depth_mm < 0.6 * float(np.ptp(points @ a)), name
        assert 200.0 < m.mean_intensity < 500.0, name          # cancellous and cortical bone, HU
    # thoracic kyphosis: the mid-thoracic bodies are wedged, lower in front
    wedge = [rows[n].posterior_height_mm - rows[n].anterior_height_mm for n in ("T4", "T5", "T6", "T7")]
    assert np.mean(wedge) > 0.5, wedge
    # heights grow down the spine
    assert rows["L2"].middle_height_mm > rows["T4"].middle_height_mm + 4.0


def test_spine_axes_point_superior_along_the_neighbours():
    centroids = {20: np.array([0.0, 10.0, 100.0]), 21: np.array([0.0, 12.0, 70.0]), 22: np.array([0.0, 15.0, 40.0])}
    axes = spine_axes(centroids)
    assert np.allclose(axes[21], (centroids[20] - centroids[22]) / np.linalg.norm(centroids[20] - centroids[22]))
    assert np.allclose(axes[20], (centroids[20] - centroids[21]) / np.linalg.norm(centroids[20] - centroids[21]))
    assert all(v[2] > 0 for v in axes.values())
    assert np.allclose(spine_axes({20: np.zeros(3)})[20], [0.0, 0.0, 1.0])      # alone: the patient's axis
