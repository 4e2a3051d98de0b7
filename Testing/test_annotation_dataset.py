"""Annotation datasets on real scans: folder format, versions, locking, crash recovery, relabelling, export.

Cases: MyoSegmenTUM lumbar MR (labels 1-5 = L1-L5, imported with the top-down:L1 convention), a VerSe
mask with real geometry, the TotalSegmentator DICOM series and LIDC-IDRI-0001. The component tests at
the end (naming, conformance, conventions, versions, locking, consistency, export) run on crops of the
MyoSegmenTUM cases around their labelled vertebrae.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, data_path
from SpineSegLib.annotation import create_dataset, open_dataset, relabel_vertebrae
from SpineSegLib.annotation import faults
from SpineSegLib.annotation.export import export_dataset, nnunet_label_map
from SpineSegLib.core.errors import InputError, OutputExistsError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.resample import resample_to_spacing

MYO = "mr/vertebral-bodies-myosegmentum"


def myo(n: int, kind: str = "img") -> Path:
    return data_path(MYO, f"{n:02d}_{kind}.nii.gz")


@pytest.fixture(scope="module")
def mr_template(tmp_path_factory):
    """Six MR cases, three with imported reference labels (L1-L5 -> VerSe 20-24); built once."""
    root = tmp_path_factory.mktemp("template") / "ds"
    create_dataset(root, [str(myo(n)) for n in range(1, 7)], [str(myo(n, "vb")) for n in (1, 2, 3)],
                   label_convention="top-down:L1", split="0.5,0.25,0.25", seed=1, crop_unlabelled="above")
    return root


@pytest.fixture
def mr_dataset(mr_template, tmp_path):
    """A fresh copy of the template for each test."""
    root = tmp_path / "ds"
    shutil.copytree(mr_template, root, symlinks=True)
    return open_dataset(root)


def files_of(root: Path) -> dict:
    """Every file under ``root`` with its bytes' hash (to prove nothing changed)."""
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


# -- init ------------------------------------------------------------------------------------------
def test_init_imports_images_labels_and_split(mr_dataset):
    ds = mr_dataset
    names = [e.name for e in ds.list_cases()]
    assert names == ["01", "02", "03", "04", "05", "06"]
    assert ds.counts()["corrected"] == 3 and ds.counts()["new"] == 3
    assert ds.modality == "mr" and ds.crop_unlabelled == "above"
    assert {s: sum(v == s for v in ds.split.values()) for s in ("train", "validation", "test")} == \
        {"train": 2, "validation": 2, "test": 2}
    # the image is an exact copy, the labels are VerSe ids on the image grid
    assert (ds.root / "images" / "01.nii.gz").read_bytes() == myo(1).read_bytes()
    image, labels, entry = ds.load_case("01")
    ref = read_image(myo(1, "vb"))
    assert labels.same_grid(image)
    assert sorted(np.unique(labels.array).tolist()) == [0, 20, 21, 22, 23, 24]
    assert np.array_equal(labels.array == 20, ref.array == 1) and np.array_equal(labels.array == 24, ref.array == 5)
    v = entry.current_version
    assert (v["kind"], v["status"], v["convention"]) == ("import", "corrected", "top-down:L1")
    assert v["source"].endswith("01_vb.nii.gz") and v["user"]
    # a new case: no labels; the next case to work on is the first without labels
    assert ds.load_case("04").labels is None
    assert ds.next_case() == "04" and ds.next_case(after="04") == "05" and ds.next_case(after="06") == "04"
    assert ds.next_case(status="corrected", after="01") == "02"


def test_init_split_fractions_are_exact(tmp_path):
    ds = create_dataset(tmp_path / "ds", [str(myo(n)) for n in range(1, 11)], split="0.6,0.2,0.2", seed=3)
    counts = {s: sum(v == s for v in ds.split.values()) for s in ("train", "validation", "test")}
    assert counts == {"train": 6, "validation": 2, "test": 2}
    again = create_dataset(tmp_path / "ds2", [str(myo(n)) for n in range(1, 11)], split="0.6,0.2,0.2", seed=3)
    assert again.split == ds.split


def test_init_refuses_bad_input_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        create_dataset(tmp_path / "a", [str(tmp_path / "nothing_*.nii.gz")])
    with pytest.raises(InputError, match="no image gives the case name"):
        create_dataset(tmp_path / "b", [str(myo(1))], [str(myo(2, "vb"))])
    # a label map on a grid elsewhere in space: refused with the reason, and no half-built dataset is left behind
    other = resample_to_spacing(read_image(myo(1, "vb")), (2.0, 2.0, 2.0), label=True)
    other.origin = tuple(np.add(other.origin, (0.0, 150.0, 0.0)))
    write_image(other, tmp_path / "labels" / "01_vb.nii.gz")
    with pytest.raises(InputError, match="do not share a grid and their fields of view overlap by only"):
        create_dataset(tmp_path / "c", [str(myo(1))], [str(tmp_path / "labels" / "01_vb.nii.gz")])
    assert not (tmp_path / "c").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c.init")]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("keep me")
    with pytest.raises(OutputExistsError):
        create_dataset(tmp_path / "d", [str(myo(1))])
    assert (tmp_path / "d" / "x.txt").read_text(encoding="utf-8") == "keep me"


