"""The typed contract between 3D Slicer and the engine child process: the request and the events.

* :class:`EngineRequest` -- what to run (the IIS network or the classical pipeline, on which input file, with
  which options). :meth:`EngineRequest.to_arguments` is the one place that turns it into the ``spineseg
  engine`` command line; :meth:`EngineRequest.from_arguments` reads it back in the child.
* The events the child writes on stdout, one JSON object per line (``{"kind": KIND, ...}``):
  :class:`ProgressEvent` (fraction 0-1 and phase), :class:`StepEvent` (one network pass: the patch box and
  the paths of the fragment / memory arrays), :class:`NoteEvent` (a note or warning), :class:`ResultEvent`
  (the result file and typed per-vertebra rows: :class:`VertebraRecord` for the IIS network,
  :class:`NamedVertebraRecord` with a :class:`NamingSummary` for the classical vertebrae) and :class:`ErrorEvent`
  (the one-line message). :func:`parse_event` reads a line back and raises :class:`EventError` -- naming the line -- for a
  malformed, truncated or unknown one.
* The other children of the Slicer panels (``spineseg speed --events``, ``spineseg dataset predict|finetune
  --events``) speak the same events; their result is a :class:`ReportEvent` (a named JSON object, and the file it
  was also written to, if any). :class:`Events` writes events on stdout; :func:`events_on_stdout` sets a command
  up for it (human output to stderr, input notes and errors as events).
* In stepping mode (``--interactive``) the child waits after each network pass for one command line on its
  stdin: :data:`NEXT` (one more pass), :data:`FINISH` (all remaining passes without halting) or
  :data:`CANCEL`.

Console use::

    from SpineSegLib.core.events import EngineRequest, ProgressEvent, parse_event
    request = EngineRequest("iis", "in.nii", "work/", model="mr-vertebral-bodies", interactive=True)
    request.to_arguments()          # ['engine', 'iis', 'in.nii', '--work', 'work/', ...]
    parse_event(ProgressEvent(0.5, "traversal").to_line())     # ProgressEvent(fraction=0.5, ...)
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Optional

from SpineSegLib.core.errors import SpineSegError

NEXT, FINISH, CANCEL = "next", "finish", "cancel"
COMMANDS = (NEXT, FINISH, CANCEL)
TASKS = ("iis", "classical")


class EventError(SpineSegError):
    """A line from the engine that is not a complete, known event."""


# -- the request ------------------------------------------------------------------------------------------------
@dataclass
class EngineRequest:
    """One engine run. ``task``: iis | classical; ``input``: the scan file the parent wrote (read once by the
    child); ``work``: a folder for the result and the step arrays. IIS: ``model`` .. ``check_modality``;
    classical: ``params`` (ClassicalParams fields). ``interactive``: halt after each network pass;
    ``show_steps``: emit a step event per pass (with ``interactive`` also the fragment/memory arrays)."""

    task: str
    input: str
    work: str
    model: Optional[str] = None
    device: str = "auto"
    keep_incomplete: bool = True
    start_point_lps: Optional[tuple] = None
    threads: Optional[int] = None
    check_modality: bool = True
    params: dict = field(default_factory=dict)
    interactive: bool = False
    show_steps: bool = True
    vertebrae: bool = False
    report: bool = False

    def __post_init__(self):
        if self.task not in TASKS:
            raise SpineSegError(f"unknown engine task {self.task!r} (use {' or '.join(TASKS)})")
        if self.task == "iis" and not self.model:
            raise SpineSegError("an IIS engine request needs a model")
        if (self.vertebrae or self.report) and self.task != "classical":
            raise SpineSegError("only the classical engine labels vertebrae model-free (vertebrae, report)")
        if self.report and not self.vertebrae:
            raise SpineSegError("a report needs the vertebrae (vertebrae=True)")
        self.input, self.work = str(self.input), str(self.work)
        if self.start_point_lps is not None:
            self.start_point_lps = tuple(float(v) for v in self.start_point_lps)

    def to_arguments(self) -> list[str]:
        """The ``spineseg engine`` arguments of this request (the only place that builds them)."""
        args = ["engine", self.task, self.input, "--work", self.work]
        if self.task == "iis":
            args += ["--model", str(self.model), "--device", self.device]
            if self.keep_incomplete:
                args.append("--keep-incomplete")
            if self.start_point_lps is not None:
                args.append("--start=" + ",".join(repr(v) for v in self.start_point_lps))   # "=": X may be negative
            if not self.check_modality:
                args.append("--no-modality-check")
        if self.threads:
            args += ["--threads", str(int(self.threads))]
        if self.params:
            args += ["--params", json.dumps(self.params, sort_keys=True)]
        if self.vertebrae:
            args.append("--vertebrae")
        if self.report:
            args.append("--report")
        if self.interactive:
            args.append("--interactive")
        if not self.show_steps:
            args.append("--no-steps")
        return args

    @classmethod
    def from_arguments(cls, args) -> "EngineRequest":
        """The request of the child's parsed ``spineseg engine`` arguments (an argparse namespace)."""
        start = tuple(float(v) for v in args.start.split(",")) if getattr(args, "start", None) else None
        return cls(args.task, args.input, args.work, model=args.model, device=args.device,
                   keep_incomplete=args.keep_incomplete or args.task != "iis", start_point_lps=start, threads=args.threads,
                   check_modality=not args.no_modality_check, params=json.loads(args.params) if args.params else {},
                   interactive=args.interactive, show_steps=not args.no_steps,
                   vertebrae=args.vertebrae, report=args.report)


