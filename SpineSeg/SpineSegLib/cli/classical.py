"""``spineseg classical INPUT -o OUTPUT``: model-free spine segmentation of a chest CT (Revy et al.)."""

from __future__ import annotations

#: what --report DIR holds: the per-vertebra report (evaluation.vertebra_report) and VertebraeResult.to_json_dict()
REPORT_FILES = ("vertebrae.csv", "vertebrae.json", "vertebrae.png", "vertebrae_names.json")

HELP = "segment the spine of a chest CT without a model (classical pipeline of Revy et al.)"

DESCRIPTION = """\
Segment the spine (all vertebrae as one mask) of a CT of the chest with the classical, model-free
pipeline of Revy et al.: 150 HU bone mask, removal of the contrast-filled descending aorta,
half-disk centerline with RANSAC, morphological reconstruction, anatomical bounding lines and a
dynamic-programming parabola fit of the vertebral bodies' front. No training data, no GPU; a
chest CT takes a few seconds.

The mask is written on the input's grid (same size, spacing, origin and direction). Existing
output files are never replaced unless --force is given; every output is checked before the
pipeline runs. Problems with the input are reported as one line, with exit status 2.

With --vertebrae it also cuts the spine into vertebrae at the intervertebral discs and names them
from anatomical anchors (ribs, sacrum), model-free: a label map of VerSe ids (1-7 C1-C7, 8-19
T1-T12, 20-24 L1-L5, 25 L6, 26 S1, 28 T13) on the input's grid, one line per vertebra on stderr (name, whether the
field of view holds it whole, the evidence behind its name) and how the names were found; without an
anchor in view the names are uncertain, and it says so.

examples:
  spineseg classical chest.nii.gz -o spine.nii.gz
  spineseg classical chest.nii.gz -o spine.nii.gz --vertebrae vertebrae.nii.gz --report report/
  spineseg classical dicom_folder/ -o spine.nrrd --png spine.png --intermediates steps/
  spineseg classical chest.nii.gz -o spine.nii.gz --reference vertebrae.nii.gz
"""