def test_init_from_a_dicom_folder_and_ct_correction(tmp_path):
    folder = data_path("ct", "totalseg-example-dicom", "dicom")
    ds = create_dataset(tmp_path / "ct", [str(folder)], split="1,0,0", mode="link")
    (entry,) = ds.list_cases()
    assert entry.image == f"images/{entry.name}.nii.gz"       # DICOM is converted even with --link
    assert ds.modality == "ct"
    image, labels, _ = ds.load_case(entry.name)
    assert labels is None and image.shape[0] == 20
    ref = read_image(data_path("ct", "totalseg-example-dicom", "vertebrae.nii.gz"))
    v = ds.save_correction(entry.name, ref, user="anna")
    _, labels, e = ds.load_case(entry.name)
    assert v == 1 and e.status == "corrected" and e.current_version["user"] == "anna"
    assert np.array_equal(resample_to_spacing(labels, labels.spacing, label=True).array, labels.array)
    assert sorted(np.unique(labels.array).tolist()) == sorted(np.unique(ref.array).tolist())


# -- versions -----------------------------------------------------------------------------------------
def test_corrections_become_new_versions_and_never_overwrite(mr_dataset):
    ds = mr_dataset
    before = files_of(ds.root / "labels" / "01")
    image, labels, entry = ds.load_case("01")
    edited = labels.array.copy()
    edited[edited == 24] = 0                         # the annotator removes L5
    v2 = ds.save_correction("01", labels.with_array(edited), user="anna", based_on=entry.current, note="no L5")
    v3 = ds.save_correction("01", labels, user="ben", based_on=v2)
    assert (v2, v3) == (2, 3)
    e = ds.case("01")
    assert e.current == 3 and e.status == "corrected" and [v["version"] for v in e.versions] == [1, 2, 3]
    assert [v["user"] for v in e.versions][1:] == ["anna", "ben"]
    assert e.version(2)["note"] == "no L5" and e.version(2)["based_on"] == 1
    # the earlier files are untouched; each version is readable and holds what was saved
    after = files_of(ds.root / "labels" / "01")
    assert all(after[k] == h for k, h in before.items())
    assert 24 not in np.unique(ds.load_case("01", version=2).labels.array)
    assert np.array_equal(ds.load_case("01").labels.array, labels.array)
    # sidecars repeat the manifest entries
    side = json.loads((ds.root / "labels" / "01" / "v002.json").read_text(encoding="utf-8"))
    assert side["user"] == "anna" and side["version"] == 2 and side["sha256"] == e.version(2)["sha256"]
    # a save started from an older version records that someone else saved in between
    ds.save_correction("01", labels, user="carl", based_on=2)
    assert "not version 2" in " ".join(ds.case("01").current_version["warnings"])
    # reviewing, then a new correction makes it "corrected" again
    assert ds.mark_reviewed("01", user="dora") == 4
    assert ds.case("01").status == "reviewed" and ds.case("01").current_version["reviewed_by"] == "dora"
    ds.save_correction("01", labels, user="anna")
    assert ds.case("01").status == "corrected"


def test_predictions_never_replace_annotations(mr_dataset):
    ds = mr_dataset
    model = {"path": "/models/m.pt", "name": "m.pt", "sha256": "ab" * 32, "format_version": 1}
    image, labels, _ = ds.load_case("01")
    assert ds.save_prediction("01", labels, model) is None           # corrected: untouched
    assert ds.case("01").current == 1 and "predictions never replace" in ds.last_save["skipped"]
    assert ds.save_prediction("04", labels.with_array(labels.array), model) == 1
    e = ds.case("04")
    assert e.status == "predicted" and e.current_version["model"]["sha256"] == "ab" * 32
    assert ds.save_prediction("04", labels, model) is None            # same model again: not needed
    assert ds.save_prediction("04", labels, {**model, "sha256": "cd" * 32}) == 2
    assert ds.save_prediction("04", labels, model, redo=True) == 3


