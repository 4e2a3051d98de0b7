"""What is read is complete and regular, or refused with one line: truncated or corrupt files (NIfTI, NRRD,
MetaImage; raw and compressed; attached and detached data), DICOM folders (several series, missing, duplicate and
unevenly spaced slices, gantry tilt), NaN/Inf voxels, zero or negative spacing, non-orthonormal axes.

Every test file is derived in a temporary folder from the real scans in ../shared/data: a 64x64x32 block of
LIDC-IDRI-0001 written in each format, and 48x48 crops of the slices of the TotalSegmentator DICOM series re-written
as small DICOM series with chosen positions, orientations, series UIDs and modalities."""

from __future__ import annotations

import gzip
import shutil
import struct
import time
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DATA, data_path
from SpineSegLib.core import integrity
from SpineSegLib.core.dicom import GAP_FACTOR, stack_problem
from SpineSegLib.core.errors import InputError
from SpineSegLib.core.file_layout import data_layout
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.notes import InputNote, collect_notes, notes_on_stderr

# name -> (file written by SimpleITK, its detached data file or None, compressed)
FORMATS = {
    "nii.gz": ("block.nii.gz", None),
    "nii": ("block.nii", None),
    "nrrd-gzip": ("block.nrrd", None),
    "nrrd-raw": ("raw.nrrd", None),
    "mha-zlib": ("block.mha", None),
    "mha-raw": ("raw.mha", None),
    "mhd-zraw": ("block.mhd", "block.zraw"),
    "mhd-raw": ("raw.mhd", "raw.raw"),
    "nhdr-gzip-big-endian": ("big.nhdr", "big.raw.gz"),
}


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def block() -> sitk.Image:
    """A 64x64x32 block of LIDC-IDRI-0001 around the spine (real CT values, int16)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(data_path("ct", "lidc-idri-0001", "image.nii.gz")))
    reader.SetExtractIndex((224, 300, 50))
    reader.SetExtractSize((64, 64, 32))
    return reader.Execute()


@pytest.fixture(scope="session")
def formats(block, tmp_path_factory):
    """The block in every checked format and encoding."""
    folder = tmp_path_factory.mktemp("formats")
    for compress, names in ((True, ("block.nii.gz", "block.nii", "block.nrrd", "block.mha", "block.mhd")),
                            (False, ("raw.nrrd", "raw.mha", "raw.mhd"))):
        for name in names:
            sitk.WriteImage(block, str(folder / name), useCompression=compress)
    # a detached NRRD header with big-endian gzip data: ITK swaps the bytes, so the quick checksum cannot match
    arr = sitk.GetArrayFromImage(block)
    (folder / "big.raw.gz").write_bytes(gzip.compress(arr.astype(">i2").tobytes()))
    (folder / "big.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 64 64 32\n"
        "space directions: (0.703125,0,0) (0,0.703125,0) (0,0,2.5)\nkinds: domain domain domain\n"
        "endian: big\nencoding: gzip\nspace origin: (0,0,0)\ndata file: big.raw.gz\n")
    return folder


def _copy_format(formats, name, tmp_path):
    header, data = FORMATS[name]
    for f in (header, data):
        if f:
            shutil.copy(formats / f, tmp_path / f)
    return tmp_path / header, tmp_path / (data or header)


@pytest.fixture(scope="session")
def dicom_slices():
    """Eight consecutive slices of the real DICOM series, cropped to 48x48 (2-D SimpleITK images, int16 HU)."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(data_path("ct", "totalseg-example-dicom", "dicom")))
    return [sitk.ReadImage(f)[240:288, 330:378, 0] for f in files[6:14]]


