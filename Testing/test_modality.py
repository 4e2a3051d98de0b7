"""CT vs MR from the intensities, CTs that lost their Hounsfield units, and the smallest scan IIS accepts.

``core.modality.ct_encoding_problem`` must flag a CT stored as HU + 1024 without its rescale and a CT
windowed for display into 0-255 (the robustness corpus's ``offset-uint16`` and ``uint8-window``, made here
from LIDC-IDRI-0001 the same way), and nothing real: the slow test reads every scan in ../shared/data.
Every command that takes a CT refuses such an image with that one line (IIS, dataset init, classical).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, data_path
from SpineSegLib.classical.params import ClassicalParams
from SpineSegLib.classical.validation import check_ct
from SpineSegLib.core import modality
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.modality import ct_encoding_problem, guess_modality
from SpineSegLib.iis.infer import checks
from SpineSegLib.iis.infer.checks import MIN_EXTENT_MM, check_ct_encoding, check_extent

MR_SCANS = (("mr", "vertebral-bodies-myosegmentum", "01_img.nii.gz"), ("mr", "discs", "11_img.nii.gz"),
            ("mr", "vertebral-bodies-zukic", "02_img.nii.gz"), ("mr", "tptbox-c6", "image.nii.gz"))


def offset_uint16(hu: Image) -> Image:
    """As the corpus's ``offset-uint16``: HU + 1024 stored as uint16, no rescale (the padding of -2048 HU
    outside LIDC's circular field of view clipped to 0, as a scanner storing unsigned values would)."""
    return hu.with_array(np.clip(hu.array.astype(np.int32) + 1024, 0, None).astype(np.uint16))