def test_label_map_on_another_grid_is_resampled_or_refused_and_permuted_axes_are_mapped_exactly(mr_dataset):
    ds = mr_dataset
    image, labels, _ = ds.load_case("02")
    snapshot = files_of(ds.root)
    away = Image(labels.array, labels.spacing, np.asarray(labels.origin) + 300.0, labels.direction)
    with pytest.raises(InputError, match="label map for case 02 and the image do not share a grid and do not "
                                         "overlap in space at all: are they the same scan"):
        ds.save_correction("02", away)
    with pytest.raises(InputError, match="non-integer"):
        ds.save_correction("02", labels.array.astype(np.float32) + 0.5)
    with pytest.raises(InputError, match="shape"):
        ds.save_correction("02", labels.array[:, :, :-1])
    assert files_of(ds.root) == snapshot                                # nothing written
    # the same voxels with the axes in another order (and one flipped): stored exactly on the image grid
    # new numpy axes (k', j', i') = (reversed old i, old j, old k)
    arr = np.flip(np.transpose(labels.array, (2, 1, 0)), axis=0)
    d, sp = labels.direction, labels.spacing
    direction = np.stack([d[:, 2], d[:, 1], -d[:, 0]], axis=1)
    origin = labels.index_to_lps([labels.size[0] - 1, 0, 0])
    permuted = Image(arr, (sp[2], sp[1], sp[0]), origin, direction)
    assert not permuted.same_grid(labels)
    v = ds.save_correction("02", permuted, user="anna")
    assert np.array_equal(ds.load_case("02").labels.array, labels.array)
    assert "another axis order" in " ".join(ds.case("02").version(v)["warnings"])
    # another grid over the same field of view: resampled (nearest neighbour), and the version says so
    coarse = resample_to_spacing(labels, (2.0, 2.0, 2.0), label=True)
    v = ds.save_correction("02", coarse, user="anna")
    saved = ds.load_case("02").labels
    assert saved.same_grid(image) and set(np.unique(saved.array)) == set(np.unique(labels.array))
    assert 2 * np.count_nonzero((saved.array > 0) & (labels.array > 0)) / \
        (np.count_nonzero(saved.array) + np.count_nonzero(labels.array)) > 0.9
    warning = " ".join(ds.case("02").version(v)["warnings"])
    assert "resampled the label map for case 02 onto the image's grid (nearest neighbour; spacing 2x2x2 -> 1x1x1" \
        in warning and "fields of view overlap 98 %" in warning


# -- concurrency and crashes -------------------------------------------------------------------------------
SAVER = textwrap.dedent("""
    import sys, time
    from SpineSegLib.annotation import open_dataset
    ds = open_dataset(sys.argv[1])
    labels = ds.load_case("03").labels
    for k in range(int(sys.argv[3])):
        ds.save_correction("03", labels, user=sys.argv[2])
""")


def test_concurrent_saves_keep_every_version(mr_dataset, tmp_path):
    ds = mr_dataset
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "SpineSeg"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(ds.root), user, "3"], env=env,
                              stderr=subprocess.PIPE, text=True) for user in ("anna", "ben")]
    # and a third writer in this process, on a thread
    labels = ds.load_case("03").labels
    t = threading.Thread(target=lambda: [ds.save_correction("03", labels, user="carl") for _ in range(2)])
    t.start()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    t.join()
    e = ds.case("03")
    numbers = [v["version"] for v in e.versions]
    assert numbers == list(range(1, 10))                           # 1 import + 3 + 3 + 2, none lost
    assert sorted(v["user"] for v in e.versions[1:]) == ["anna"] * 3 + ["ben"] * 3 + ["carl"] * 2
    assert e.current == 9 and e.revision == 9
    on_disk = sorted(p.name for p in (ds.root / "labels" / "03").glob("v*.nii.gz"))
    assert on_disk == [f"v{n:03d}.nii.gz" for n in numbers]
    assert not list((ds.root / "cases").glob("*.lock")) and ds.check() == []


KILLED_SAVER = textwrap.dedent("""
    import sys, time
    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation import faults
    def hook(point):
        if point == sys.argv[2]:
            print("at", point, flush=True)
            time.sleep(600)
    faults.FAULT_HOOK = hook
    ds = open_dataset(sys.argv[1])
    image, labels, entry = ds.load_case("01")
    labels.array[labels.array == 22] = 0
    ds.save_correction("01", labels, user="killed-anna", based_on=entry.current)
""")


