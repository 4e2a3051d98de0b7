"""``spineseg engine iis|classical INPUT --work DIR``: the child process of the 3D Slicer modules.

It reads the scan once, runs the IIS network or the classical pipeline and writes only JSON-lines events on
stdout (:mod:`SpineSegLib.core.events`: progress, step, note, result, error); anything printed for humans goes to
stderr. The result (label map or spine mask) is written once, uncompressed, into ``--work``. With
``--interactive`` it halts after each network pass until a command line arrives on stdin (``next``, ``finish``,
``cancel``): Run and Step are the same process. Errors: an error event, exit status 2.

Examples::

    spineseg engine iis in.nii --work w/ --model mr-vertebral-bodies --interactive
    spineseg engine classical in.nii --work w/ --params '{"bone_threshold_hu": 180}'
    spineseg engine classical in.nii --work w/ --vertebrae --report     # + one named label per vertebra
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "run the IIS network or the classical pipeline for 3D Slicer (JSON-lines events on stdout)"


def register(sub):
    from SpineSegLib.core.events import TASKS

    p = sub.add_parser("engine", help=HELP, description=__doc__.split("\n\n")[1])
    p.add_argument("task", choices=TASKS)
    p.add_argument("input", metavar="INPUT", help="the scan, as the parent wrote it")
    p.add_argument("--work", required=True, metavar="DIR", help="folder for the result and the step arrays")
    p.add_argument("--model", help="IIS weights file or bundled model name")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--keep-incomplete", action="store_true")
    p.add_argument("--start", metavar="X,Y,Z", help="start point in LPS mm")
    p.add_argument("--no-modality-check", action="store_true")
    p.add_argument("--threads", type=int, metavar="N")
    p.add_argument("--params", metavar="JSON", help="classical parameters as a JSON object")
    p.add_argument("--vertebrae", action="store_true",
                   help="classical: also label the vertebrae (VerSe ids, named; written as vertebrae.nii)")
    p.add_argument("--report", action="store_true", help="classical --vertebrae: the per-vertebra report rows too")
    p.add_argument("--interactive", action="store_true", help="halt after each network pass (stdin: next|finish|cancel)")
    p.add_argument("--no-steps", action="store_true", help="no step events")
    p.set_defaults(func=run)
    return p


def read_command(stream) -> str:
    """The next stepping command from stdin (end of input counts as ``cancel``)."""
    from SpineSegLib.core.errors import InputError
    from SpineSegLib.core.events import CANCEL, COMMANDS

    line = stream.readline()
    command = line.strip().lower() if line else CANCEL
    if command not in COMMANDS:
        raise InputError(f"unknown stepping command {command!r} (use {', '.join(COMMANDS)})")
    return command


def run(args):
    from SpineSegLib.core.events import EngineRequest, events_on_stdout
    from SpineSegLib.core.progress import Cancelled, Progress

    request = EngineRequest.from_arguments(args)
    try:
        with events_on_stdout() as events:     # stdout holds only events; errors also go out as an error event
            work = Path(request.work)
            work.mkdir(parents=True, exist_ok=True)
            result = (run_iis if request.task == "iis" else run_classical)(request, events, Progress(events.progress),
                                                                           work)
            events(result)
    except Cancelled:
        return 130
    return 0


def run_iis(request, events, progress, work: Path):
    from SpineSegLib.core.events import FINISH, NEXT, ResultEvent, VertebraRecord
    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.core.progress import Cancelled
    from SpineSegLib.iis.infer.run import IISRun
    from SpineSegLib.iis.model.catalog import resolve_model

    image = read_image(request.input)
    iis = IISRun(image, resolve_model(request.model), request.device, None, request.keep_incomplete,
                 request.start_point_lps, progress, check_modality=request.check_modality, threads=request.threads)
    halting = request.interactive
    files = StepFiles(work / "steps") if request.interactive else None
    for step in iis.steps():
        if request.show_steps:
            events(step_event(step, files))
        if halting and step.box is not None:
            command = read_command(sys.stdin)
            if command == FINISH:
                halting = False
            elif command != NEXT:
                raise Cancelled("cancelled by the user")
    result = iis.finish()
    path = write_image(result.labels, work / "vertebrae.nii", force=True, compress=False)
    records = [VertebraRecord(r.id, r.name, r.traversal_index, round(float(r.regressed_label), 4),
                              round(float(r.completeness), 4), bool(r.complete), bool(r.in_output),
                              round(float(r.volume_ml), 3))
               for r in result.instances if r.in_output]
    info = {"device": result.device, "network_passes": result.network_passes, "stop_reason": result.stop_reason,
            "modality": result.config.modality, "timings": {k: round(float(v), 3) for k, v in result.timings.items()}}
    return ResultEvent("iis", str(path), vertebrae=records, info=info, warnings=list(result.warnings))


class StepFiles:
    """The arrays of the stepping mode: the fragment (NIfTI on the patch grid) per pass, and the memory (uint8
    .npy on the model grid) whenever it changed."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.memory_path = None
        self._memory_count = -1

    def fragment(self, step):
        from SpineSegLib.core.image import write_image

        if step.fragment is None or not step.fragment.any():
            return None
        return str(write_image(step.fragment_image(), self.folder / f"fragment_{step.index:04d}.nii", force=True,
                               compress=False))

    def memory(self, step):
        import numpy as np

        if step.instance_count != self._memory_count or self.memory_path is None:
            self._memory_count = step.instance_count
            path = self.folder / f"memory_{step.index:04d}.npy"
            np.save(path, (np.asarray(step.memory) > 0).astype(np.uint8))
            self.memory_path = str(path)
        return self.memory_path


