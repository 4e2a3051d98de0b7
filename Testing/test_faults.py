"""Faults in the middle of work (issue 13): an output folder that cannot be written, a disk that fills up while
writing, a killed child process, Ctrl-C during ``train`` and ``dataset finetune``.

Each fault must end in a one-line message naming the path and the cause (``spineseg: error: cannot write
spine.nii.gz: no space left on device``, exit status 2, no traceback) or ``spineseg: interrupted: ...`` (status
130), with no partial file under the final name, an existing file of that name byte-identical, earlier dataset
versions and manifests intact, and a resumable state where the command can resume.

The full disk is real where this machine lets a test mount a small tmpfs (root, as in CI): it is filled to the
last block before the command runs. Where mounting is not permitted, the same commands run against an injected
failure (``core.files.check_room`` reports the disk full), and the tests that need the real file system (a
read-only mount, ITK's silent truncation) are skipped with the reason. Running out of room is found in two ways:
Python's own writes raise ``OSError(ENOSPC)``; ITK's image writers and torch do not (ITK truncates the file
and returns normally, see ``test_itk_truncates_silently_on_a_full_disk``), so every atomic write checks that
the disk still has room before the rename.

The training / fine-tuning / IIS-child tests run real work in child processes and are in the slow tier.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, data_path
from SpineSegLib.cli import main
from SpineSegLib.core import files
from SpineSegLib.core.errors import Interrupted, OutputExistsError, WriteError
from SpineSegLib.core.files import check_force, replaced_atomically, write_text_atomic
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.slicer import process as background

L3 = "ct/tptbox-l3"                                     # a 73 x 47 x 73 CT crop with L2-L4 labelled
SAMPLE = REPO / "SpineSeg" / "SpineSegLib" / "resources" / "samples" / "LIDC-IDRI-0001-2.5mm" / "image.nii.gz"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "SpineSeg"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- helpers -------------------------------------------------------------------------------------------------
def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Status 2, one ``spineseg: error:`` line on stderr holding every needle, no traceback."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]   # [ 40%] progress
    assert len(lines) == 1 and lines[0].startswith("spineseg: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_of(root: Path) -> dict:
    """Every file under ``root`` with its bytes' hash (to prove nothing changed)."""
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def hidden(folder: Path) -> list:
    """Temporary files (``.name.XXXX.suffix``) and build folders left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mount_tmpfs(mount_point: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``mount_point``; None when done, else why not."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        return "no tmpfs to mount (not Linux, or no mount command)"
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(mount_point)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed ({exc})"
    return None if r.returncode == 0 else f"mounting a tmpfs is not permitted here ({r.stderr.strip() or r.returncode})"


def unmount(mount_point: Path) -> None:
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


class SmallDisk:
    """A folder on its own small disk: a real tmpfs (``real``) or, where mounting is not permitted, a plain
    folder whose "fullness" is injected into ``core.files.check_room`` (the check every atomic write makes)."""

    def __init__(self, folder: Path, real: bool, monkeypatch, reason: str = ""):
        self.folder, self.real, self.reason, self._monkeypatch = folder, real, reason, monkeypatch

    def fill(self) -> None:
        """Use up every free block (real), or make every write below the folder find the disk full."""
        if self.real:
            fd = os.open(self.folder / ".filler", os.O_WRONLY | os.O_CREAT)
            block = os.urandom(1 << 16)
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            finally:
                os.close(fd)
            return
        real_check = files.check_room
        root = str(self.folder.resolve())

        def full(folder, name=""):
            if str(Path(folder).resolve()).startswith(root):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_check(folder, name)
        self._monkeypatch.setattr(files, "check_room", full)

    def make_read_only(self) -> None:
        if not self.real:
            pytest.skip(f"a read-only file system needs a mount: {self.reason}")
        r = subprocess.run(["mount", "-o", "remount,ro", str(self.folder)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")

    def contents(self) -> dict:
        return {k: v for k, v in files_of(self.folder).items() if k != ".filler"}


@pytest.fixture
def disk(tmp_path, monkeypatch):
    folder = tmp_path / "disk"
    reason = mount_tmpfs(folder, "4m")
    yield SmallDisk(folder, reason is None, monkeypatch, reason or "")
    if reason is None:
        unmount(folder)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny IIS networks (random weights, output layers set): CT and MR ones that "see" a vertebra everywhere
    (a run of a few passes on the L3 crop), and an MR one that sees nothing (a long search: time to kill it)."""
    import torch

    from SpineSegLib.iis.model.checkpoint import save_checkpoint
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.model.network import IISNet

    folder = tmp_path_factory.mktemp("models")

    def net(modality: str, seg_bias: float, voxel_mm: float):
        kw = dict(width=4, levels=2, head_width=4, patch_size=(16, 16, 16), voxel_size_mm=(voxel_mm,) * 3)
        torch.manual_seed(0)
        model = IISNet(IISConfig(**kw) if modality == "ct" else IISConfig.default_mr(**kw))
        with torch.no_grad():
            model.segmentation_head.weight.zero_()
            model.segmentation_head.bias.fill_(seg_bias)
            model.label_head.dense.weight.zero_()
            model.label_head.dense.bias.fill_(20.0)
            model.completeness_head.dense.weight.zero_()
            model.completeness_head.dense.bias.fill_(8.0)
        return model.eval()

    return {"ct": save_checkpoint(folder / "tiny-ct.pt", net("ct", 8.0, 4.0)),
            "blind_mr": save_checkpoint(folder / "blind-mr.pt", net("mr", -8.0, 2.0)),
            "mr": save_checkpoint(folder / "tiny-mr.pt", net("mr", 8.0, 4.0))}