@pytest.mark.parametrize("point", ["label-written", "sidecar-written"])
def test_kill_during_save_loses_nothing(mr_dataset, tmp_path, point):
    ds = mr_dataset
    v1 = (ds.root / "labels" / "01" / "v001.nii.gz").read_bytes()
    manifest_before = (ds.root / "cases" / "01.json").read_text(encoding="utf-8")
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SAVER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "SpineSeg"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ds.root), point], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"at {point}", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # the earlier version and the manifest are exactly as before; the lock is left behind (stale)
    assert (ds.root / "labels" / "01" / "v001.nii.gz").read_bytes() == v1
    assert (ds.root / "cases" / "01.json").read_text(encoding="utf-8") == manifest_before
    assert (ds.root / "cases" / "01.lock").exists()
    assert ds.load_case("01").entry.current == 1
    problems = ds.check()
    kinds = {p.kind for p in problems}
    if point == "label-written":
        assert "orphan-version" in kinds and "v002.nii.gz is not in the manifest" in str(problems)
    else:
        assert "orphan-metadata" in kinds
    assert "stale-lock" in kinds
    ds.check(repair=True)
    assert ds.check() == []
    e = ds.case("01")
    if point == "label-written":
        # the interrupted save is recovered with its metadata and is the current version
        assert e.current == 2 and e.current_version["user"] == "killed-anna"
        assert 22 not in np.unique(ds.load_case("01").labels.array)
    else:
        assert e.current == 1
    assert (ds.root / "labels" / "01" / "v001.nii.gz").read_bytes() == v1
    # the next save works despite the killed process's lock; it takes the next number (a metadata file
    # without its label held nothing, and repair removed it)
    assert ds.save_correction("01", ds.load_case("01").labels, user="anna") == (3 if point == "label-written" else 2)


def test_exception_between_label_file_and_manifest(mr_dataset, monkeypatch):
    ds = mr_dataset

    def boom(point):
        if point == "label-written":
            raise RuntimeError("disk unplugged")
    monkeypatch.setattr(faults, "FAULT_HOOK", boom)
    labels = ds.load_case("02").labels
    with pytest.raises(RuntimeError, match="disk unplugged"):
        ds.save_correction("02", labels, user="anna")
    monkeypatch.setattr(faults, "FAULT_HOOK", None)
    assert ds.case("02").current == 1                              # manifest untouched
    assert not (ds.root / "cases" / "02.lock").exists()             # the lock was released
    assert not list((ds.root / "labels" / "02").glob(".tmp-*"))
    (problem,) = ds.check()
    assert problem.kind == "orphan-version" and problem.repairable
    # a later save does not reuse the orphan's number; repair then keeps both, the newest current
    assert ds.save_correction("02", labels, user="ben") == 3
    ds.check(repair=True)
    e = ds.case("02")
    assert [v["version"] for v in e.versions] == [1, 2, 3] and e.current == 3
    assert e.version(2)["user"] == "anna"


def test_hand_edited_manifest_is_reported_and_rebuilt(mr_dataset):
    ds = mr_dataset
    labels = ds.load_case("01").labels
    ds.save_correction("01", labels, user="anna")
    path = ds.root / "cases" / "01.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"status": "corrected",', '"status": "corrected"', 1))
    # reported clearly, everywhere; nothing is written
    broken = [e for e in ds.list_cases() if e.problem]
    assert [e.name for e in broken] == ["01"] and "not valid JSON (line" in broken[0].problem
    with pytest.raises(InputError, match=r"01\.json: case manifest is not valid JSON \(line \d+, column \d+"):
        ds.load_case("01")
    with pytest.raises(InputError, match="not valid JSON"):
        ds.save_correction("01", labels)
    assert sorted(p.name for p in (ds.root / "labels" / "01").iterdir()) == ["v001.json", "v001.nii.gz",
                                                                             "v002.json", "v002.nii.gz"]
    assert ds.counts()["broken"] == 1
    (problem,) = ds.check()
    assert problem.kind == "broken-manifest"
    ds.check(repair=True)
    e = ds.case("01")
    assert [v["version"] for v in e.versions] == [1, 2] and e.current == 2 and e.status == "corrected"
    assert e.current_version["user"] == "anna"
    assert list((ds.root / "cases").glob("01.json.broken-*"))       # the broken file is kept
    # a manifest with valid JSON but a wrong structure is caught too
    data = json.loads(path.read_text(encoding="utf-8"))
    data["current"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="current version 7 is not in 'versions'"):
        ds.load_case("01")


def test_missing_image_is_reported(mr_dataset):
    ds = mr_dataset
    (ds.root / "images" / "05.nii.gz").unlink()
    e = ds.case("05", strict=False)
    assert e.image_missing
    with pytest.raises(InputError, match=r"case 05: its image .*05\.nii\.gz is missing"):
        ds.load_case("05")
    assert ds.counts()["image missing"] == 1
    assert "05" not in [ds.next_case(after=c) for c in ("01", "04", "06")]
    assert [p.kind for p in ds.check()] == ["missing-image"]


def test_stale_lock_of_a_dead_process_is_broken(mr_dataset):
    ds = mr_dataset
    lock = ds.root / "cases" / "02.lock"
    import socket
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "user": "x", "token": "t"}))
    assert ds.save_correction("02", ds.load_case("02").labels) == 2
    assert not lock.exists()


def test_live_lock_times_out_with_a_clear_message(mr_dataset):
    from SpineSegLib.annotation.locking import DatasetLockedError, FileLock

    ds = mr_dataset
    with FileLock(ds.lock_path("02")):
        other = FileLock(ds.lock_path("02"), timeout=0.3)
        with pytest.raises(DatasetLockedError, match=r"02\.lock is held by .*process"):
            other.acquire()