def write_series(folder, slices, z=None, shift_mm=0.0, uid="1.2.826.0.1.3680043.2.1125.1", modality="CT",
                 tilt_slice=None, name="s"):
    """Write ``slices`` as a DICOM series: slice k at z[k] (2 mm apart by default), shifted ``shift_mm`` * k in y
    (gantry tilt), all axial except ``tilt_slice`` (a coronal one)."""
    folder.mkdir(parents=True, exist_ok=True)
    z = [2.0 * k for k in range(len(slices))] if z is None else z
    for k, (image, zk) in enumerate(zip(slices, z)):
        image = sitk.Image(image)
        orientation = "1\\0\\0\\0\\0\\-1" if k == tilt_slice else "1\\0\\0\\0\\1\\0"
        tags = {"0008|0060": modality, "0020|000e": uid, "0008|0018": f"{uid}.{k + 1}", "0020|0013": str(k + 1),
                "0008|103e": f"{modality} test", "0020|0037": orientation,
                "0020|0032": f"-20.0\\{-30.0 + k * shift_mm!r}\\{float(zk)!r}"}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{name}{k:03d}.dcm"))
        writer.Execute(image)
    return folder


# -- files cut short or damaged -------------------------------------------------------------------------
@pytest.mark.parametrize("name", FORMATS)
def test_intact_files_read_exactly(formats, block, name):
    image = read_image(formats / FORMATS[name][0])
    assert np.array_equal(image.array, sitk.GetArrayFromImage(block))


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_files_are_refused(formats, name, tmp_path):
    header, data = _copy_format(formats, name, tmp_path)
    content = data.read_bytes()
    data.write_bytes(content[:int(len(content) * 0.6)])
    with pytest.raises(InputError, match=r"truncated or corrupt file \(") as err:
        read_image(header)
    text = str(err.value)
    assert text.startswith(f"{header}: ") and "\n" not in text
    if data != header:
        assert f"its data file {data.name}" in text


def test_the_issue_case_first_100_kB_of_lidc(lidc_dir, tmp_path):
    cut = tmp_path / "image.nii.gz"
    with open(lidc_dir / "image.nii.gz", "rb") as f:
        cut.write_bytes(f.read(100_000))
    with pytest.raises(InputError, match=r"image.nii.gz: truncated or corrupt file \(the gzip stream ends after "
                                         r"100 kB, before its end marker: it decodes to [\d.]+ kB of the 69.7 MB "
                                         r"the header describes\)$"):
        read_image(cut)


def test_damaged_gzip_stream_is_refused(formats, tmp_path):
    content = bytearray((formats / "block.nii.gz").read_bytes())
    for k in range(len(content) // 2, len(content) // 2 + 64):
        content[k] ^= 0x5A
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(bytes(content))
    with pytest.raises(InputError, match=r"bad.nii.gz: truncated or corrupt file \(the gzip stream (is damaged|ends)"):
        read_image(bad)


def test_intact_gzip_is_confirmed_by_its_checksum_without_a_second_decode(formats, block, monkeypatch):
    def no_full_decode(*args):
        raise AssertionError("the whole stream was decoded again")

    monkeypatch.setattr(integrity, "check_stream", no_full_decode)
    for name in ("block.nii.gz", "block.nrrd", "block.mha", "block.mhd"):
        assert np.array_equal(read_image(formats / name).array, sitk.GetArrayFromImage(block))


def test_multi_member_gzip_and_scaled_nifti_are_accepted(formats, block, tmp_path):
    """When the quick checksum cannot apply, the whole stream is decoded and a good file is still read."""
    raw = (formats / "block.nii").read_bytes()
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:100_000]) + gzip.compress(raw[100_000:]))
    assert np.array_equal(read_image(multi).array, sitk.GetArrayFromImage(block))
    scaled = bytearray(raw)
    struct.pack_into("<ff", scaled, 112, 2.0, -5.0)          # scl_slope, scl_inter: ITK returns floats
    (tmp_path / "scaled.nii.gz").write_bytes(gzip.compress(bytes(scaled)))
    image = read_image(tmp_path / "scaled.nii.gz")
    assert np.array_equal(image.array, 2.0 * sitk.GetArrayFromImage(block) - 5.0)
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(bytes(scaled))[:50_000])
    with pytest.raises(InputError, match="truncated or corrupt file"):
        read_image(tmp_path / "cut.nii.gz")