# -- the one atomic write, with injected faults -----------------------------------------------------------------
def _half_then_enospc(tmp):
    with open(tmp, "w") as f:
        f.write("a,b\n1,")
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_and_silent(tmp):          # what ITK does on a full disk: a truncated file, no error
    Path(tmp).write_text("a,b\n1,")


def _library_error(tmp):            # what torch.save says on a full disk
    Path(tmp).write_bytes(b"PK\x03\x04")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


@pytest.mark.parametrize("writer, disk_full, cause", [
    (_half_then_enospc, False, "no space left on device"),
    (_half_and_silent, True, "no space left on device"),
    (_library_error, True, "no space left on device"),
])
def test_a_failed_write_leaves_the_old_file_and_names_the_cause(tmp_path, monkeypatch, writer, disk_full, cause):
    path = tmp_path / "out" / "table.csv"
    path.parent.mkdir()
    path.write_text("old,content\n")
    before = digest(path)
    if disk_full:
        monkeypatch.setattr(files, "check_room",
                            lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    with pytest.raises(WriteError) as caught:
        with replaced_atomically(path) as tmp:
            writer(tmp)
    assert str(caught.value) == f"cannot write {path}: {cause}"
    assert digest(path) == before and hidden(path.parent) == []


def test_other_errors_stay_what_they_are(tmp_path):
    """A bug or a missing input inside the write is not a write failure: it passes unchanged (a traceback)."""
    path = tmp_path / "t.csv"
    with pytest.raises(ZeroDivisionError):                  # the disk has room: the writer's own error
        with replaced_atomically(path) as tmp:
            Path(tmp).write_text("x")
            1 / 0
    with pytest.raises(FileNotFoundError):                  # reading another file failed: not a write failure
        with replaced_atomically(path) as tmp:
            shutil.copyfile(tmp_path / "missing.nii.gz", tmp)
    with pytest.raises(KeyboardInterrupt):
        with replaced_atomically(path) as tmp:
            Path(tmp).write_text("x")
            raise KeyboardInterrupt
    assert not path.exists() and hidden(tmp_path) == []
    write_text_atomic(path, "fine\n")
    assert path.read_text(encoding="utf-8") == "fine\n" and hidden(tmp_path) == []


def test_unwritable_places_are_refused_before_any_work(tmp_path, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*notes.txt/sub/out.nii.gz: .*notes.txt is not a folder"):
        check_force(a_file / "sub" / "out.nii.gz")
    # a missing parent is created by the write: not refused
    assert check_force(tmp_path / "new" / "deeper" / "out.nii.gz") == tmp_path / "new" / "deeper" / "out.nii.gz"
    # --force is still asked first
    with pytest.raises(OutputExistsError):
        check_force(a_file)
    # no write permission (root ignores file modes, so os.access is what is asked)
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(WriteError, match="cannot write .*out.csv: permission denied"):
        check_force(tmp_path / "out.csv")


def test_main_prints_disk_errors_as_one_line_and_keeps_tracebacks_for_bugs(monkeypatch, capsys):
    from SpineSegLib.cli import speed

    def raises(exc):
        def run(args):
            raise exc
        return run

    monkeypatch.setattr(speed, "run", raises(OSError(errno.ENOSPC, "No space left on device", "runs/x/log.csv")))
    code, _, err = run_cli(capsys, "speed")
    assert_one_line_error(code, err, "cannot write runs/x/log.csv: no space left on device")
    monkeypatch.setattr(speed, "run", raises(Interrupted("state saved at iteration 12; continue with --resume")))
    code, _, err = run_cli(capsys, "speed")
    assert code == 130 and err == "spineseg: interrupted: state saved at iteration 12; continue with --resume\n"
    monkeypatch.setattr(speed, "run", raises(KeyboardInterrupt()))
    code, _, err = run_cli(capsys, "speed")
    assert code == 130 and err == "spineseg: interrupted\n"
    monkeypatch.setattr(speed, "run", raises(OSError(errno.ECONNRESET, "Connection reset by peer")))
    with pytest.raises(ConnectionResetError):        # not a disk problem: a traceback, as any unexpected error
        main(["speed"])


# -- the real file system ---------------------------------------------------------------------------------------
def test_itk_truncates_silently_on_a_full_disk(disk):
    """Why the room check exists: SimpleITK writes a truncated file and reports nothing on a full disk."""
    if not disk.real:
        pytest.skip(disk.reason)
    image = Image(np.random.default_rng(0).integers(0, 1000, (40, 64, 64)).astype(np.int16))
    old = disk.folder / "image.nii.gz"
    write_image(image, old)
    before = digest(old)
    disk.fill()
    sitk.WriteImage(image.to_sitk(), str(disk.folder / "direct.nii.gz"), True)      # no error ...
    assert (disk.folder / "direct.nii.gz").stat().st_size < 20_000                    # ... and a cut-off file
    (disk.folder / "direct.nii.gz").unlink()
    with pytest.raises(WriteError, match=f"cannot write {old}: no space left on device"):
        write_image(image, old, force=True)
    assert digest(old) == before and hidden(disk.folder) == [".filler"]


@pytest.fixture(scope="module")
def label_pair(tmp_path_factory):
    """The L3 crop's labels and a copy with one vertebra less: an evaluate pair on one grid."""
    folder = tmp_path_factory.mktemp("pair")
    ref = read_image(data_path(L3, "vertebrae.nii.gz"))
    pred = ref.with_array(np.where(ref.array == 21, 0, ref.array).astype(ref.array.dtype))
    write_image(pred, folder / "pred.nii.gz")
    return folder / "pred.nii.gz", data_path(L3, "vertebrae.nii.gz")


def _command(name, disk_folder, label_pair, tiny_models):
    """``(argv, output path)`` of one writing command; the output lies on the small disk."""
    if name == "classical":
        out = disk_folder / "spine.nii.gz"
        return ["classical", SAMPLE, "-o", out, "--force"], out
    if name == "iis":
        out = disk_folder / "vertebrae.nii.gz"
        return ["iis", data_path(L3, "image.nii.gz"), "-o", out, "--model", tiny_models["ct"], "--device", "cpu",
                "--threads", "1", "--keep-incomplete", "--force"], out
    pred, ref = label_pair
    out = disk_folder / f"result.{name.split('-')[1]}"
    return ["evaluate", pred, ref, f"--{name.split('-')[1]}", out, "--force"], out


COMMANDS = ("classical", "iis", "evaluate-csv", "evaluate-json")


@pytest.mark.parametrize("name", COMMANDS)
def test_disk_full_while_writing(name, disk, label_pair, tiny_models, capsys):
    """The command does all its work, then the write fails: one line naming the file, status 2, the old file
    (written before the disk filled up) byte-identical, nothing else left on the disk."""
    argv, out = _command(name, disk.folder, label_pair, tiny_models)
    out.write_bytes(b"the result of an earlier run\n")
    before = disk.contents()
    disk.fill()
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, f"cannot write {out}: no space left on device")
    assert disk.contents() == before and hidden(disk.folder) == ([".filler"] if disk.real else [])


@pytest.mark.parametrize("name", COMMANDS + ("dataset-init",))
def test_read_only_output_folder_is_refused_before_the_work(name, disk, label_pair, tiny_models, capsys):
    argv, out = _command("classical" if name == "dataset-init" else name, disk.folder, label_pair, tiny_models)
    if name == "dataset-init":
        out = disk.folder / "ds"
        argv = ["dataset", "init", out, "--images", data_path(L3, "image.nii.gz"), "--modality", "ct"]
    disk.make_read_only()
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, f"cannot write {out}", "read-only file system")
    assert time.perf_counter() - t0 < 5.0 and not out.exists()