# -- the events --------------------------------------------------------------------------------------------------
@dataclass
class ProgressEvent:
    fraction: Optional[float]       # 0-1 of the whole run, None when the phase gives none
    phase: str
    kind = "progress"


@dataclass
class PatchBox:
    """The patch of one network pass, as a Slicer ROI needs it (LPS mm) plus the model grid it lies on."""

    centre_lps: list
    size_mm: list
    axes_lps: list                  # one axis per row
    origin_lps: list                # model grid origin / spacing, and the patch's first voxel there (z, y, x)
    spacing_mm: list
    start_voxel: list


@dataclass
class StepEvent:
    """One network pass (``box`` None for the closing step)."""

    index: int
    phase: str
    event: str
    progress: float                 # 0-1 along the volume in traversal direction
    box: Optional[PatchBox] = None
    fragment_path: Optional[str] = None     # the fragment on the patch grid (NIfTI), when there is one
    memory_path: Optional[str] = None       # the memory (uint8 .npy on the model grid), a new file when it changed
    accepted: Optional[dict] = None         # the vertebra accepted at this pass (label, completeness, ...)
    message: str = ""
    kind = "step"


@dataclass
class NoteEvent:
    message: str
    level: str = "note"             # note | warning
    kind = "note"


@dataclass
class VertebraRecord:
    """One vertebra of an IIS result."""

    id: int
    name: str
    traversal_index: int
    regressed_label: float
    completeness: float
    complete: bool
    in_output: bool
    volume_ml: float


@dataclass
class NamedVertebraRecord:
    """One vertebra the classical engine labelled (``EngineRequest.vertebrae``): its VerSe id and name, whether it
    is complete (not cut by the field of view, bounded by a disc above and below), and the evidence behind its
    name (e.g. "rib on both sides")."""

    label: int
    name: str
    complete: bool
    evidence: list = field(default_factory=list)
    voxels: int = 0
    centroid_lps: list = field(default_factory=list)


@dataclass
class NamingSummary:
    """How the classical engine named the vertebrae: ``certain`` False when no trusted anatomical anchor (the lowest
    rib, the pelvis) was in view or the anchors disagree; ``note`` one line saying which anchors named them, or
    why the names are uncertain."""

    certain: bool
    note: str = ""


RECORDS = {"iis": VertebraRecord, "classical": NamedVertebraRecord}     # the type of ResultEvent.vertebrae per task


@dataclass
class ResultEvent:
    """The finished run: ``labels_path`` (IIS: the instance label map; classical: the 0/1 spine mask, both on the
    input's grid), the vertebrae (IIS: :class:`VertebraRecord`; classical with ``vertebrae``:
    :class:`NamedVertebraRecord`), ``geometry`` (classical: ``ClassicalResult.to_json_dict()``) and ``info``
    (device, passes, timings, modality ...). Classical with ``vertebrae``: ``vertebrae_path`` (the VerSe label map
    on the input's grid), ``naming`` and, with ``report``, ``report_rows`` (the per-vertebra report's table rows)."""

    task: str
    labels_path: str
    vertebrae: list = field(default_factory=list)      # RECORDS[task]
    geometry: Optional[dict] = None
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    vertebrae_path: Optional[str] = None
    naming: Optional[NamingSummary] = None
    report_rows: list = field(default_factory=list)
    kind = "result"