# -- relabelling -------------------------------------------------------------------------------------------
def test_relabel_sequence_follows_position(mr_dataset):
    ds = mr_dataset
    image, labels, _ = ds.load_case("01")
    res = relabel_vertebrae(labels, "L1", "T12")
    assert res.mapping == {20: 19, 21: 20, 22: 21, 23: 22, 24: 23}
    assert np.array_equal(res.image.array == 19, labels.array == 20)
    res = relabel_vertebrae(labels, 22, "L4")          # the middle one: the rest follow both ways
    assert res.mapping == {20: 21, 21: 22, 22: 23, 23: 24, 24: 26}
    with pytest.raises(InputError, match="above C1"):
        relabel_vertebrae(labels, "L5", "C2")
    with pytest.raises(InputError, match="already used"):
        relabel_vertebrae(labels, "L1", "L2", only=True)
    assert relabel_vertebrae(labels, "L1", "T13").mapping == {20: 28, 21: 20, 22: 21, 23: 22, 24: 23}
    assert relabel_vertebrae(labels, "L5", "L6").mapping == {20: 21, 21: 22, 22: 23, 23: 24, 24: 25}
    # the dataset method saves a new version and records the mapping
    v, res = ds.relabel("01", "L1", "T12", user="anna")
    e = ds.case("01")
    assert v == 2 and e.current_version["kind"] == "relabel" and e.current_version["relabel"]["20"] == 19
    assert sorted(np.unique(ds.load_case("01").labels.array).tolist()) == [0, 19, 20, 21, 22, 23]
    assert ds.relabel("01", "T12", "T12")[0] is None


def test_relabel_uses_patient_geometry_not_array_order():
    mask = read_image(data_path("masks", "verse", "sub-verse004_seg-vert_msk.nii.gz"))
    ids = [int(v) for v in np.unique(mask.array) if v]
    assert mask.orientation == "PIR"            # array axis j runs from head to feet
    # flip the array along j and fix the geometry: the same anatomy, the array order reversed
    n_j = mask.shape[1]
    flipped = Image(np.flip(mask.array, axis=1).copy(), mask.spacing, mask.index_to_lps([0, n_j - 1, 0]),
                    mask.direction @ np.diag([1, -1, 1]))
    top = min(ids)                              # T9 (16), the highest vertebra of this scan
    a = relabel_vertebrae(mask, top, "C2").mapping
    b = relabel_vertebrae(flipped, top, "C2").mapping
    assert a == b and a == {v: v - top + 2 for v in ids}
    from SpineSegLib.annotation.relabel import relabel_array
    with pytest.raises(InputError, match="above C1"):     # array order alone would put T9 at the bottom
        relabel_array(np.moveaxis(flipped.array, 1, 0), top, "C2")


def test_relabel_moves_discs_with_their_vertebra():
    from SpineSegLib.annotation.relabel import relabel_array

    arr = np.zeros((30, 4, 4), np.uint8)
    arr[2:8] = 20
    arr[9:10] = 120       # disc below L1
    arr[11:17] = 21
    arr[18:19] = 121
    arr[20:26] = 22
    arr[27:29] = 61       # canal: untouched
    res = relabel_array(arr, "L1", "T12")      # no geometry: k grows downwards
    assert res.mapping == {20: 19, 21: 20, 22: 21}
    assert set(np.unique(res.array[9:10])) == {119} and set(np.unique(res.array[18:19])) == {120}
    assert set(np.unique(res.array[27:29])) == {61}