def test_output_through_a_file_is_refused_and_a_missing_folder_is_made(tmp_path, label_pair, tiny_models, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for name in COMMANDS:
        argv, out = _command(name, tmp_path / "notes.txt" / "sub", label_pair, tiny_models)
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, f"cannot write {out}", "notes.txt is not a folder")
    # a parent folder that does not exist yet is made (as before): not a fault
    argv, out = _command("evaluate-csv", tmp_path / "new" / "deeper", label_pair, tiny_models)
    code, _, err = run_cli(capsys, *argv)
    assert code == 0 and out.stat().st_size > 0, err


def _without_root_file_rights() -> None:
    """In the child before it starts (as root): drop the capabilities that let root ignore file modes
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from its bounding set, so the program runs as a root without them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:          # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_permission_denied_without_write_access(label_pair, tmp_path, capsys):
    """An output folder of mode 555. Root may write there anyway, so as root the command runs in a child
    process without root's right to ignore file modes; as any other user, here."""
    pred, ref = label_pair
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    argv = ["evaluate", pred, ref, "--csv", locked / "result.csv"]
    if os.geteuid() != 0:
        code, _, err = run_cli(capsys, *argv)
    else:
        if not sys.platform.startswith("linux"):
            pytest.skip("dropping root's file rights needs Linux")
        try:
            proc = subprocess.run([sys.executable, "-m", "SpineSegLib", *map(str, argv)], capture_output=True,
                                  text=True, timeout=120, env=ENV, preexec_fn=_without_root_file_rights)
        except subprocess.SubprocessError as exc:
            pytest.skip(f"cannot drop root's file rights here ({exc})")
        code, err = proc.returncode, proc.stderr
    assert_one_line_error(code, err, f"cannot write {locked / 'result.csv'}: permission denied")
    assert list(locked.iterdir()) == []