@dataclass
class ReportEvent:
    """The result of a child that is no engine run: ``name`` says which (``probe``, ``predict``, ``finetune``),
    ``data`` is the result as a JSON object (no NaN: missing numbers are null), ``path`` a file it was also
    written to (None when none)."""

    name: str
    data: dict = field(default_factory=dict)
    path: Optional[str] = None
    kind = "report"


@dataclass
class ErrorEvent:
    message: str
    kind = "error"


EVENTS = {c.kind: c for c in (ProgressEvent, StepEvent, NoteEvent, ResultEvent, ReportEvent, ErrorEvent)}


def to_line(event) -> str:
    """The event as one JSON line (with its newline)."""
    return json.dumps({"kind": event.kind, **asdict(event)}, allow_nan=False, separators=(",", ":")) + "\n"


for _cls in EVENTS.values():
    _cls.to_line = to_line


def _short(line: str, limit: int = 80) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def parse_event(line: str, complete: bool = True):
    """The event of one line from the child. ``complete``: the line ended with a newline (False for the last
    bytes before the stream closed). Raises :class:`EventError` for anything else than a complete known event."""
    text = line.rstrip("\r\n")
    if not complete:
        raise EventError(f"the engine's output ended in the middle of an event line: {_short(text)}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        truncated = isinstance(exc, json.JSONDecodeError) and exc.pos >= len(text.rstrip())
        what = "a truncated event line" if truncated else f"a malformed event line ({exc})"
        raise EventError(f"the child process sent {what}: {_short(text)}") from None
    if not isinstance(data, dict) or data.get("kind") not in EVENTS:
        raise EventError(f"the child process sent a line that is no known event: {_short(text)}")
    cls = EVENTS[data.pop("kind")]
    names = {f.name for f in fields(cls)}
    try:
        event = cls(**{k: v for k, v in data.items() if k in names})
        if isinstance(event, StepEvent) and event.box is not None:
            event.box = PatchBox(**event.box)
        if isinstance(event, ResultEvent):
            record = RECORDS.get(event.task)
            if record is None:
                raise TypeError(f"unknown task {event.task!r}")
            event.vertebrae = [record(**v) for v in event.vertebrae]
            event.naming = NamingSummary(**event.naming) if event.naming is not None else None
        if isinstance(event, ReportEvent) and not isinstance(event.data, dict):
            raise TypeError("its data is no JSON object")
    except TypeError as exc:
        raise EventError(f"the child process sent an incomplete {cls.kind} event ({exc}): {_short(text)}") from None
    return event


# -- writing events ----------------------------------------------------------------------------------------------
class Events:
    """Writes events on the real stdout (kept aside while ``sys.stdout`` points at stderr)."""

    def __init__(self, stream):
        self.stream = stream
        self._last = None

    def __call__(self, event) -> None:
        self.stream.write(event.to_line())
        self.stream.flush()

    def progress(self, phase, fraction) -> None:
        """A :class:`~SpineSegLib.core.progress.Progress` callback: one progress event per new (phase, fraction)."""
        value = None if fraction != fraction else round(float(fraction), 4)
        if (phase, value) != self._last:
            self._last = (phase, value)
            self(ProgressEvent(value, phase))


@contextmanager
def events_on_stdout():
    """Run a command with events on stdout (yields the :class:`Events` writer): inside, ``sys.stdout`` points at
    stderr (human output), an input note becomes a :class:`NoteEvent`, and an exception is also sent as an
    :class:`ErrorEvent` (the one-line message of a :class:`SpineSegError`) before it goes on to the CLI, which
    prints it on stderr and sets the exit status."""
    from SpineSegLib.core.notes import notes_to
    from SpineSegLib.core.progress import Cancelled

    events = Events(sys.stdout)
    sys.stdout = sys.stderr
    try:
        with notes_to(lambda text: events(NoteEvent(text))):
            yield events
    except Cancelled:          # the parent asked for it: no error to report
        raise
    except SpineSegError as exc:
        events(ErrorEvent(str(exc)))
        raise
    except Exception as exc:
        events(ErrorEvent(f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        sys.stdout = events.stream