def step_event(step, files):
    from SpineSegLib.core.events import PatchBox, StepEvent

    box = None
    if step.box is not None:
        d = step.box.to_dict()
        box = PatchBox(d["centre_lps"], d["size_mm"], d["axes_lps"], d["origin_lps"], d["spacing_mm"],
                       d["start_voxel_zyx"])
    accepted = step.accepted.summary() if step.accepted is not None else None
    if accepted is not None:
        accepted.pop("patch", None)
    with_files = files is not None and step.box is not None
    return StepEvent(step.index, step.phase, step.event, round(float(step.progress), 4), box,
                     fragment_path=files.fragment(step) if with_files else None,
                     memory_path=files.memory(step) if with_files else None,
                     accepted=accepted, message=step.message or "")


def run_classical(request, events, progress, work: Path):
    from SpineSegLib.classical import segment_spine
    from SpineSegLib.classical.params import ClassicalParams
    from SpineSegLib.core.errors import InputError
    from SpineSegLib.core.events import ResultEvent
    from SpineSegLib.core.image import read_image, write_image

    try:
        params = ClassicalParams.from_dict(request.params)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad parameters: {exc}") from None
    image = read_image(request.input)
    if request.vertebrae:
        return classical_vertebrae(request, image, params, progress, work)
    result = segment_spine(image, params, progress)
    path = write_image(result.mask, work / "spine.nii", force=True, compress=False)
    return ResultEvent("classical", str(path), geometry=classical_geometry(result),
                       info={"timings": {k: round(float(v), 4) for k, v in result.timings.items()}})


def classical_vertebrae(request, image, params, progress, work: Path):
    """The model-free vertebrae (:func:`~SpineSegLib.classical.vertebrae.label_vertebrae`): the spine mask and the
    label map written once each, one typed record per vertebra, how they were named and (``report``) the
    per-vertebra report's rows."""
    from SpineSegLib.classical.vertebrae import label_vertebrae
    from SpineSegLib.cli.classical import vertebra_info
    from SpineSegLib.core.events import NamingSummary, NamedVertebraRecord, ResultEvent
    from SpineSegLib.core.image import write_image
    from SpineSegLib.evaluation.reports import plain

    result = label_vertebrae(image, params, progress)
    spine = result.spine
    mask_path = write_image(spine.mask, work / "spine.nii", force=True, compress=False)
    labels_path = write_image(result.labels, work / "vertebrae.nii", force=True, compress=False)
    records = [NamedVertebraRecord(int(v.label), v.name, bool(v.complete), [str(e) for e in v.evidence],
                                   int(v.voxels), [round(float(c), 3) for c in v.centroid_lps])
               for v in result.vertebrae]
    rows, info = [], {}
    if request.report and result.vertebrae:
        from SpineSegLib.evaluation.vertebra_report import TABLE_COLUMNS, vertebra_report

        report = vertebra_report(result.labels, image, vertebra_info(result),
                                 names_uncertain=None if result.names_certain else result.naming_note)
        rows = plain(report.rows_for_table())
        info["report_columns"] = {title: description for title, _, _, description in TABLE_COLUMNS}
    timings = {**spine.timings, **result.timings}
    info["timings"] = {k: round(float(v), 4) for k, v in timings.items()}
    warnings = [] if result.names_certain else [f"the vertebra names are uncertain: {result.naming_note}"]
    return ResultEvent("classical", str(mask_path), vertebrae=records, geometry=classical_geometry(spine), info=info,
                       warnings=warnings, vertebrae_path=str(labels_path),
                       naming=NamingSummary(bool(result.names_certain), str(result.naming_note)), report_rows=rows)


def classical_geometry(result) -> dict:
    """What the Slicer side shows of a ClassicalResult, at full precision (non-finite numbers as None)."""
    from SpineSegLib.evaluation.reports import plain

    return plain({
        "contrast": bool(result.contrast), "aorta_median_hu": float(result.aorta_median_hu),
        "aorta_length_mm": float(result.aorta_length_mm),
        "centerline_points_lps": result.centerline_points_lps, "centerline_inliers": result.centerline_inliers,
        "centerline_curve_lps": result.centerline_curve_lps, "centerline_centres_lps": result.centerline_centres_lps,
        "slices": [dict(vars(s)) for s in result.slices],
        "parabolas": [dict(vars(p)) for p in result.parabolas],
        "params": json.loads(json.dumps(result.params.to_dict())),
    })


if __name__ == "__main__":     # python -m SpineSegLib.cli.engine ... (the same as spineseg engine ...)
    from SpineSegLib.cli import main

    sys.exit(main(["engine", *sys.argv[1:]]))