# -- annotation datasets ------------------------------------------------------------------------------------------
@pytest.fixture
def dataset_on_disk(disk, tmp_path, capsys):
    """A one-case dataset (the L3 crop, labels imported as version 1) on the small disk."""
    images = tmp_path / "inputs"
    images.mkdir()
    shutil.copy(data_path(L3, "image.nii.gz"), images / "l3_img.nii.gz")
    shutil.copy(data_path(L3, "vertebrae.nii.gz"), images / "l3_vb.nii.gz")
    root = disk.folder / "ds"
    code, _, err = run_cli(capsys, "dataset", "init", root, "--images", images / "l3_img.nii.gz",
                           "--labels", images / "l3_vb.nii.gz", "--modality", "ct")
    assert code == 0, err
    corrected = read_image(images / "l3_vb.nii.gz")
    corrected = corrected.with_array(np.where(corrected.array == 23, 0, corrected.array).astype(np.uint8))
    write_image(corrected, tmp_path / "corrected.nii.gz")
    return root, tmp_path / "corrected.nii.gz"


def _check_clean(capsys, root: Path) -> None:
    code, out, err = run_cli(capsys, "dataset", "check", root)
    assert code == 0 and "no problems found" in out, out + err


def test_dataset_save_on_a_full_disk_changes_nothing(disk, dataset_on_disk, capsys):
    root, corrected = dataset_on_disk
    before = disk.contents()
    disk.fill()
    code, _, err = run_cli(capsys, "dataset", "save", root, "l3", corrected, "--user", "anna")
    assert_one_line_error(code, err, f"cannot write {root / 'labels' / 'l3'}: no space left on device")
    assert disk.contents() == before and hidden(root / "labels" / "l3") == []
    assert not (root / "cases" / "l3.lock").exists()
    _check_clean(capsys, root)