def register(sub):
    import argparse

    p = sub.add_parser("classical", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="CT volume in Hounsfield units: NIfTI, NRRD, MHA file or a DICOM folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="spine mask to write (.nii.gz, .nii, .nrrd or .mha), uint8 0/1 on the input's grid")
    p.add_argument("--reference", metavar="REF",
                   help="reference mask or label map; prints IoU, DSC, HD95 and ASSD of the result against it "
                        "(every non-zero voxel counts as spine unless --reference-labels)")
    p.add_argument("--reference-labels", metavar="IDS",
                   help="reference ids that count as spine, e.g. '1-26' or '8,9,10' (default: all non-zero)")
    p.add_argument("--intermediates", metavar="DIR",
                   help="also write the intermediate results into DIR: spine_mask.nii.gz, bone_mask.nii.gz, "
                        "aorta_mask.nii.gz (input grid) and intermediates.json (centerline, lines H1-H3 and V1-V6, "
                        "parabolas and DP points per slice, in LPS millimetres; step timings; parameters)")
    p.add_argument("--png", metavar="FILE",
                   help="also draw a quick-look picture (.png): curved sagittal view with the centerline, axial view "
                        "with the bounding lines, the chosen parabola and the DP points")
    p.add_argument("--vertebrae", metavar="LABELS",
                   help="also label the vertebrae (model-free, named from ribs and sacrum) and write the label map "
                        "of VerSe ids here (.nii.gz, .nii, .nrrd or .mha); with --reference the per-vertebra "
                        "Dice, detection and identification are printed too")
    p.add_argument("--report", metavar="DIR",
                   help="with --vertebrae: write the per-vertebra report into DIR (" + ", ".join(REPORT_FILES)
                        + ": volume, HU, body heights, completeness, the evidence behind each name)")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing output files (mask, label map, report, PNG, intermediates)")
    p.add_argument("--quiet", action="store_true", help="print no progress on stderr (metrics and errors still print)")
    g = p.add_argument_group("pipeline parameters (defaults: the paper's or ours, see SpineSegLib.classical.params)")
    g.add_argument("--bone-threshold", type=float, metavar="HU",
                   help="bone threshold of the rough bone mask, in HU (default 150, the paper's)")
    g.add_argument("--disk-radius", type=float, metavar="MM",
                   help="radius of the half-disks of the localization map, in mm (default 14)")
    g.add_argument("--width-factor", type=float, metavar="RATIO",
                   help="V1/V6 lie this many vertebral-body widths outside the body (paper 1.0; default 0.5)")
    g.add_argument("--no-aorta", action="store_true",
                   help="do not look for contrast agent and the descending aorta (nothing is removed from the bone mask)")
    g.add_argument("--no-parabola", action="store_true", help="skip the parabola / dynamic-programming refinement")
    g.add_argument("--no-fill", action="store_true", help="do not fill the vertebral bodies (the paper's plain bone mask)")
    g.add_argument("--params", metavar="JSON",
                   help="a JSON file of ClassicalParams fields, e.g. {\"dp_penalty\": 40}; options above override it")
    p.set_defaults(func=run)
    return p


def read_params_file(path) -> dict:
    """The JSON object of ClassicalParams fields in ``path`` (InputError naming the file otherwise)."""
    import json
    from pathlib import Path

    from SpineSegLib.core.errors import InputError

    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file of parameters ({exc})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a JSON object of parameter names and values")
    return values


def build_params(args):
    from SpineSegLib.classical import ClassicalParams
    from SpineSegLib.core.errors import InputError

    values = read_params_file(args.params) if args.params else {}
    for option, field in (("bone_threshold", "bone_threshold_hu"), ("disk_radius", "disk_radius_mm"),
                          ("width_factor", "width_shift_factor")):
        if getattr(args, option) is not None:
            values[field] = getattr(args, option)
    if args.no_aorta:
        values["remove_aorta"] = False
    if args.no_parabola:
        values["refine_with_parabola"] = False
    if args.no_fill:
        values["fill_body_holes"] = False
    try:
        return ClassicalParams.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad parameters: {exc}") from None


def check_outputs(args) -> None:
    """Every output of the command, checked before any work: existing files refused unless --force, no two the same."""
    from pathlib import Path

    from SpineSegLib.classical import ClassicalResult
    from SpineSegLib.core.errors import InputError, OutputExistsError
    from SpineSegLib.core.files import check_force
    from SpineSegLib.core.image import check_writable
    from SpineSegLib.evaluation.quicklook import check_png_path

    if args.report and not args.vertebrae:
        raise InputError("--report writes the per-vertebra report: it needs --vertebrae LABELS")
    check_writable(args.output, args.force)
    if args.vertebrae:
        check_writable(args.vertebrae, args.force)
    if args.report:
        if Path(args.report).exists() and not Path(args.report).is_dir():
            raise InputError(f"--report {args.report} is a file; the report needs a folder")
        for name in REPORT_FILES:
            check_force(Path(args.report) / name, args.force)
    if args.png:
        check_png_path(args.png, args.force)
    if args.intermediates:
        ClassicalResult.check_intermediates(args.intermediates, args.force)
    named = [("the mask", args.output), ("the label map", args.vertebrae), ("the PNG", args.png)]
    named = [(what, Path(p).resolve()) for what, p in named if p]
    for i, (what, path) in enumerate(named):
        for other, second in named[i + 1:]:
            if path == second:
                raise OutputExistsError(f"{what} and {other} would be the same file ({path})")


def run(args):
    import sys
    from pathlib import Path

    from SpineSegLib.classical import segment_spine
    from SpineSegLib.core import grids
    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.core.progress import console_progress
    from SpineSegLib.cli.evaluate import format_metrics, parse_ids

    params = build_params(args)
    check_outputs(args)                        # every output is checked before any work is done
    image = read_image(args.input)
    reference = read_image(args.reference) if args.reference else None
    if reference is not None:   # an unrelated reference is refused before the work, not after it
        grids.check(image, reference, what="the scan", onto="the reference")
    labels = parse_ids(args.reference_labels) if args.reference_labels else None

    progress = console_progress(quiet=args.quiet)
    vertebrae = None
    if args.vertebrae:
        from SpineSegLib.classical.vertebrae import label_vertebrae

        vertebrae = label_vertebrae(image, params, progress)
        result = vertebrae.spine
    else:
        result = segment_spine(image, params, progress)
    write_image(result.mask, args.output, force=args.force)
    if vertebrae is not None:
        write_vertebrae(vertebrae, image, args)
    if args.intermediates:
        result.save_intermediates(args.intermediates, force=args.force)
    if args.png:
        from SpineSegLib.evaluation.quicklook import save_quicklook
        title = "/".join(Path(args.input).resolve().parts[-2:])
        save_quicklook(image, result, args.png, force=args.force, reference=reference, title=title)
    if not args.quiet:
        volume = float(result.mask.array.astype(bool).sum()) * result.mask.voxel_volume_mm3 / 1000.0
        contrast = (f"yes (descending aorta over {result.aorta_length_mm:.0f} mm, median {result.aorta_median_hu:.0f} HU)"
                    if result.contrast else "no")
        print(f"spine mask: {args.output} ({volume:.1f} ml) in {result.timings.get('total', 0.0):.1f} s; contrast: {contrast}",
              file=sys.stderr)
    text = describe_vertebrae(vertebrae, args.vertebrae, quiet=args.quiet) if vertebrae is not None else ""
    if text:
        print(text, file=sys.stderr)
    if reference is not None:
        from SpineSegLib.evaluation.metrics import evaluate_binary_images
        print(format_metrics(evaluate_binary_images(result.mask, reference, labels)))
        if vertebrae is not None:
            print(vertebra_metrics(vertebrae, reference, labels))
    return 0


def write_vertebrae(vertebrae, image, args) -> None:
    """The label map and, with --report, the report files and vertebrae_names.json."""
    from pathlib import Path

    from SpineSegLib.core.image import write_image
    from SpineSegLib.evaluation.reports import write_json

    write_image(vertebrae.labels, args.vertebrae, force=args.force)
    if args.report:
        from SpineSegLib.evaluation.vertebra_report import vertebra_report

        vertebra_report(vertebrae.labels, image, vertebra_info(vertebrae),
                        names_uncertain=None if vertebrae.names_certain else vertebrae.naming_note
                        ).write(args.report, force=args.force)
        write_json(vertebrae.to_json_dict(), Path(args.report) / "vertebrae_names.json", force=args.force)


def vertebra_info(vertebrae) -> dict:
    """What the per-vertebra report takes from a VertebraeResult: ``{label: {"complete", "evidence"}}``."""
    return {int(v.label): {"complete": bool(v.complete), "evidence": list(v.evidence)} for v in vertebrae.vertebrae}


def describe_vertebrae(vertebrae, path, quiet: bool = False) -> str:
    """One line per vertebra (name, complete or not, evidence) and how they were named; with
    ``quiet`` only a warning when the names are uncertain."""
    lines = []
    if not quiet:
        found = vertebrae.vertebrae
        span = f" ({found[0].name}-{found[-1].name})" if found else ""
        lines.append(f"vertebrae: {path}: {len(found)} labelled{span}")
        for v in found:
            whole = "complete" if v.complete else "incomplete"
            lines.append(f"  {v.name:<4} {whole:<25} {'; '.join(v.evidence) or 'no evidence'}")
        if vertebrae.names_certain:
            lines.append(f"names: {vertebrae.naming_note}")
    if not vertebrae.names_certain:
        lines.append(f"WARNING: the vertebra names are UNCERTAIN: {vertebrae.naming_note}")
    return "\n".join(lines)


def vertebra_metrics(vertebrae, reference, labels=None) -> str:
    """Per-vertebra Dice, detection and identification of the label map against a reference label map
    (:func:`~SpineSegLib.evaluation.instance_metrics.evaluate_instance_images`, printed as ``spineseg evaluate``
    prints them)."""
    from SpineSegLib.evaluation.instance_metrics import evaluate_instance_images
    from SpineSegLib.evaluation.label_maps import label_ids
    from SpineSegLib.evaluation.reports import format_case_table, format_summary

    if len(label_ids(reference.array)) < 2:
        return "per-vertebra metrics: none (the reference holds a single label, not one per vertebra)"
    completeness = {int(v.label): bool(v.complete) for v in vertebrae.vertebrae}
    res = evaluate_instance_images(vertebrae.labels, reference, ids=labels, pred_ids=None,
                                   pred_completeness=completeness)
    return "\n".join([f"{len(res.vertebrae)} reference vertebrae, {len(res.pred_ids)} labelled vertebrae "
                      "(instance metrics)", format_case_table(res), format_summary(res.summary())])