def test_missing_detached_data_file(formats, tmp_path):
    shutil.copy(formats / "raw.mhd", tmp_path / "raw.mhd")
    with pytest.raises(InputError, match=r"raw.mhd: its data file raw.raw \(named in its header\) does not exist"):
        read_image(tmp_path / "raw.mhd")


def test_nifti2_header_layout(block, tmp_path):
    """ITK here does not read NIfTI-2, but its header is parsed: a cut file is named as such, not as unreadable."""
    arr = sitk.GetArrayFromImage(block)
    head = bytearray(544)
    struct.pack_into("<i8s2h8q", head, 0, 540, b"n+2\0\r\n\x1a\n", 4, 16, 3, 64, 64, 32, 1, 1, 1, 1)
    struct.pack_into("<8dq", head, 104, 1.0, 0.7, 0.7, 2.5, 0, 0, 0, 0, 544)
    path = tmp_path / "n2.nii.gz"
    path.write_bytes(gzip.compress(bytes(head) + arr.astype("<i2").tobytes()))
    layout = data_layout(path)
    assert (layout.prefix, layout.data_bytes, layout.spacing) == (544, arr.nbytes, (0.7, 0.7, 2.5))
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(InputError, match="truncated or corrupt file"):
        read_image(path)


# -- spacing, directions, voxel values --------------------------------------------------------------------
def _edit(source, target, old: bytes, new: bytes):
    content = source.read_bytes()
    assert old in content
    target.write_bytes(content.replace(old, new, 1))
    return target


@pytest.mark.parametrize("pixdim_z", [0.0, -2.5])
def test_nifti_zero_or_negative_spacing(formats, tmp_path, pixdim_z):
    """ITK would read pixdim 0 as spacing 1 and a negative one as a flip: both refused."""
    content = bytearray((formats / "block.nii").read_bytes())
    struct.pack_into("<f", content, 76 + 3 * 4, pixdim_z)
    (tmp_path / "s.nii.gz").write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(InputError, match=r"s.nii.gz: zero or negative voxel spacing in its header \(0.703125 x "
                                         r"0.703125 x -?[02].?5? mm\)"):
        read_image(tmp_path / "s.nii.gz")


def test_metaimage_and_nrrd_zero_or_negative_spacing(formats, tmp_path):
    for value in (b"0", b"-2.5"):
        bad = _edit(formats / "raw.mha", tmp_path / "s.mha", b"ElementSpacing = 0.703125 0.703125 2.5",
                    b"ElementSpacing = 0.703125 0.703125 " + value)
        with pytest.raises(InputError, match="zero or negative voxel spacing"):
            read_image(bad)
    bad = _edit(formats / "raw.nrrd", tmp_path / "s.nrrd", b"(0,0,2.5)", b"(0,0,0)")
    with pytest.raises(InputError, match="zero or negative voxel spacing"):
        read_image(bad)