# -- export ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_formats_round_trip(mr_dataset, tmp_path):
    from SpineSegLib.iis.train.readers import read_ctspine1k, read_folder, read_verse

    ds = mr_dataset
    labels = ds.load_case("02").labels
    edited = labels.array.copy()
    edited[edited == 20] = 28                       # pretend the top one is a T13 (tests the nnU-Net mapping)
    ds.save_correction("02", labels.with_array(edited), user="anna")
    ds.mark_reviewed("03", user="ben")
    ds.save_prediction("04", labels, {"name": "m.pt", "sha256": "ab" * 32})     # predictions are not exported
    annotated = ["01", "02", "03"]

    out = tmp_path / "nnunet"
    rec = export_dataset(ds, "nnunet", out)
    assert sorted(c["case"] for c in rec["cases"]) == annotated
    dj = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    values = sorted(dj["labels"].values())
    assert values == list(range(len(values)))                         # consecutive, as nnU-Net requires
    assert dj["labels"]["L1"] == 20 and dj["labels"]["T13"] == 27 and dj["channel_names"] == {"0": "MR"}
    assert dj["numTraining"] == sum(1 for c in annotated if ds.split[c] != "test")
    for c in annotated:
        tr = "Ts" if ds.split[c] == "test" else "Tr"
        img = read_image(out / f"images{tr}" / f"{c}_0000.nii.gz")
        lab = read_image(out / f"labels{tr}" / f"{c}.nii.gz")
        assert img.same_grid(lab)
        cur = ds.load_case(c).labels.array
        mapping = nnunet_label_map(np.unique(cur))
        assert np.array_equal(lab.array, np.vectorize(lambda v: mapping.get(int(v), 0))(cur))
    # SpineSeg's own nnU-Net reader pairs imagesTr/labelsTr and imagesTs/labelsTs
    assert {c.case_id.split("/")[1] for c in read_folder(out, modality="mr")} == set(annotated)

    out = tmp_path / "verse"
    export_dataset(ds, "verse", out)
    cases = read_verse(out, require_images=False)
    assert len(cases) == 3
    for case in cases:
        name = case.case_id.split("sub-")[1]
        lab = ds.load_case(name).labels
        from scipy import ndimage
        for vid, lps in case.centroids.items():
            com = ndimage.center_of_mass(lab.array == vid)
            assert np.allclose(lps, lab.index_to_lps(np.asarray(com)[::-1]), atol=0.02)

    out = tmp_path / "ctspine1k"
    rec = export_dataset(ds, "ctspine1k", out, subset="myo")
    assert sorted(c.case_id for c in read_ctspine1k(out)) == [f"ctspine1k/{c}" for c in annotated]
    assert (out / "data" / "myo" / "01.nii.gz").exists() and (out / "label" / "myo" / "01_seg.nii.gz").exists()
    assert "T13" in rec["note"]
    # nothing is overwritten without force
    with pytest.raises(OutputExistsError):
        export_dataset(ds, "ctspine1k", out, subset="myo")
    exported = json.loads((out / "spineseg_export.json").read_text(encoding="utf-8"))
    assert {c["case"]: c["version"] for c in exported["cases"]} == {"01": 1, "02": 2, "03": 1}
    assert exported["cases"][2]["reviewed_by"] == "ben"


# -- speed ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_loading_a_case_takes_well_under_seconds(mr_dataset, tmp_path):
    import time
    ds = mr_dataset
    t = time.perf_counter()
    image, labels, _ = ds.load_case("01")
    mr_s = time.perf_counter() - t
    lidc = create_dataset(tmp_path / "lidc", [str(data_path("ct", "lidc-idri-0001", "image.nii.gz"))],
                          [str(data_path("ct", "lidc-idri-0001", "vertebrae.nii.gz"))], split="1,0,0", mode="link")
    t = time.perf_counter()
    image, labels, _ = lidc.load_case("lidc-idri-0001")
    ct_s = time.perf_counter() - t
    assert image.shape == (133, 512, 512) and labels.same_grid(image)
    # generous bounds (shared CI machine); measured figures are in Testing/benchmarks/annotation_load_timing.py
    assert mr_s < 5 and ct_s < 10


# -- components, on crops ------------------------------------------------------------------------------------------
CROP = (slice(20, 215), slice(80, 160), slice(5, 72))      # numpy (k, j, i): the five labelled vertebrae, margin


def crop(image: Image) -> Image:
    """``image`` cut to :data:`CROP`, with its geometry (the same voxels, a shifted origin)."""
    start = [CROP[2].start, CROP[1].start, CROP[0].start]
    return Image(np.ascontiguousarray(image.array[CROP]), image.spacing, image.index_to_lps(start), image.direction)