@pytest.mark.parametrize("failing", ["v002.json", "v002.nii.gz", "l3.json"])
def test_dataset_save_failing_at_each_later_write(failing, monkeypatch, dataset_on_disk, capsys):
    """The disk fills up at a later step of the commit (the version's metadata, linking the label file into
    place, the manifest): version 1 and the manifest stay as they were; what the check then finds is nothing,
    or a complete version 2 it can add back (the documented state between placing the label file and
    writing the manifest, ``annotation.versions``)."""
    root, corrected = dataset_on_disk
    v1 = digest(root / "labels" / "l3" / "v001.nii.gz")
    manifest = (root / "cases" / "l3.json").read_bytes()
    real_check, real_link = files.check_room, os.link

    def check_room(folder, name=""):
        if name == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_check(folder, name)

    def link(src, dst, **kw):
        if Path(dst).name == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_link(src, dst, **kw)
    monkeypatch.setattr(files, "check_room", check_room)
    monkeypatch.setattr(os, "link", link)
    code, _, err = run_cli(capsys, "dataset", "save", root, "l3", corrected, "--user", "anna")
    shown = {"v002.json": root / "labels" / "l3" / "v002.json", "v002.nii.gz": root / "labels" / "l3" / "v002.nii.gz",
             "l3.json": root / "cases" / "l3.json"}[failing]
    assert_one_line_error(code, err, f"cannot write {shown}: no space left on device")
    assert digest(root / "labels" / "l3" / "v001.nii.gz") == v1
    assert (root / "cases" / "l3.json").read_bytes() == manifest
    assert not (root / "cases" / "l3.lock").exists() and hidden(root / "labels" / "l3") == []
    monkeypatch.setattr(files, "check_room", real_check)
    monkeypatch.setattr(os, "link", real_link)
    code, out, _ = run_cli(capsys, "dataset", "check", root)
    if failing == "l3.json":
        assert code == 1 and "v002.nii.gz is not in the manifest" in out
    elif failing == "v002.nii.gz":
        assert code == 1 and "has no label file" in out
    else:
        assert code == 0
    code, out, _ = run_cli(capsys, "dataset", "check", root, "--repair")
    assert code == 0
    _check_clean(capsys, root)
    assert digest(root / "labels" / "l3" / "v001.nii.gz") == v1


def test_dataset_init_on_a_full_disk_leaves_nothing(disk, capsys):
    disk.fill()
    root = disk.folder / "ds"
    code, _, err = run_cli(capsys, "dataset", "init", root, "--images", data_path(L3, "image.nii.gz"),
                           "--labels", data_path(L3, "vertebrae.nii.gz"), "--modality", "ct")
    assert_one_line_error(code, err, f"cannot write {root}", "no space left on device")
    assert not root.exists() and hidden(disk.folder) == ([".filler"] if disk.real else [])