def test_non_orthonormal_directions(formats, tmp_path):
    cases = [
        _edit(formats / "raw.mha", tmp_path / "shear.mha", b"TransformMatrix = 1 0 0 0 -1 0",
              b"TransformMatrix = 1 0 0 0.3 -1 0"),
        _edit(formats / "raw.nrrd", tmp_path / "shear.nrrd", b"(0,-0.703125,0)", b"(0.2,-0.703125,0)"),
    ]
    content = bytearray((formats / "block.nii").read_bytes())
    struct.pack_into("<hh", content, 252, 0, 1)              # sform only,
    struct.pack_into("<f", content, 280 + 4, 0.3)           # with a shear in srow_x
    (tmp_path / "shear.nii").write_bytes(bytes(content))
    cases.append(tmp_path / "shear.nii")
    for path in cases:
        with pytest.raises(InputError, match=rf"{path.name}: the axis directions (in its header )?are not orthonormal"):
            read_image(path)
    with pytest.raises(InputError, match="not orthonormal"):
        Image(np.zeros((2, 2, 2)), direction=[[1, 0.3, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(InputError, match="spacing must be positive"):
        Image(np.zeros((2, 2, 2)), spacing=(1.0, 0.0, 1.0))
    Image(np.zeros((2, 2, 2)), direction=np.diag([1.0, -1.0, 1.0])[:, [1, 0, 2]])   # a flip and a swap are fine


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_voxels(block, tmp_path, bad_value, suffix):
    """ITK's NIfTI reader turns NaN / Inf into 0 (the file's data are checked); the others keep them (the array)."""
    image = sitk.Cast(block, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(image)
    arr[3, 10:12, 20] = bad_value
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(tmp_path / f"f{suffix}"))
    with pytest.raises(InputError, match=rf"f{suffix}: 2 of its 131,072 voxels are NaN or infinite"):
        read_image(tmp_path / f"f{suffix}")
    arr[3, 10:12, 20] = 0.0
    good = sitk.GetImageFromArray(arr)
    good.CopyInformation(image)
    sitk.WriteImage(good, str(tmp_path / f"g{suffix}"))
    assert np.array_equal(read_image(tmp_path / f"g{suffix}").array, arr)


# -- DICOM folders ----------------------------------------------------------------------------------------
def test_one_clean_series_reads_without_a_note(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "ct", dicom_slices)
    with collect_notes() as notes:
        image = read_image(folder)
    assert notes == []
    assert image.shape == (8, 48, 48) and np.allclose(image.spacing, (0.9765625, 0.9765625, 2.0))
    assert np.array_equal(image.array[3], sitk.GetArrayFromImage(dicom_slices[3]))


def test_several_series_read_the_largest_ct_with_a_note(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "mixed", dicom_slices[:5], uid="1.2.3.1", name="ct")
    write_series(folder, dicom_slices, uid="1.2.3.2", modality="MR", name="mr")       # larger, but MR
    with collect_notes() as notes:
        image = read_image(folder)
    assert image.shape == (5, 48, 48)
    assert len(notes) == 1 and notes[0] == (
        f"{folder}: holds 2 DICOM series (MR, 8 slices, 'MR test'; CT, 5 slices, 'CT test'); read the largest CT "
        f"series (CT, 5 slices, 'CT test')")


def test_several_series_none_ct_read_the_largest_with_a_note(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "mr", dicom_slices[:3], uid="1.2.3.1", modality="MR", name="a")
    write_series(folder, dicom_slices[:6], uid="1.2.3.2", modality="MR", name="b")
    with collect_notes() as notes:
        image = read_image(folder)
    assert image.shape == (6, 48, 48)
    assert len(notes) == 1 and "none of them CT" in notes[0] and notes[0].endswith("read the largest (MR, 6 slices, "
                                                                                    "'MR test')")


def test_missing_slice_in_the_real_series_is_refused(tmp_path):
    source = data_path("ct", "totalseg-example-dicom", "dicom")
    files = sitk.ImageSeriesReader().GetGDCMSeriesFileNames(str(source))
    folder = tmp_path / "missing"
    folder.mkdir()
    for k, f in enumerate(files):
        if k != 9:
            shutil.copy(f, folder)
    with pytest.raises(InputError, match=rf"^{folder}: missing slices in the DICOM series: 1 gap\(s\) wider than "
                                         rf"1.5x the usual spacing of 2 mm, the widest 4 mm between -788.5 and "
                                         rf"-784.5 mm along the stack \(about 1 slice\(s\) missing\)$"):
        read_image(folder)


def test_exact_duplicate_slice_is_dropped_with_a_note(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "dup", dicom_slices)
    shutil.copy(folder / "s003.dcm", folder / "s003_copy.dcm")
    with collect_notes() as notes:
        image = read_image(folder)
    assert image.shape == (8, 48, 48) and np.isclose(image.spacing[2], 2.0)
    assert notes == [f"{folder}: dropped 1 duplicate slice file(s) with the same position and pixels as another "
                     f"slice (s003_copy.dcm)"]


def test_different_slices_at_one_position_are_refused(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "two", dicom_slices, z=[0, 2, 4, 4, 6, 8, 10, 12])
    with pytest.raises(InputError, match=r"two different slices at the same position \(4.00 mm along the stack: "
                                         r"s002.dcm and s003.dcm\)"):
        read_image(folder)


def test_uneven_spacing_is_refused(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "uneven", dicom_slices, z=[0, 2, 4, 6.6, 8.6, 10.6, 12.6, 14.6])
    with pytest.raises(InputError, match=r"uneven slice spacing in the DICOM series: gaps from 2 to 2.6 mm; read as "
                                         r"a regular grid of 2.09 mm a slice would lie 0.34 mm off"):
        read_image(folder)


def test_gantry_tilt_is_refused(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "tilt", dicom_slices, shift_mm=0.5)     # 14 deg: SimpleITK would shear it
    with pytest.raises(InputError, match=r"gantry tilt in the DICOM series: the slices are not perpendicular to the "
                                         r"stack direction \(tilted 14.0 deg, shifted up to 3.5 mm"):
        read_image(folder)


def test_mixed_orientations_are_refused(dicom_slices, tmp_path):
    folder = write_series(tmp_path / "mixed", dicom_slices, tilt_slice=7)
    with pytest.raises(InputError, match=r"have 2 different orientations \(ImageOrientationPatient\)"):
        read_image(folder)


def test_stack_problem_tolerances():
    normal = np.array([0.0, 0.0, 1.0])
    regular = np.array([[0.0, 0.0, 2.5 * k] for k in range(10)])
    assert stack_problem(regular, normal, 0.7) is None
    jitter = regular + np.array([[0, 0, 0.2 * (k % 2)] for k in range(10)])        # 8 % of the spacing: accepted
    assert stack_problem(jitter, normal, 0.7) is None
    drift = regular + np.array([[0, 0.03 * k, 0] for k in range(10)])              # 0.27 mm in-plane: accepted
    assert stack_problem(drift, normal, 0.7) is None
    gap = np.delete(regular, [4, 5], axis=0)
    assert "about 2 slice(s) missing" in stack_problem(gap, normal, 0.7)
    just_under = regular.copy()
    just_under[5:, 2] += 2.5 * (GAP_FACTOR - 1) - 0.01
    assert "missing" not in (stack_problem(just_under, normal, 0.7) or "")


# -- notes on the command line -------------------------------------------------------------------------------
def test_notes_are_one_line_on_stderr_and_other_warnings_pass(capsys):
    with pytest.warns(UserWarning, match="something else"), notes_on_stderr():
        warnings.warn("chose series 2\nof 3", InputNote)
        warnings.warn("chose series 2\nof 3", InputNote)        # every time, not once per place
        warnings.warn("something else", UserWarning)          # not a note: shown as Python shows warnings
    err = capsys.readouterr().err
    assert err == "spineseg: note: chose series 2 of 3\n" * 2


def test_cli_prints_the_note(dicom_slices, tmp_path, capsys):
    from SpineSegLib.cli import main

    folder = write_series(tmp_path / "mixed", dicom_slices[:4], uid="1.2.3.1", name="ct")
    write_series(folder, dicom_slices[:2], uid="1.2.3.2", modality="OT", name="ot")
    main(["evaluate", str(folder), str(folder)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("spineseg: note: ")]
    assert len(lines) == 2 and all("read the largest CT series (CT, 4 slices" in line for line in lines)


# -- every real file still reads ------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_real_file_reads_without_a_refusal_or_note():
    paths = sorted(DATA.rglob("*.nii.gz")) + [data_path("ct", "totalseg-example-dicom", "dicom")]
    assert len(paths) > 100
    start = time.perf_counter()
    with collect_notes() as notes:
        for path in paths:
            read_image(path)
    assert notes == []
    print(f"{len(paths)} real files read in {time.perf_counter() - start:.1f} s")