@pytest.fixture(scope="session")
def myo_crops(tmp_path_factory) -> Path:
    """``NN_img.nii.gz`` / ``NN_vb.nii.gz`` crops of MyoSegmenTUM cases 01-04 (labels 1-5 = L1-L5)."""
    folder = tmp_path_factory.mktemp("myo-crops")
    for n in range(1, 5):
        for kind in ("img", "vb"):
            write_image(crop(read_image(myo(n, kind))), folder / f"{n:02d}_{kind}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def crop_template(myo_crops, tmp_path_factory):
    root = tmp_path_factory.mktemp("crop-template") / "ds"
    create_dataset(root, [str(myo_crops / f"{n:02d}_img.nii.gz") for n in range(1, 5)],
                   [str(myo_crops / f"{n:02d}_vb.nii.gz") for n in (1, 2, 3)], label_convention="top-down:L1",
                   split="0.5,0.25,0.25", seed=0, modality="mr")
    return root


@pytest.fixture
def crop_dataset(crop_template, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(crop_template, root, symlinks=True)
    return open_dataset(root)


def test_case_names_from_files_folders_and_label_files(tmp_path):
    from SpineSegLib.annotation.naming import (
        LABEL_TAGS, assign_names, case_inputs, case_name_from, expand_inputs, match_labels,
    )

    assert case_name_from(Path("scans/07_img.nii.gz")) == "07"
    assert case_name_from(Path("LIDC-IDRI-0001/image.nii.gz")) == "LIDC-IDRI-0001"     # generic: the folder's name
    assert case_name_from(Path("sub-verse004_seg-vert_msk.nii.gz"), LABEL_TAGS) == "sub-verse004"
    assert case_name_from(Path("odd name (1)_ct.mha")) == "odd_name_1"
    # clashing names get their folder as prefix
    assert assign_names([Path("a/01_img.nii.gz"), Path("b/01_img.nii.gz"), Path("b/02.nii")]) == ["a_01", "b_01", "02"]
    for name in ("verse004_ct.nii.gz", "verse005_ct.nii.gz", ".hidden_ct.nii.gz", "sub-verse004_seg-vert_msk.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    found = expand_inputs([str(tmp_path / "verse*_ct.nii.gz"), str(tmp_path / "verse004_ct.nii.gz")])
    assert [p.name for p in found] == ["verse004_ct.nii.gz", "verse005_ct.nii.gz"]   # no hidden file, no duplicate
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.mhd")])
    inputs = case_inputs([str(tmp_path / "verse*_ct.nii.gz")])
    match_labels(inputs, [str(tmp_path / "sub-verse004_seg-vert_msk.nii.gz")])      # VerSe's sub- prefix
    assert [(i.name, i.label.name if i.label else None) for i in inputs] == \
        [("verse004", "sub-verse004_seg-vert_msk.nii.gz"), ("verse005", None)]


def test_conform_label_checks_grid_and_values(myo_crops):
    from SpineSegLib.annotation.conformance import conform_label, image_grid
    from SpineSegLib.evaluation.label_maps import label_ids

    path = myo_crops / "01_img.nii.gz"
    grid = image_grid(path)
    assert grid.same_grid(read_image(path)) and grid.array.strides == (0, 0, 0)     # no voxels read
    labels = read_image(myo_crops / "01_vb.nii.gz")
    assert label_ids(labels.array) == [int(v) for v in np.unique(labels.array) if v] == [1, 2, 3, 4, 5]
    assert label_ids(np.array([[-1, 0, 3]])) == [-1, 3] and label_ids(np.zeros((0, 2), np.uint8)) == []
    out, warnings = conform_label(labels.array > 0, grid)                            # a mask: uint8 ids
    assert out.array.dtype == np.uint8 and label_ids(out.array) == [1] and not warnings
    arr = labels.array.astype(np.int32)
    arr[arr == 5] = 300
    out, warnings = conform_label(labels.with_array(arr), grid)
    assert out.array.dtype == np.uint16 and "outside the VerSe label table: 300" in warnings[0]
    assert np.array_equal(out.array, arr)
    for bad, message in ((labels.array + 0.5, "non-integer"), (np.full(grid.shape, np.nan), "NaN"),
                         (arr - 1, "negative"), (arr * 300, "at most 65535")):
        with pytest.raises(InputError, match=message):
            conform_label(bad, grid)
    # another grid: resampled when the fields of view overlap by at least half, else refused naming the overlap
    longer = Image(labels.array, (1.0, 1.0, 1.1), labels.origin, labels.direction)
    out, warnings = conform_label(longer, grid)
    assert out.same_grid(grid) and warnings == ["resampled the label map onto the image's grid (nearest neighbour; "
                                                "spacing 1x1x1.1 -> 1x1x1 mm; fields of view overlap 90 %)"]
    slid = Image(labels.array, labels.spacing, grid.index_to_lps((0, 0, 0.6 * grid.size[2])), labels.direction)
    with pytest.raises(InputError, match=r"overlap by only 25 % \(resampling needs 50 %"):
        conform_label(slid, grid)


def test_convert_labels_maps_a_convention_onto_verse_ids(myo_crops):
    from SpineSegLib.annotation.conventions import convert_labels

    labels = read_image(myo_crops / "02_vb.nii.gz")
    assert convert_labels(labels, "verse") == (labels, [])
    verse, warnings = convert_labels(labels, "top-down:L1")
    assert not warnings and verse.same_grid(labels)
    assert np.array_equal(verse.array, np.where(labels.array > 0, labels.array + 19, 0))   # 1-5 -> L1-L5 (20-24)


def test_version_files_are_placed_without_clobbering(tmp_path):
    from SpineSegLib.annotation.versions import next_number, place_no_clobber, prediction_skip_reason

    tmp, final = tmp_path / ".tmp-a.nii.gz", tmp_path / "v001.nii.gz"
    tmp.write_bytes(b"new")
    final.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        place_no_clobber(tmp, final)
    assert final.read_bytes() == b"old" and tmp.read_bytes() == b"new"
    place_no_clobber(tmp, tmp_path / "v002.nii.gz")
    assert not tmp.exists() and (tmp_path / "v002.nii.gz").read_bytes() == b"new"
    (tmp_path / "v007.json").write_text("{}")                    # a number is never reused, even from a lone sidecar
    assert next_number(tmp_path, {"versions": [{"version": 1}, {"version": 2}]}) == 8
    model = {"sha256": "ab"}
    predicted = {"status": "predicted", "current": 1, "versions": [{"version": 1, "model": {"sha256": "ab"}}]}
    assert "predictions never replace" in prediction_skip_reason({"status": "reviewed"}, "07", model)
    assert "already predicted" in prediction_skip_reason(predicted, "07", model)
    assert prediction_skip_reason(predicted, "07", model, redo=True) is None
    assert prediction_skip_reason(predicted, "07", {"sha256": "cd"}) is None
    assert prediction_skip_reason({"status": "new", "current": None, "versions": []}, "07", model) is None


def test_commit_lock_holds_ctrl_c_until_the_commit_is_done(tmp_path):
    from SpineSegLib.annotation.locking import commit_lock

    lock = tmp_path / "07.lock"
    inside = []
    with pytest.raises(KeyboardInterrupt):
        with commit_lock(lock):
            os.kill(os.getpid(), signal.SIGINT)
            inside.append(lock.exists())                          # still running: the interrupt waits
    assert inside == [True] and not lock.exists()


def test_check_repairs_orphans_temps_and_splits(crop_dataset):
    from SpineSegLib.annotation.consistency import STALE_TMP_S
    from SpineSegLib.core.splits import hashed_split

    ds = crop_dataset
    folder = ds.labels_dir("01")
    shutil.copyfile(folder / "v001.nii.gz", folder / "v002.nii.gz")       # a label file without metadata
    stale, fresh = folder / ".tmp-stale.nii.gz", folder / ".tmp-fresh.nii.gz"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (os.path.getmtime(stale) - STALE_TMP_S - 10,) * 2)
    ds.update_info(lambda info: info["split"].pop("04"))
    v1 = ds.root / ds.case("02").current_version["file"]
    problems = ds.check()
    assert sorted(p.kind for p in problems) == ["orphan-version", "stale-temp", "unlisted-case"]
    assert all(p.repairable for p in problems) and "no metadata" in str(problems)
    ds.check(repair=True)
    assert ds.check() == [] and not stale.exists() and fresh.exists()
    e = ds.case("01")
    assert [v["version"] for v in e.versions] == [1, 2] and e.current == 1       # recovered, not made current
    assert e.version(2)["kind"] == "recovered" and e.version(2)["sha256"] == e.version(1)["sha256"]
    fractions, seed = ds.split_settings
    assert ds.split["04"] == hashed_split("04", fractions, seed)
    # deep: a label file changed outside SpineSeg no longer matches its recorded SHA-256
    write_image(read_image(v1).with_array(np.zeros_like(read_image(v1).array)), v1, force=True)
    assert ds.check() == [] and [p.kind for p in ds.check(deep=True)] == ["checksum"]


def test_export_of_crops_to_nnunet_and_verse(crop_dataset, tmp_path):
    from scipy import ndimage

    from SpineSegLib.annotation.export import export_dataset, verse_centroids

    ds = crop_dataset
    labels = ds.load_case("01").labels
    edited = labels.array.copy()
    edited[edited == 20] = 28                                      # T13: nnU-Net class 27
    edited[edited == 21] = 121                                     # a disc: the first class after 27
    ds.save_correction("01", labels.with_array(edited), user="anna")
    rec = export_dataset(ds, "nnunet", tmp_path / "nn")
    assert [c["case"] for c in rec["cases"]] == ["01", "02", "03"] and rec["cases"][0]["version"] == 2
    dj = json.loads((tmp_path / "nn" / "dataset.json").read_text(encoding="utf-8"))
    assert dj["labels"]["T13"] == 27 and dj["labels"]["disc below L2"] == 28
    assert sorted(dj["labels"].values()) == list(range(29))
    tr = "Ts" if ds.split["01"] == "test" else "Tr"
    out = read_image(tmp_path / "nn" / f"labels{tr}" / "01.nii.gz").array
    assert np.array_equal(out == 27, edited == 28) and np.array_equal(out == 28, edited == 121)
    with pytest.raises(OutputExistsError, match="would be overwritten"):
        export_dataset(ds, "nnunet", tmp_path / "nn")
    export_dataset(ds, "nnunet", tmp_path / "nn", force=True)
    # VerSe centroids: continuous voxel index along the image's i, j, k
    lab = ds.load_case("02").labels
    entries = verse_centroids(lab)
    assert entries[0] == {"direction": list(lab.orientation)}
    assert [e["label"] for e in entries[1:]] == [20, 21, 22, 23, 24]
    for e in entries[1:]:
        k, j, i = ndimage.center_of_mass(lab.array == e["label"])
        assert np.allclose([e["X"], e["Y"], e["Z"]], [i, j, k], atol=0.01)
