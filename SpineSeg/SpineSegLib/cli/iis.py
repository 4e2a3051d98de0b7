"""``spineseg iis INPUT -o OUTPUT --model WEIGHTS``: vertebra segmentation with an IIS network.

Examples::

    spineseg iis ct.nii.gz -o vertebrae.nii.gz --model iis-ct.pt --table vertebrae.tsv
    spineseg iis ct/ -o v.nrrd --model iis-ct.pt --device cpu --start -2.5,180,-410 --steps-dir steps/

``--steps-dir`` writes every traversal step as ``step_NNNN.json`` (phase, event, patch box in LPS:
centre, size, axes -- what a Slicer ROI needs -- regressed label, completeness) and, when the
step saw a fragment, ``step_NNNN_fragment.nii.gz`` (the fragment on the patch's own grid, so it
lands in place when loaded next to the scan), plus ``traversal.json`` with the whole log.
"""

from __future__ import annotations

import json
from pathlib import Path

HELP = "segment and label vertebrae with an iterative instance segmentation (IIS) network"


def register(sub):
    p = sub.add_parser(
        "iis", help=HELP,
        description=(
            "Find the vertebrae one after the other with an IIS network (Lessmann et al. 2019), label them with "
            "the most likely consecutive sequence and write an instance label map (VerSe ids: 1-7 C1-C7, "
            "8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 S1, 28 T13) on the input's grid. Incompletely visible "
            "vertebrae are left out unless --keep-incomplete."),
    )
    p.add_argument("input", metavar="INPUT", help="CT or MR scan (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="label map to write (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--model", required=True, metavar="WEIGHTS", help="IIS weights file (.pt) of the scan's modality, or the name of a bundled model "
                        "(e.g. mr-vertebral-bodies; see SpineSegLib/resources/models)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the network runs (auto: CUDA if available; out of GPU memory falls back to the CPU)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="arithmetic of the network (auto: bf16 on CPUs with bf16 instructions and on GPUs)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all available cores)")
    p.add_argument("--direction", choices=("up", "down"),
                   help="traversal direction (default: the model's own; models know only one)")
    p.add_argument("--keep-incomplete", action="store_true",
                   help="also write vertebrae classified as incompletely visible (flagged in the table)")
    p.add_argument("--start", metavar="X,Y,Z",
                   help="start point in LPS mm (Slicer shows RAS: negate X and Y) on the first vertebra in "
                        "traversal direction, e.g. the lowest point of the spine for 'up': skips the search; "
                        "'centerline' takes it from the classical pipeline's spine centerline (CT)")
    p.add_argument("--allow-t13", action="store_true", help="consider a 13th thoracic vertebra in the labelling")
    p.add_argument("--allow-l6", action="store_true", help="consider a 6th lumbar vertebra in the labelling")
    p.add_argument("--no-modality-check", action="store_true",
                   help="do not refuse an image whose intensities look like the other modality")
    p.add_argument("--steps-dir", metavar="DIR", help="write every traversal step (patch box JSON + fragment mask)")
    p.add_argument("--table", metavar="FILE", help="per-vertebra table (.tsv, or .csv for commas)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)
    return p


def parse_point(text: str) -> tuple:
    from SpineSegLib.core.errors import InputError

    parts = [s for s in str(text).replace(" ", "").split(",") if s]
    try:
        values = tuple(float(s) for s in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"--start {text!r}: expected three numbers X,Y,Z in LPS millimetres, or 'centerline'")
    return values


def _check_outputs(args) -> None:
    from SpineSegLib.core.errors import OutputExistsError
    from SpineSegLib.core.files import check_force
    from SpineSegLib.core.image import check_writable

    check_writable(args.output, args.force)
    if args.table:
        check_force(args.table, args.force)
    if args.steps_dir:
        d = Path(args.steps_dir)
        if d.exists() and not d.is_dir():
            raise OutputExistsError(f"--steps-dir {d} exists and is not a folder")
        check_force(d, args.force, what="--steps-dir")


class StepWriter:
    """Writes each traversal step into a folder (see the module docstring)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, step) -> None:
        from SpineSegLib.core.files import write_text_atomic
        from SpineSegLib.core.image import write_image

        record = step.to_dict()
        if step.fragment is not None and step.fragment.any():
            name = f"step_{step.index:04d}_fragment.nii.gz"
            write_image(step.fragment_image(), self.folder / name, force=True)
            record["fragment_file"] = name
        # atomically, after the fragment: a reader polling the folder during the run never sees half a step
        write_text_atomic(self.folder / f"step_{step.index:04d}.json", json.dumps(record, indent=1))


def run(args):
    from SpineSegLib.core.files import write_text_atomic
    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.core.progress import console_progress
    from SpineSegLib.iis.infer.run import segment_vertebrae
    from SpineSegLib.iis.model.catalog import resolve_model

    _check_outputs(args)
    args.model = resolve_model(args.model)
    start = None
    if args.start:
        start = "centerline" if args.start.strip().lower() == "centerline" else parse_point(args.start)
    image = read_image(args.input)
    writer = StepWriter(args.steps_dir) if args.steps_dir else None
    result = segment_vertebrae(
        image, args.model, device=args.device, direction=args.direction, keep_incomplete=args.keep_incomplete,
        start_point_lps=start, steps_callback=writer,
        progress=console_progress(quiet=args.quiet, skip_repeats=True, repeat_every=0.1),
        check_modality=not args.no_modality_check, allow_t13=args.allow_t13, allow_l6=args.allow_l6,
        precision=args.precision, threads=args.threads)
    write_image(result.labels, args.output, force=args.force)
    if args.table:
        result.write_table(args.table, force=args.force)
    if writer is not None:
        write_text_atomic(writer.folder / "traversal.json", json.dumps({
            "input": str(args.input), "model": str(args.model), "config": result.config.to_dict(),
            "stop_reason": result.stop_reason, "network_passes": result.network_passes,
            "instances": result.table_rows(), "steps": result.steps}, indent=1))
    if not args.quiet:
        kept = result.output_instances
        names = ", ".join(f"{r.name}{'' if r.complete else ' (incomplete)'}" for r in kept) or "none"
        left = len(result.instances) - len(kept)
        print(f"{len(kept)} vertebrae written to {args.output}: {names}"
              + (f"; {left} incomplete left out" if left else "")
              + f" [{result.network_passes} network passes, {result.timings['total']:.0f} s, {result.device}]")
    return 0
