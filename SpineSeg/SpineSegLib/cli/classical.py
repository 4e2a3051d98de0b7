"""``spineseg classical INPUT -o OUTPUT``: model-free spine segmentation of a chest CT (Revy et al.)."""

from __future__ import annotations

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

examples:
  spineseg classical chest.nii.gz -o spine.nii.gz
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
    p.add_argument("--force", action="store_true", help="overwrite existing output files (mask, PNG, intermediates)")
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


def build_params(args):
    import json
    from pathlib import Path

    from SpineSegLib.classical import ClassicalParams
    from SpineSegLib.core.errors import InputError

    values = {}
    if args.params:
        try:
            values = json.loads(Path(args.params).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{args.params}: not a readable JSON file of parameters ({exc})") from None
        if not isinstance(values, dict):
            raise InputError(f"{args.params}: expected a JSON object of parameter names and values")
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


def run(args):
    import sys
    from pathlib import Path

    from SpineSegLib.classical import ClassicalResult, segment_spine
    from SpineSegLib.core import grids
    from SpineSegLib.core.errors import OutputExistsError
    from SpineSegLib.core.image import check_writable, read_image, write_image
    from SpineSegLib.core.progress import console_progress
    from SpineSegLib.evaluation.quicklook import check_png_path
    from SpineSegLib.cli.evaluate import format_metrics, parse_ids

    params = build_params(args)
    # every output is checked before any work is done
    check_writable(args.output, args.force)
    if args.png:
        check_png_path(args.png, args.force)
    if args.intermediates:
        ClassicalResult.check_intermediates(args.intermediates, args.force)
    outputs = [Path(args.output).resolve()] + ([Path(args.png).resolve()] if args.png else [])
    if len(set(outputs)) < len(outputs):
        raise OutputExistsError("the mask and the PNG would be the same file")

    image = read_image(args.input)
    reference = read_image(args.reference) if args.reference else None
    if reference is not None:   # an unrelated reference is refused before the work, not after it
        grids.check(image, reference, what="the scan", onto="the reference")
    labels = parse_ids(args.reference_labels) if args.reference_labels else None

    progress = console_progress(quiet=args.quiet)
    result = segment_spine(image, params, progress)
    write_image(result.mask, args.output, force=args.force)
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
    if reference is not None:
        from SpineSegLib.evaluation.metrics import evaluate_binary_images
        print(format_metrics(evaluate_binary_images(result.mask, reference, labels)))
    return 0
