"""Fine-tuning from the annotation panel: ``spineseg dataset finetune`` in a child process (Qt-free, no MRML).

The child (:mod:`SpineSegLib.slicer.process`: ``PythonSlicer -m SpineSegLib dataset finetune DIR --model M -o NEW
--json REPORT --run-dir RUN --events ...``) trains and compares; its progress events (``fine-tuning: iteration
120/500 ...``) are the progress. When it succeeds, :class:`FinetuneOutcome` holds the before/after per-vertebra
Dice of the validation cases (from the child's ``finetune`` report event, the same report it writes to
``--json``) and the new weights file, which the IIS model selector takes as a weights file. Nothing runs in
Slicer's process but the polling.

Cancel (or a failure) kills the child's process tree and leaves the dataset and the output as they were: the
new weights are written last and recorded in ``dataset.json`` after that, so a killed child has recorded nothing;
this module then removes the run folder it named (``DIR/runs/<time>_<name>``), a weights file the child wrote
but did not record, and the child's temporary files beside it. (The model-grid cache ``DIR/.cache`` may keep
arrays the child prepared: a cache, safe to delete, never read as data.)

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.slicer.annotation_finetune import start_finetune
    task = start_finetune(open_dataset("ds"), "iis-mr.pt", "iis-mr-ft1.pt", iterations=500,
                          on_progress=lambda f, m: print(f"{f:.0%} {m}"))
    task.wait()                        # or: a QTimer calling task.poll(); task.cancel() stops it
    task.result.before_dice, task.result.after_dice, task.result.output
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.files import check_force
from SpineSegLib.annotation.folder import RUNS_DIR
from SpineSegLib.annotation.store import AnnotationDataset
from SpineSegLib.slicer import process as background


@dataclass
class FinetuneOutcome:
    """What a finished fine-tuning gives the panel."""

    output: Path                       # the new weights file
    before_dice: Optional[float]       # per-vertebra Dice of the parent on the validation cases (None: no comparison)
    after_dice: Optional[float]        # ... of the fine-tuned model
    report: dict = field(default_factory=dict)   # the ``--json`` report (cases, per-case Dice, run folder)

    def describe(self) -> str:
        """One line for the status label."""
        def fmt(v):
            return "-" if v is None else f"{v:.3f}"
        cases = len(self.report.get("validation_cases") or [])
        compared = (f"per-vertebra Dice on {cases} validation case(s): before {fmt(self.before_dice)}, after "
                    f"{fmt(self.after_dice)}; " if self.before_dice is not None else "no validation cases to compare; ")
        return compared + f"new model {self.output}"


def finetune_arguments(ds_root, model, output, report_path, run_dir, *, iterations: int = 500,
                       lr: Optional[float] = None, device: str = "auto", threads: Optional[int] = None,
                       validation_cases=None, evaluate: bool = True, seed: int = 0,
                       user: Optional[str] = None) -> list:
    """The ``spineseg dataset finetune`` arguments for the panel's choices (the one place they are made)."""
    args = ["dataset", "finetune", Path(ds_root).resolve(), "--model", Path(model).resolve(), "-o",
            Path(output).resolve(), "--iterations", int(iterations), "--device", device, "--json", report_path,
            "--run-dir", run_dir, "--seed", int(seed), "--events"]
    if lr is not None:
        args += ["--lr", float(lr)]
    if threads:
        args += ["--threads", int(threads)]
    if validation_cases:
        args += ["--validation-cases", *[str(c) for c in validation_cases]]
    if not evaluate:
        args.append("--no-evaluation")
    if user:
        args += ["--user", user]
    return args


def _model_records(ds: AnnotationDataset) -> list:
    """The fine-tuned models ``dataset.json`` lists, read fresh."""
    try:
        ds.reload()
    except SpineSegError:
        return []
    return list(ds.info.get("models", []))


