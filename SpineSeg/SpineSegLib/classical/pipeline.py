"""The classical, model-free spine segmentation of Revy et al. on one CT volume.

Steps (section numbers of the paper; "ours" marks what the paper does not describe):

1. input checks (ours), exact reorientation to the canonical LPS layout;
2. body mask and crop to it (ours); bone mask I_thresh = CT >= 150 HU inside the body (3.1);
3. a preliminary centerline (3.1 on the unmodified bone mask, ours) that anchors the search for
   contrast agent and the descending aorta (ours: the paper takes the aorta from elsewhere);
4. the aorta and the region in front of it are removed from the bone mask (3.1);
5. sagittal column estimate, half-disk localization map, per-slice maxima, RANSAC quadratic (3.1);
6. 2-D reconstruction from the dilated centerline, spinous-process recovery (3.2);
7. lines H1, H2, H3, V1-V6 and the cut of the mask to them (3.2);
8. parabola family, directional-gradient search, DP fit and the reconstruction/opening
   refinement (3.3);
9. filling of the vertebral bodies (ours), and the mask back onto the input grid.

Console use::

    from SpineSegLib.image import read_image, write_image
    from SpineSegLib.classical import segment_spine
    ct = read_image("chest.nii.gz")
    result = segment_spine(ct)
    write_image(result.mask, "spine.nii.gz")
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import NoSpineFoundError
from ..image import Image
from ..orientation import to_canonical
from ..progress import Progress
from . import aorta as aorta_step
from .body import body_mask
from .bounding_lines import NAMES, bounding_lines, has_canal, spinous_end
from .centerline import estimate_centerline
from .finishing import fill_bodies
from .morphology import block_any
from .parabola import fit_parabolas, refine_with_points
from .params import ClassicalParams
from .reconstruction import centerline_seed, midline_seed, reconstruct, recover_spinous
from .result import ClassicalResult
from .validation import check_ct

BODY_MARGIN_MM = 5.0
# the spine region around the centerline that steps 6-9 work in (mm)
ROI_FRONT_MM, ROI_BACK_MM, ROI_SIDE_MM = 60.0, 110.0, 80.0


def segment_spine(image: Image, params: ClassicalParams | None = None, progress: Progress | None = None) -> ClassicalResult:
    """Segment the spine of a chest CT with the classical pipeline; see the module docstring.

    Returns a :class:`ClassicalResult` whose ``mask`` lies exactly on ``image``'s grid and whose
    geometric intermediates are in LPS millimetres. Raises ``InputError`` for volumes that are not a
    usable CT and ``NoSpineFoundError`` when no spine is found; ``progress.cancel()`` stops it with
    ``Cancelled`` between steps.
    """
    params = params or ClassicalParams()
    progress = progress or Progress()
    started = time.perf_counter()

    progress.step("checking the input", 0.0)
    check_ct(image, params)
    can = to_canonical(image)
    ct = can.image
    hu = ct.array
    sz, sy, sx = ct.spacing[2], ct.spacing[1], ct.spacing[0]
    spacing = (sz, sy, sx)

    progress.step("body and bone mask", 0.04)
    box, body1 = body_mask(hu, spacing, params.body_threshold_hu, BODY_MARGIN_MM)
    hu1 = hu[box]
    bone1 = (hu1 >= params.bone_threshold_hu) & body1
    if not bone1.any():
        raise NoSpineFoundError(f"no spine found: no bone (>= {params.bone_threshold_hu:g} HU) inside the body")
    f = max(1, int(round(params.localization_grid_mm / sy)))
    coarse_spacing = (sz, sy * f, sx * f)
    body_c = block_any(body1, f, f)
    bone_c = block_any(bone1, f, f)

    def to_fine(points):
        return points * f + (f - 1) / 2.0

    aorta = aorta_step.AortaResult(False, np.zeros(hu1.shape, bool), np.full((hu1.shape[0], 2), np.nan),
                                   np.full(hu1.shape[0], np.nan), 0.0, np.nan)
    if params.remove_aorta:
        progress.step("preliminary centerline", 0.12)
        first = estimate_centerline(bone_c, body_c, coarse_spacing, params, windowed=False)
        progress.step("contrast agent and descending aorta", 0.2)
        prelim = np.where(first.valid[:, None], to_fine(first.centres), np.nan)
        aorta = aorta_step.find_descending_aorta(hu1, body1, spacing, prelim, params)
    bone_seg, bone_loc = aorta_step.remove_from_bone(bone1, aorta, spacing)

    progress.step("spine centerline", 0.3)
    if aorta.contrast or not params.remove_aorta:
        est = estimate_centerline(block_any(bone_loc, f, f), body_c, coarse_spacing, params)
    elif params.centerline_window_mm > 0:
        est = estimate_centerline(bone_c, body_c, coarse_spacing, params)
    else:
        est = first     # nothing was removed: the same bone mask, the same estimate
    valid = np.flatnonzero(est.valid)
    nz = hu1.shape[0]
    if valid.size < max(2, params.min_spine_fraction * nz):
        raise NoSpineFoundError(f"no spine found: a vertebra-like bone structure shows on only {valid.size} of {nz} axial slices")
    use = np.zeros(nz, bool)
    use[valid.min():valid.max() + 1] = True
    centres = to_fine(est.centres)

    # the spine region
    cy, cx = centres[use, 0], centres[use, 1]
    y0 = max(int(cy.min() - ROI_FRONT_MM / sy), 0)
    y1 = min(int(cy.max() + ROI_BACK_MM / sy) + 1, hu1.shape[1])
    x0 = max(int(cx.min() - ROI_SIDE_MM / sx), 0)
    x1 = min(int(cx.max() + ROI_SIDE_MM / sx) + 1, hu1.shape[2])
    roi = (slice(None), slice(y0, y1), slice(x0, x1))
    hu2, bone2, bone2_loc = hu1[roi], bone_seg[roi], bone_loc[roi]
    c2 = centres - np.array([y0, x0])

    progress.step("reconstruction from the centerline", 0.4)
    h3 = spinous_end(bone2_loc, c2, use, max(int(round(params.spinous_band_mm / sx)), 1))
    seed = centerline_seed(bone2.shape, c2, use, (params.seed_radius_mm / sy, params.seed_radius_mm / sx))
    if params.seed_midline:
        seed |= midline_seed(bone2.shape, c2, h3, use, int(round(params.midline_halfwidth_mm / sx)),
                             int(round(params.midline_front_mm / sy)))
    rough = reconstruct(bone2, seed, (params.reconstruction_gap_mm / sy, params.reconstruction_gap_mm / sx))

    progress.step("spinous-process recovery", 0.5)
    z_slices = max(1, int(round(params.spinous_z_dilation_mm / sz)))
    iterations = max(1, int(round(params.spinous_reconstruction_mm / min(sy, sx))))
    rough = recover_spinous(rough, bone2, z_slices, iterations)

    progress.step("bounding lines", 0.6)
    lines, cut = bounding_lines(rough, h3, c2, use, params, (sy, sx))
    canal = np.array([has_canal(cut[k], lines.rows["H1"][k], lines.rows["H3"][k], lines.columns["V3"][k], (sy, sx))
                      for k in np.flatnonzero(lines.valid)])
    if canal.mean() < params.min_canal_fraction:
        raise NoSpineFoundError(f"no spine found: a spinal canal shows on only {np.count_nonzero(canal)} of the "
                                f"{canal.size} slices where a vertebra was outlined")

    fits = []
    if params.refine_with_parabola:
        progress.step("parabola fit", 0.7)
        fits = fit_parabolas(cut, hu2, lines, params, (sy, sx))
        cut = refine_with_points(cut, fits, params, (sy, sx), params.parabola_cut_anterior)

    final = cut
    if params.fill_body_holes:
        progress.step("filling vertebral bodies", 0.85)
        final = fill_bodies(cut, hu2, lines, params, (sy, sx))

    progress.step("mapping back to the input grid", 0.93)
    full = np.zeros(hu.shape, np.uint8)
    full[box][roi] = final
    mask = image.with_array(can.restore(full))
    bone_full = np.zeros(hu.shape, np.uint8)
    bone_full[box] = bone1
    aorta_full = np.zeros(hu.shape, np.uint8)
    aorta_full[box] = aorta.mask

    # geometry in LPS: canonical index (i, j, k) = (column + x offset, row + y offset, slice)
    oy, ox = box[1].start + y0, box[2].start + x0
    oy1, ox1 = box[1].start, box[2].start

    def lps(k, rows, cols, off_y, off_x):
        ijk = np.stack([np.asarray(cols, float) + off_x, np.asarray(rows, float) + off_y,
                        np.broadcast_to(np.asarray(k, float), np.shape(rows))], axis=-1)
        return ct.index_to_lps(ijk)

    ks = np.flatnonzero(est.valid)
    maxima = lps(ks, to_fine(est.maxima)[ks, 0], to_fine(est.maxima)[ks, 1], oy1, ox1)
    ku = np.flatnonzero(use)
    curve = lps(ku, to_fine(est.fitted)[ku, 0], to_fine(est.fitted)[ku, 1], oy1, ox1)
    seeds = lps(ku, centres[ku, 0], centres[ku, 1], oy1, ox1)
    slices = []
    for k in np.flatnonzero(lines.valid):
        r = {n: lines.rows[n][k] for n in ("H1", "H2", "H3")}
        c = {n: lines.columns[n][k] for n in ("V1", "V2", "V3", "V4", "V5", "V6")}
        segments = {}
        for n in NAMES:
            if n.startswith("H"):
                segments[n] = lps(k, [r[n], r[n]], [c["V1"], c["V6"]], oy, ox)
            else:
                segments[n] = lps(k, [r["H1"], r["H3"]], [c[n], c[n]], oy, ox)
        z_mm = float(lps(k, [0.0], [0.0], oy, ox)[0, 2])
        slices.append({"slice": int(k), "z_mm": z_mm, "lines": segments})
    parabolas = []
    for fit in fits:
        k = fit.slice_index
        parabolas.append({
            "slice": int(k),
            "z_mm": float(lps(k, [fit.centre[0]], [fit.centre[1]], oy, ox)[0, 2]),
            "centre": lps(k, [fit.centre[0]], [fit.centre[1]], oy, ox)[0],
            "halfwidth_mm": fit.halfwidth_mm, "height_mm": fit.height_mm, "edge_score": fit.score,
            "parabola": lps(k, fit.parabola[:, 0], fit.parabola[:, 1], oy, ox),
            "dp_points": lps(k, fit.points[:, 0], fit.points[:, 1], oy, ox),
        })
    progress.done()
    timings = dict(progress.timings)
    timings["total"] = time.perf_counter() - started
    return ClassicalResult(
        mask=mask,
        bone_mask=image.with_array(can.restore(bone_full)),
        aorta_mask=image.with_array(can.restore(aorta_full)),
        contrast=bool(aorta.contrast),
        aorta_median_hu=float(aorta.median_hu),
        aorta_length_mm=float(aorta.length_mm),
        centerline_points_lps=maxima,
        centerline_inliers=est.inliers[ks].copy(),
        centerline_curve_lps=curve,
        centerline_centres_lps=seeds,
        slices=slices,
        parabolas=parabolas,
        timings=timings,
        params=params,
    )