# -- a killed child process ---------------------------------------------------------------------------------------
def test_killed_child_process_is_reported_as_such(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    event = '{"kind": "progress", "fraction": 0.1, "phase": "working"}'
    child = f"import time\nprint({event!r}, flush=True)\ntime.sleep(60)\n"
    task = background.BackgroundProcess([sys.executable, "-c", child], name="SpineSeg IIS", cleanup=[work]).start()
    deadline = time.monotonic() + 30
    while "working" not in task.message and time.monotonic() < deadline:
        task.poll()
        time.sleep(0.02)
    os.kill(task.pid, signal.SIGKILL)          # the system's out-of-memory killer does this
    assert task.wait(30) == background.FAILED and task.returncode == -signal.SIGKILL
    assert task.message == ("SpineSeg IIS: the background process ended unexpectedly (killed by signal 9, SIGKILL; "
                            "the system may have run out of memory)")
    assert not work.exists()
    with pytest.raises(background.BackgroundError, match="ended unexpectedly"):
        task.raise_for_state()
    # a launcher (PythonSlicer) passes the signal on as 128 + N; a child's own error line wins
    assert background.killed_by(-15) == "killed by signal 15, SIGTERM"
    assert background.killed_by(137).startswith("killed by signal 9, SIGKILL")
    assert background.killed_by(137, expected_error=True) is None
    assert background.killed_by(2) is None and background.killed_by(0) is None


@pytest.mark.slow
def test_killing_the_iis_child_mid_run_adds_nothing_to_the_scene(tiny_models):
    from SpineSegLib.slicer.iis_logic import IISLogic
    from SpineSegLib.slicer.scene import new_scene
    from SpineSegLib.slicer.volumes import image_to_volume

    scene = new_scene()
    volume = image_to_volume(scene, read_image(data_path("mr", "vertebral-bodies-myosegmentum", "44_img.nii.gz")),
                             "MR 44")
    logic = IISLogic(scene)
    before = scene.GetNumberOfNodes()
    task = logic.start(volume, tiny_models["blind_mr"], device="cpu", threads=1)
    work = task.work_dir
    deadline = time.monotonic() + 300
    while task.poll() == background.RUNNING and "traversal" not in task.message and time.monotonic() < deadline:
        time.sleep(0.05)
    assert task.state == background.RUNNING, f"the child ended before it could be killed: {task.message}"
    os.kill(task.pid, signal.SIGKILL)
    assert task.wait(60) == background.FAILED
    assert task.message.startswith("SpineSeg IIS: the engine ended unexpectedly (killed by signal 9")
    assert scene.GetNumberOfNodes() == before, "no node added (the patch box is removed too)"
    assert not work.exists()
    with pytest.raises(background.BackgroundError, match="ended unexpectedly"):
        task.raise_for_state()


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------
def test_first_ctrl_c_asks_the_training_loop_to_stop_and_a_second_stops_at_once():
    from SpineSegLib.iis.train.loop import StopSignals

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with StopSignals() as signals:
            os.kill(os.getpid(), signal.SIGINT)
            assert signals.received == signal.SIGINT          # recorded, the iteration goes on
            os.kill(os.getpid(), signal.SIGTERM)
            assert signals.received == signal.SIGINT          # Ctrl-C wins over SIGTERM
            os.kill(os.getpid(), signal.SIGINT)                # again: at once
    assert signal.getsignal(signal.SIGINT) is handler


def _start(argv, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "SpineSegLib", *map(str, argv)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _interrupt_when(proc: subprocess.Popen, started: str, timeout: float = 300) -> str:
    """Read the child's output until a line holds ``started``, send it SIGINT, return all its output."""
    lines, deadline = [], time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if started in line:
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines[-20:])
    else:
        pytest.fail("the child ended before it started iterating:\n" + "".join(lines[-20:]))
    rest, _ = proc.communicate(timeout=300)
    return "".join(lines) + rest


def _tiny_recipe(path: Path, out: Path, cache: Path, iterations: int) -> Path:
    path.write_text(textwrap.dedent(f"""
        [model]
        modality = "mr"
        width = 4
        levels = 2
        head_width = 4
        patch_size = [24, 24, 16]
        voxel_size_mm = [4.0, 4.0, 4.0]
        pad_value = -1.5

        [data]
        cache = "{cache}"
        train = ["myosegmentum/0[1-2]"]
        validation = ["myosegmentum/03"]
        [[data.sources]]
        kind = "myosegmentum"
        root = "{data_path('mr', 'vertebral-bodies-myosegmentum')}"

        [training]
        iterations = {iterations}
        checkpoint_every = 20
        validate_every = 20
        validation_patches = 2
        log_every = 1
        final = "last"
        threads = 1
        lambda_min = 1.0

        [output]
        dir = "{out}"
    """))
    return path


@pytest.mark.slow
def test_ctrl_c_during_train_saves_a_state_that_resumes_as_the_uninterrupted_run(tmp_path):
    from SpineSegLib.iis.model.checkpoint import read_checkpoint

    import torch

    cache = tmp_path / "cache"
    whole = _tiny_recipe(tmp_path / "whole.toml", tmp_path / "whole", cache, 40)
    proc = subprocess.run([sys.executable, "-m", "SpineSegLib", "train", whole, "--quiet"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    recipe = _tiny_recipe(tmp_path / "cut.toml", tmp_path / "cut", cache, 40)
    proc = _start(["train", recipe, "--quiet"], tmp_path)
    output = _interrupt_when(proc, "iteration 10/40")
    assert proc.returncode == 130, output
    final = [line for line in output.splitlines() if line.startswith("spineseg:")]
    assert len(final) == 1 and final[0].startswith("spineseg: interrupted: state saved at iteration "), output
    assert "continue with --resume" in final[0] and "Traceback" not in output
    stopped_at = int(final[0].split("iteration ")[1].split()[0])
    run = tmp_path / "cut"
    assert read_checkpoint(run / "last.pt")["iteration"] == stopped_at >= 10
    assert not (run / "model.pt").exists() and hidden(run) == []

    proc = subprocess.run([sys.executable, "-m", "SpineSegLib", "train", run / "config.toml", "--output", run,
                           "--resume", "--quiet"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and f"resuming at iteration {stopped_at}" in proc.stdout, proc.stdout + proc.stderr
    a, b = read_checkpoint(tmp_path / "whole" / "model.pt"), read_checkpoint(run / "model.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    logged = [line.split(",")[0] for line in (run / "train_log.csv").read_text(encoding="utf-8").splitlines()[1:]]
    assert logged == [str(i) for i in range(1, 41)]          # every iteration once: none lost, none twice


@pytest.mark.slow
def test_ctrl_c_during_dataset_finetune_writes_no_weights_and_keeps_the_dataset(tmp_path, tiny_models):
    images = tmp_path / "inputs"
    images.mkdir()
    for case in ("01", "02"):
        folder = data_path("mr", "vertebral-bodies-myosegmentum")
        shutil.copy(folder / f"{case}_img.nii.gz", images / f"{case}_img.nii.gz")
        shutil.copy(folder / f"{case}_vb.nii.gz", images / f"{case}_vb.nii.gz")
    root = tmp_path / "ds"
    assert main(["dataset", "init", str(root), "--images", str(images / "*_img.nii.gz"), "--labels",
                 str(images / "*_vb.nii.gz"), "--label-convention", "top-down:L1", "--split", "1,0,0",
                 "--modality", "mr"]) == 0
    before = files_of(root)
    output = tmp_path / "models" / "finetuned.pt"
    output.parent.mkdir()
    proc = _start(["dataset", "finetune", root, "--model", tiny_models["mr"], "-o", output, "--iterations", "400",
                   "--device", "cpu", "--threads", "1", "--no-evaluation"], tmp_path)
    text = _interrupt_when(proc, "fine-tuning: iteration 10/400")
    assert proc.returncode == 130, text
    final = [line for line in text.splitlines() if line.startswith("spineseg:")]
    assert len(final) == 1 and final[0].startswith(
        f"spineseg: interrupted: fine-tuning stopped; nothing was written to {output} and the dataset is unchanged"), text
    assert "Traceback" not in text
    assert list(output.parent.iterdir()) == []                           # no weights, no temporary file
    after = {k: v for k, v in files_of(root).items() if not k.startswith(("runs/", ".cache/"))}
    assert after == before
    _check_clean_quiet(root)


def _check_clean_quiet(root: Path) -> None:
    from SpineSegLib.annotation import open_dataset

    assert open_dataset(root).check() == []