def undo_unfinished(ds: AnnotationDataset, output: Path, run_dir: Path, temporaries_before: set,
                    output_existed: bool = False, records_before: int = 0) -> None:
    """Remove what a killed or failed child left (module docstring): its run folder, an output it wrote but did
    not record (never one that was there before), and its temporary files beside the output. Nothing is removed
    when the child recorded the output (it got to the end just before it was stopped)."""
    if any(Path(m.get("path", "")) == output for m in _model_records(ds)[records_before:]):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    if not output_existed:
        output.unlink(missing_ok=True)
    for tmp in _temporaries(output) - temporaries_before:
        tmp.unlink(missing_ok=True)


def _temporaries(output: Path) -> set:
    """The temporary files :func:`SpineSegLib.core.files.replaced_atomically` makes beside ``output``."""
    return set(output.parent.glob(f".{output.name}.*")) if output.parent.is_dir() else set()


def _read_outcome(ds: AnnotationDataset, event, output: Path) -> FinetuneOutcome:
    ds.reload()           # the child recorded the new model in dataset.json
    if not output.is_file():
        raise SpineSegError(f"fine-tuning ended without writing {output}")
    if event is None or event.name != "finetune":
        raise SpineSegError("fine-tuning ended without a report")
    report = event.data
    return FinetuneOutcome(output, (report.get("before") or {}).get("dice_mean"),
                           (report.get("after") or {}).get("dice_mean"), report)


def start_finetune(ds: AnnotationDataset, model, output, *, iterations: int = 500, lr: Optional[float] = None,
                   device: str = "auto", threads: Optional[int] = None, validation_cases=None, evaluate: bool = True,
                   seed: int = 0, force: bool = False, user: Optional[str] = None, python: Optional[str] = None,
                   on_progress: Optional[Callable[[float, str], None]] = None,
                   on_state: Optional[Callable[[str], None]] = None,
                   on_line: Optional[Callable[[str], None]] = None) -> background.BackgroundProcess:
    """Start fine-tuning ``model`` on the dataset's corrected cases, writing ``output``, in a child process.

    Returns the :class:`~SpineSegLib.slicer.process.BackgroundProcess` (drive it with ``poll()`` from a GUI timer
    or ``wait()``); once done ``task.result`` is a :class:`FinetuneOutcome`. ``output`` must not exist unless
    ``force``. Cancelled or failed: see the module docstring."""
    model, output = Path(model), Path(output).resolve()
    if not model.is_file():
        raise InputError(f"model weights not found: {model}")
    check_force(output, force)
    if output.suffix != ".pt":
        raise InputError(f"{output}: the fine-tuned weights file should end in .pt")
    if int(iterations) < 1:
        raise InputError("iterations must be at least 1")
    run_dir = ds.root.resolve() / RUNS_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}_{output.stem}"
    if run_dir.exists():
        raise InputError(f"{run_dir} exists already; wait a second and start again")
    work = Path(tempfile.mkdtemp(prefix="SpineSeg-finetune-"))
    report_path = work / "report.json"
    temporaries_before, output_existed = _temporaries(output), output.exists()
    records_before = len(_model_records(ds))
    args = finetune_arguments(ds.root, model, output, report_path, run_dir, iterations=iterations, lr=lr,
                              device=device, threads=threads, validation_cases=validation_cases, evaluate=evaluate,
                              seed=seed, user=user)
    if force:
        args.append("--force")

    def state_changed(state):
        if state in (background.FAILED, background.CANCELLED):
            undo_unfinished(ds, output, run_dir, temporaries_before, output_existed, records_before)
        if on_state is not None:
            on_state(state)

    task = background.BackgroundProcess(
        background.spineseg_command(*args, python=python), env=background.child_environment(threads=threads),
        finish=lambda task: _read_outcome(ds, task.report, output), on_progress=on_progress, on_state=state_changed,
        on_line=on_line, cleanup=[work], name="SpineSeg fine-tuning")
    task.run_dir, task.output_path = run_dir, output
    return task.start()
