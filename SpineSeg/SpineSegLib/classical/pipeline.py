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

:func:`segment_spine` runs them in order; each group of steps is a function of its own here
(:func:`crop_to_body`, :func:`locate_spine`, :func:`spine_region`, :func:`rough_mask`,
:func:`cut_to_lines`, :func:`refine_and_fill`, :func:`assemble_result`), so that a test can run the
pipeline step by step on a small crop.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.classical.pipeline import segment_spine
    ct = read_image("chest.nii.gz")
    result = segment_spine(ct)
    write_image(result.mask, "spine.nii.gz")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from SpineSegLib.core.errors import NoSpineFoundError
from SpineSegLib.core.image import Image
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.core.progress import Progress
from SpineSegLib.classical.aorta import AortaResult, connected_blood, find_descending_aorta, remove_from_bone
from SpineSegLib.classical.body import body_mask
from SpineSegLib.classical.bounding_lines import bounding_lines, has_canal, spinous_end
from SpineSegLib.classical.centerline import CenterlineEstimate, estimate_centerline
from SpineSegLib.classical.finishing import fill_bodies
from SpineSegLib.classical.geometry import BoundingLines, CropFrame, LinePositions, SliceParabola
from SpineSegLib.classical.morphology import block_any
from SpineSegLib.classical.parabola import ParabolaFit, fit_parabolas, refine_with_points
from SpineSegLib.classical.params import ClassicalParams
from SpineSegLib.classical.reconstruction import centerline_seed, midline_seed, reconstruct, recover_spinous
from SpineSegLib.classical.result import ClassicalResult
from SpineSegLib.classical.validation import check_ct

BODY_MARGIN_MM = 5.0
# the spine region around the centerline that steps 6-9 work in (mm)
ROI_FRONT_MM, ROI_BACK_MM, ROI_SIDE_MM = 60.0, 110.0, 80.0


@dataclass
class BodyCrop:
    """Step 2: the canonical CT cropped to the body's box."""

    box: tuple              # (z, y, x) slices of the box in the canonical volume
    hu: np.ndarray          # the CT inside the box
    body: np.ndarray        # the body mask inside the box
    bone: np.ndarray        # I_thresh: CT >= the bone threshold inside the body


@dataclass
class SpineLocation:
    """Steps 3-5 on the body crop: the aorta, the centerline and the bone masks without the aorta."""

    aorta: AortaResult
    estimate: CenterlineEstimate    # on the coarse grid: the crop reduced by ``factor`` in-plane
    factor: int
    bone_seg: np.ndarray            # the bone mask without the aorta (what is segmented)
    bone_loc: np.ndarray            # ... and without the region in front of it (what locates the spine)
    use: np.ndarray                 # (nz,) the slices from the first to the last with a spine
    centres: np.ndarray             # (nz, 2) spine centres (row, column) on the crop grid

    def to_fine(self, points: np.ndarray) -> np.ndarray:
        return coarse_to_fine(points, self.factor)


def coarse_to_fine(points: np.ndarray, factor: int) -> np.ndarray:
    """Positions on a grid reduced by ``factor`` in-plane -> positions on the full grid (a coarse voxel's centre)."""
    return points * factor + (factor - 1) / 2.0


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
    spacing = can.image.spacing_kji

    progress.step("body and bone mask", 0.04)
    crop = crop_to_body(can.image.array, spacing, params)
    location = locate_spine(crop, spacing, params, progress)
    roi = spine_region(location.centres, location.use, crop.hu.shape, spacing[1:])
    centres = location.centres - np.array([roi[1].start, roi[2].start])
    rough, h3 = rough_mask(location.bone_seg[roi], location.bone_loc[roi], centres, location.use, params, spacing,
                           progress)
    lines, cut = cut_to_lines(rough, h3, centres, location.use, params, spacing, progress)
    fits, final = refine_and_fill(cut, crop.hu[roi], lines, params, spacing[1:], progress)

    progress.step("mapping back to the input grid", 0.93)
    result = assemble_result(image, can, crop, location, roi, lines, fits, final, params)
    progress.done()
    result.timings = dict(progress.timings)
    result.timings["total"] = time.perf_counter() - started
    return result