def windowed_uint8(hu: Image, level: float = 300, width: float = 1500) -> Image:
    """As the corpus's ``uint8-window``: a display window mapped onto 0-255, clipped at both ends."""
    lo = level - width / 2
    return hu.with_array(np.clip(np.round((hu.array.astype(np.float32) - lo) / width * 255), 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def lidc_small() -> Image:
    """LIDC-IDRI-0001 (chest CT, int16 HU) at every 2nd slice and every 4th row and column (67 x 128 x 128)."""
    full = read_image(data_path("ct", "lidc-idri-0001", "image.nii.gz"))
    sx, sy, sz = full.spacing
    return Image(full.array[::2, ::4, ::4].copy(), (sx * 4, sy * 4, sz * 2), full.origin, full.direction)


@pytest.fixture(scope="session")
def mr_scans() -> dict:
    return {path[1]: read_image(data_path(*path)) for path in MR_SCANS}


def test_core_holds_the_modality_logic_and_checks_reexports_it():
    assert checks.guess_modality is modality.guess_modality
    assert checks.ct_encoding_problem is modality.ct_encoding_problem


def test_offset_ct_is_flagged(lidc_small):
    offset = offset_uint16(lidc_small)
    assert guess_modality(offset)[0] == "mr"          # why the modality check alone misleads
    problem = ct_encoding_problem(offset)
    assert problem and "without its rescale" in problem and "HU + 1024" in problem and "\n" not in problem
    assert ct_encoding_problem(offset.array.astype(np.float32)) == problem    # an array and a float copy too


@pytest.mark.parametrize("level, width", [(300, 1500), (40, 400)])     # the corpus's window; soft tissue
def test_windowed_ct_is_flagged(lidc_small, level, width):
    problem = ct_encoding_problem(windowed_uint8(lidc_small, level, width))
    assert problem and "windowed for display into 0-255" in problem and "\n" not in problem


def test_ct_in_hounsfield_units_is_not_flagged(lidc_small):
    assert ct_encoding_problem(lidc_small) is None
    assert guess_modality(lidc_small)[0] == "ct"


def test_mr_is_not_flagged_even_scaled_onto_the_soft_tissue_peak(mr_scans):
    """Real MR (uint8 0-255 and uint16) is never flagged; nor is it after scaling its intensities so that
    the tissue's median lands anywhere on an offset CT's fat / soft-tissue peak (900-1200): an MR has no
    empty gap between background and tissue."""
    for name, image in mr_scans.items():
        a = image.array.astype(np.float32)
        assert ct_encoding_problem(image) is None, name
        tissue = float(np.median(a[a > np.percentile(a, 30)]))
        for target in (900, 1000, 1100, 1200):
            assert ct_encoding_problem(np.round(a * (target / tissue))) is None, (name, target)


def test_offset_crop_inside_the_body_is_not_flagged():
    """Conservative: without air near 0 an offset CT is not recognised (the L3 crop has none)."""
    crop = read_image(data_path("ct", "tptbox-l3", "image.nii.gz"))
    assert ct_encoding_problem(offset_uint16(crop)) is None


def test_windowed_rule_needs_both_clipped_ends(lidc_small):
    u8 = windowed_uint8(lidc_small).array
    no_top = np.minimum(u8, 254)                      # nothing saturated at 255 (max 254)
    assert ct_encoding_problem(no_top) is None
    no_bottom = np.maximum(u8, 1)
    assert ct_encoding_problem(no_bottom) is None


def test_extent_needs_one_vertebra_with_margin(lidc_small):
    spacing = (2.5, 2.5, 2.5)
    with pytest.raises(InputError, match=r"20\.0 x 20\.0 x 20\.0 mm \(8 x 8 x 8 voxels\).*at least 30 mm"):
        check_extent(Image(np.zeros((8, 8, 8), np.int16), spacing))              # the corpus's tiny crop
    check_extent(Image(np.zeros((12, 12, 12), np.int16), spacing))               # exactly 30 mm
    assert MIN_EXTENT_MM == 30
    for path in (("ct", "tptbox-l3", "image.nii.gz"), ("mr", "tptbox-c6", "image.nii.gz")):   # the smallest real scans
        check_extent(read_image(data_path(*path)))


def test_classical_check_names_the_encoding(lidc_small, mr_scans):
    params = ClassicalParams()
    with pytest.raises(InputError, match=r"HU \+ 1024"):
        check_ct(offset_uint16(lidc_small), params)
    with pytest.raises(InputError, match="windowed for display"):
        check_ct(windowed_uint8(lidc_small), params)
    with pytest.raises(InputError, match="nothing negative.*Hounsfield"):       # MR: the message it always had
        check_ct(mr_scans["vertebral-bodies-myosegmentum"], params)


def test_iis_refuses_offset_ct_without_suggesting_the_override(lidc_small, tmp_path):
    from SpineSegLib.iis.infer.run import segment_vertebrae

    offset = offset_uint16(lidc_small)
    with pytest.raises(InputError, match="without its rescale") as info:
        segment_vertebrae(offset, tmp_path / "missing.pt", device="cpu")       # refused before the model is read
    assert "modality-check" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="not found"):                          # the explicit override skips it
        segment_vertebrae(offset, tmp_path / "missing.pt", device="cpu", check_modality=False)
    check_ct_encoding(lidc_small)


def test_dataset_init_refuses_ct_that_lost_its_units(lidc_small, tmp_path):
    """Guessed modality or ``--modality ct``: refused, naming the file, nothing left behind; an explicit
    ``--modality mr`` vouches for the intensities and stores the image as before."""
    from SpineSegLib.annotation.creation import create_dataset

    small = Image(lidc_small.array[::2, ::2, ::2].copy(), tuple(s * 2 for s in lidc_small.spacing),
                  lidc_small.origin, lidc_small.direction)
    for name, image, words in (("offset", offset_uint16(small), "without its rescale"),
                               ("window", windowed_uint8(small), "windowed for display")):
        path = write_image(image, tmp_path / f"{name}_img.nii.gz")
        for given in (None, "ct"):
            root = tmp_path / f"ds-{name}-{given}"
            with pytest.raises(InputError, match=words) as info:
                create_dataset(root, [path], modality=given)
            assert str(path) in str(info.value) and "\n" not in str(info.value)
            assert not root.exists() and not list(tmp_path.glob(f".{root.name}*"))
        ds = create_dataset(tmp_path / f"ds-{name}-mr", [path], modality="mr")
        assert ds.modality == "mr"


def _real_scans():
    scans = sorted(DATA.glob("ct/*/image.nii.gz")) + sorted(p for p in DATA.glob("ct/*/dicom") if p.is_dir())
    return scans + sorted(DATA.glob("mr/*/*_img.nii.gz")) + sorted(DATA.glob("mr/*/image.nii.gz"))


@pytest.mark.slow
def test_no_real_scan_is_flagged_and_every_one_is_large_enough():
    """Every CT and MR scan in ../shared/data: not flagged, its modality guessed right, not too small;
    every CT with air, stored as HU + 1024, flagged."""
    scans = _real_scans()
    assert len(scans) >= 79, len(scans)               # 6 CT (one a DICOM folder), 73 MR
    for path in scans:
        image = read_image(path)
        kind = path.relative_to(DATA).parts[0]
        assert ct_encoding_problem(image) is None, path
        assert guess_modality(image)[0] == kind, path
        check_extent(image)
        if kind == "ct" and float(np.mean(image.array <= -824)) >= 0.02:
            assert "without its rescale" in (ct_encoding_problem(offset_uint16(image)) or ""), path