def crop_to_body(hu: np.ndarray, spacing_zyx, params: ClassicalParams) -> BodyCrop:
    """Step 2: the body mask, the crop to its box and the bone mask inside it."""
    box, body = body_mask(hu, spacing_zyx, params.body_threshold_hu, BODY_MARGIN_MM)
    hu = hu[box]
    bone = (hu >= params.bone_threshold_hu) & body
    if not bone.any():
        raise NoSpineFoundError(f"no spine found: no bone (>= {params.bone_threshold_hu:g} HU) inside the body")
    return BodyCrop(box, hu, body, bone)


def locate_spine(crop: BodyCrop, spacing_zyx, params: ClassicalParams, progress: Progress) -> SpineLocation:
    """Steps 3-5: the preliminary centerline and the aorta (with ``params.remove_aorta``), the bone
    masks without the aorta, and the spine centerline on a ~1.5 mm grid."""
    sz, sy, sx = spacing_zyx
    f = max(1, int(round(params.localization_grid_mm / sy)))
    coarse_spacing = (sz, sy * f, sx * f)
    body_c = block_any(crop.body, f, f)
    bone_c = block_any(crop.bone, f, f)
    nz = crop.hu.shape[0]
    aorta = AortaResult.none(crop.hu.shape)
    if params.remove_aorta:
        progress.step("preliminary centerline", 0.12)
        first = estimate_centerline(bone_c, body_c, coarse_spacing, params, windowed=False)
        progress.step("contrast agent and descending aorta", 0.2)
        prelim = np.where(first.valid[:, None], coarse_to_fine(first.centres, f), np.nan)
        aorta = find_descending_aorta(crop.hu, crop.body, spacing_zyx, prelim, params)
    removed = replace(aorta, mask=connected_blood(crop.hu, aorta, spacing_zyx)) if aorta.contrast else aorta
    bone_seg, bone_loc = remove_from_bone(crop.bone, removed, spacing_zyx, margin_mm=params.blood_margin_mm)

    progress.step("spine centerline", 0.3)
    if aorta.contrast or not params.remove_aorta:
        est = estimate_centerline(block_any(bone_loc, f, f), body_c, coarse_spacing, params)
    elif params.centerline_window_mm > 0:
        est = estimate_centerline(bone_c, body_c, coarse_spacing, params)
    else:
        est = first     # nothing was removed: the same bone mask, the same estimate
    valid = np.flatnonzero(est.valid)
    if valid.size < max(2, params.min_spine_fraction * nz):
        raise NoSpineFoundError(f"no spine found: a vertebra-like bone structure shows on only {valid.size} of {nz} axial slices")
    use = np.zeros(nz, bool)
    use[valid.min():valid.max() + 1] = True
    return SpineLocation(aorta, est, f, bone_seg, bone_loc, use, coarse_to_fine(est.centres, f))


def spine_region(centres: np.ndarray, use: np.ndarray, shape, spacing_yx) -> tuple[slice, slice, slice]:
    """The box around the centres of the ``use`` slices that steps 6-9 work in (``ROI_*_MM``)."""
    sy, sx = spacing_yx
    cy, cx = centres[use, 0], centres[use, 1]
    y0 = max(int(cy.min() - ROI_FRONT_MM / sy), 0)
    y1 = min(int(cy.max() + ROI_BACK_MM / sy) + 1, shape[1])
    x0 = max(int(cx.min() - ROI_SIDE_MM / sx), 0)
    x1 = min(int(cx.max() + ROI_SIDE_MM / sx) + 1, shape[2])
    return (slice(None), slice(y0, y1), slice(x0, x1))


def rough_mask(bone_seg: np.ndarray, bone_loc: np.ndarray, centres: np.ndarray, use: np.ndarray,
               params: ClassicalParams, spacing_zyx, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """Step 6: H3, the 2-D reconstruction from the dilated centerline (and the midline band) and the
    spinous-process recovery; returns ``(rough mask, H3 per slice)``."""
    sz, sy, sx = spacing_zyx
    progress.step("reconstruction from the centerline", 0.4)
    h3 = spinous_end(bone_loc, centres, use, max(int(round(params.spinous_band_mm / sx)), 1))
    seed = centerline_seed(bone_seg.shape, centres, use, (params.seed_radius_mm / sy, params.seed_radius_mm / sx))
    if params.seed_midline:
        seed |= midline_seed(bone_seg.shape, centres, h3, use, int(round(params.midline_halfwidth_mm / sx)),
                             int(round(params.midline_front_mm / sy)))
    rough = reconstruct(bone_seg, seed, (params.reconstruction_gap_mm / sy, params.reconstruction_gap_mm / sx))

    progress.step("spinous-process recovery", 0.5)
    z_slices = max(1, int(round(params.spinous_z_dilation_mm / sz)))
    iterations = max(1, int(round(params.spinous_reconstruction_mm / min(sy, sx))))
    return recover_spinous(rough, bone_seg, z_slices, iterations), h3


def cut_to_lines(rough: np.ndarray, h3: np.ndarray, centres: np.ndarray, use: np.ndarray, params: ClassicalParams,
                 spacing, progress: Progress) -> tuple[LinePositions, np.ndarray]:
    """Step 7: the bounding lines and the mask cut to them; ``NoSpineFoundError`` when too few of the
    outlined slices show a spinal canal. ``spacing``: (z, y, x) or, without the cross-slice checks, (y, x)."""
    progress.step("bounding lines", 0.6)
    spacing_yx, slice_mm = tuple(spacing[-2:]), (float(spacing[0]) if len(spacing) == 3 else 0.0)
    lines, cut = bounding_lines(rough, h3, centres, use, params, spacing_yx, slice_mm)
    canal = np.array([has_canal(cut[k], lines.h1[k], lines.h3[k], lines.v3[k], spacing_yx)
                      for k in np.flatnonzero(lines.valid)])
    if canal.mean() < params.min_canal_fraction:
        raise NoSpineFoundError(f"no spine found: a spinal canal shows on only {np.count_nonzero(canal)} of the "
                                f"{canal.size} slices where a vertebra was outlined")
    return lines, cut


def refine_and_fill(cut: np.ndarray, hu: np.ndarray, lines: LinePositions, params: ClassicalParams, spacing_yx,
                    progress: Progress) -> tuple[list[ParabolaFit], np.ndarray]:
    """Steps 8-9 (each when its parameter asks for it): the parabola fit and refinement, the filling of
    the vertebral bodies; returns ``(fits, final mask)``."""
    fits = []
    if params.refine_with_parabola:
        progress.step("parabola fit", 0.7)
        fits = fit_parabolas(cut, hu, lines, params, spacing_yx)
        cut = refine_with_points(cut, fits, params, spacing_yx, params.parabola_cut_anterior)
    final = cut
    if params.fill_body_holes:
        progress.step("filling vertebral bodies", 0.85)
        final = fill_bodies(cut, hu, lines, params, spacing_yx)
    return fits, final


def assemble_result(image: Image, can, crop: BodyCrop, location: SpineLocation, roi, lines: LinePositions,
                    fits: list[ParabolaFit], final: np.ndarray, params: ClassicalParams) -> ClassicalResult:
    """The masks back on ``image``'s grid and the geometry in LPS (``can``: ``image`` made canonical;
    ``final`` lies on ``roi`` of the body crop). Timings are left to the caller."""
    ct = can.image
    body_frame = CropFrame(ct, crop.box[1].start, crop.box[2].start)
    roi_frame = CropFrame(ct, crop.box[1].start + roi[1].start, crop.box[2].start + roi[2].start)

    def on_input_grid(array, frame):
        full = np.zeros(ct.array.shape, np.uint8)
        full[:, frame.row0:frame.row0 + array.shape[1], frame.col0:frame.col0 + array.shape[2]] = array
        return image.with_array(can.restore(full))

    est = location.estimate
    ks, ku = np.flatnonzero(est.valid), np.flatnonzero(location.use)
    maxima, fitted, centres = location.to_fine(est.maxima), location.to_fine(est.fitted), location.centres
    return ClassicalResult(
        mask=on_input_grid(final, roi_frame),
        bone_mask=on_input_grid(crop.bone, body_frame),
        aorta_mask=on_input_grid(location.aorta.mask, body_frame),
        contrast=bool(location.aorta.contrast),
        aorta_median_hu=float(location.aorta.median_hu),
        aorta_length_mm=float(location.aorta.length_mm),
        centerline_points_lps=body_frame.lps(ks, maxima[ks, 0], maxima[ks, 1]),
        centerline_inliers=est.inliers[ks].copy(),
        centerline_curve_lps=body_frame.lps(ku, fitted[ku, 0], fitted[ku, 1]),
        centerline_centres_lps=body_frame.lps(ku, centres[ku, 0], centres[ku, 1]),
        slices=[BoundingLines.from_positions(lines, k, roi_frame) for k in np.flatnonzero(lines.valid)],
        parabolas=[SliceParabola.from_fit(fit, roi_frame) for fit in fits],
        params=params,
    )
