"""Parameters of the classical (model-free) spine segmentation of Revy et al.

Every length is in millimetres and every intensity in Hounsfield units, so that one set of values
holds across scanners and voxel sizes; the pipeline converts them to voxels of the image at hand.
Each field says where its default comes from:

* **paper** -- the value Revy et al. give (only the 150 HU bone threshold is stated numerically);
* **paper (unstated value)** -- the step is the paper's, the number is ours (tuned on
  LIDC-IDRI-0001 and the TotalSegmentator examples against their reference labels);
* **ours** -- a step or safeguard the paper does not have.

The class holds plain floats, ints and bools only, so that a GUI (Slicer's parameterNodeWrapper)
can bind it field by field.

Console use::

    from SpineSegLib.classical import ClassicalParams, segment_spine
    params = ClassicalParams(bone_threshold_hu=180, refine_with_parabola=False)
    result = segment_spine(ct, params)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class ClassicalParams:
    # -- input checks (ours) -----------------------------------------------------------------
    min_slices: int = 5
    """Fewest axial slices accepted (count; the centerline fit needs several slices)."""
    min_extent_z_mm: float = 10.0
    """Shortest accepted superior-inferior extent of the volume (mm)."""
    min_fov_mm: float = 80.0
    """Smallest accepted in-plane field of view, each direction (mm): a vertebra with its processes
    is 60-90 mm wide."""

    # -- body and bone mask ------------------------------------------------------------------
    body_threshold_hu: float = -400.0
    """ours: voxels above this are tissue; the body is the largest such region (drops the table,
    the air, arms lying apart) (HU)."""
    bone_threshold_hu: float = 150.0
    """paper: the rough bone mask I_thresh is CT >= this (HU)."""

    # -- contrast agent and descending aorta (ours: the paper takes an aorta segmentation from
    #    elsewhere) -----------------------------------------------------------------------------
    remove_aorta: bool = True
    """paper: subtract the descending aorta and the region anterior to it from the bone mask."""
    blood_margin_mm: float = 1.0
    """ours: the aorta and the contrast-filled vessels and heart joined to it (arterial phase) are removed
    from the bone mask grown by this much (a stent-graft's metal ring lies on the lumen's edge) (mm)."""
    contrast_min_hu: float = 120.0
    """ours: blood brighter than this counts as contrast-enhanced (unenhanced blood is 30-60 HU) (HU)."""
    contrast_max_hu: float = 700.0
    """ours: upper limit of enhanced blood; denser voxels are bone or calcium (HU)."""
    aorta_min_radius_mm: float = 7.0
    """ours: smallest radius of the descending aorta searched for (mm)."""
    aorta_max_radius_mm: float = 22.0
    """ours: largest radius of the descending aorta searched for (mm)."""
    aorta_search_mm: float = 70.0
    """ours: the aorta is searched within this distance of the vertebral body centre, anterior and to
    the left of it (mm)."""
    aorta_min_length_mm: float = 40.0
    """ours: contrast counts as present when the aorta is found over at least this length, or over 80% of
    a shorter scan's extent; longer than a lumbar vertebral body, which the chain cannot pass (its discs
    break the lumen test) (mm)."""

    # -- spine centerline (paper section 3.1) ------------------------------------------------
    localization_grid_mm: float = 1.5
    """ours: the centerline is estimated on a grid of about this in-plane spacing (finer images are
    reduced by whole blocks) (mm)."""
    posterior_fraction: float = 0.5
    """paper: the localization map is computed on the part of each axial slice behind this fraction
    of the body's anterior-posterior extent (0.5 = the posterior half) (ratio)."""
    localization_close_mm: float = 1.5
    """ours: closing radius that seals small gaps of the cortex before the localization map (mm)."""
    localization_fill_mm: float = 25.0
    """ours: holes up to the area of a disk of this radius are filled before the localization map, so
    that hollow vertebral bodies (cancellous bone below the threshold) look like disks (mm)."""
    disk_radius_mm: float = 14.0
    """paper (unstated value): radius of the half-disks d_u, d_l of Eq. 1-2, "an average-sized
    vertebra" (mm)."""
    column_search_mm: float = 40.0
    """paper (unstated value): per-slice maxima of the localization map are searched within this
    distance left and right of the sagittal column estimate (mm)."""
    min_localization_value: float = 0.25
    """ours: a slice's maximum counts only when both half-disks hold at least this bone fraction (ratio)."""
    ransac_residual_mm: float = 15.0
    """paper (unstated value): RANSAC inlier threshold of the quadratic centerline fit, |dy| + |dx|
    in the axial plane (mm)."""
    centerline_window_mm: float = 200.0
    """ours: on longer scans the quadratic is fitted over overlapping windows of this length, so that
    kyphosis and lordosis are both followed (0 = one quadratic, as in the paper) (mm)."""
    centerline_keep_inliers: bool = True
    """ours: on slices whose maximum is a RANSAC inlier use the maximum itself as the centre (the
    paper uses the fitted curve on every slice)."""

    # -- rough segmentation by reconstruction (paper section 3.2) ----------------------------
    seed_radius_mm: float = 8.0
    """paper (unstated value): the centerline is dilated by a disk of this radius to seed the 2-D
    reconstruction (mm)."""
    seed_midline: bool = True
    """ours: the seed also holds the centre column from the centre back to H3, so that the vertebral
    arch is found on slices where it is not joined to the body (intervertebral discs)."""
    midline_halfwidth_mm: float = 2.0
    """ours: half-width of that band of columns (mm)."""
    midline_front_mm: float = 30.0
    """ours: the band starts this far in front of the centre, to reach a body whose centre estimate
    fell into the canal (mm)."""
    reconstruction_gap_mm: float = 0.0
    """ours: bone pieces closer than this count as connected in the 2-D reconstruction (0 = pixel
    connectivity) (mm)."""
    spinous_z_dilation_mm: float = 5.0
    """paper (unstated value): dilation of the reconstructed mask across axial slices (M_R) for
    spinous-process recovery (mm)."""
    spinous_reconstruction_mm: float = 6.0
    """paper (unstated value): reach of the limited-iteration reconstruction inside M_R & M_B; the
    iteration count is this over the in-plane voxel size (mm)."""

    # -- bounding lines (paper section 3.2) --------------------------------------------------
    top_band_mm: float = 5.0
    """paper (unstated value): half-width of the band of columns around the centre where the top of
    the vertebral body (H1) is searched (mm)."""
    spinous_band_mm: float = 30.0
    """ours: the MIP for the end of the spinous process (H3) spans this far left and right of the
    centre, so that scapulae and arms are not taken for it (mm)."""
    width_shift_factor: float = 0.5
    """paper 1.0, ours 0.5: V1 and V6 lie this many vertebral-body widths outside V2 and V5; the paper's
    full width keeps the rib heads, which references of the vertebrae leave out (ratio)."""

    # -- parabola refinement (paper section 3.3) ---------------------------------------------
    refine_with_parabola: bool = True
    """paper: refine the anterior contour of the vertebral body with the parabola fit and DP."""
    parabola_min_halfwidth_mm: float = 8.0
    """paper (unstated value): narrowest parabola of the family, half-width at its height (mm)."""
    parabola_max_halfwidth_mm: float = 28.0
    """paper (unstated value): widest parabola of the family, half-width at its height (mm)."""
    parabola_count: int = 11
    """paper (unstated value): number of focal lengths in the family (count)."""
    parabola_shift_mm: float = 8.0
    """paper (unstated value): the family is shifted along y this far either way of H1 (mm)."""
    parabola_step_mm: float = 1.0
    """paper (unstated value): spacing of the samples along the parabola and of the y shifts (mm)."""
    gradient_sigma_mm: float = 1.0
    """paper (unstated value): Gaussian scale of the directional gradients (mm)."""
    dp_scale_min: float = 0.75
    """paper (unstated value): smallest multiplicative offset mu_mult of Eq. 5 (ratio)."""
    dp_scale_max: float = 1.25
    """paper (unstated value): largest multiplicative offset mu_mult of Eq. 5 (ratio)."""
    dp_scale_count: int = 26
    """paper (unstated value): number of multiplicative offsets (count)."""
    dp_penalty: float = 30.0
    """paper (unstated value): sigma of Eq. 5, cost of a radial jump between neighbouring points, in
    HU/mm of directional gradient per mm of jump."""
    parabola_cut_anterior: bool = False
    """ours: drop everything in front of the DP points instead of only what hangs on by a thin link."""
    refine_opening_mm: float = 1.5
    """paper (unstated value): radius of the opening that detaches thinly linked parts before the
    final reconstruction (mm)."""

    # -- finishing (ours) --------------------------------------------------------------------
    fill_body_holes: bool = True
    """ours: fill the vertebral bodies (convex hull between H1, H2, V2, V5, and holes of cancellous-bone
    density); the spinal canal stays open."""
    fill_close_mm: float = 1.5
    """ours: closing radius that seals the cortex before holes are filled (mm)."""
    fill_min_hu: float = 80.0
    """ours: holes whose mean is at least this are cancellous bone and get filled; the canal is darker (HU)."""
    min_canal_fraction: float = 0.55
    """ours: fewest outlined slices (fraction) that must show a spinal canal -- a gap on the centre
    column between body and arch, with bone on both sides -- else NoSpineFoundError (ratio)."""
    min_spine_fraction: float = 0.5
    """ours: fewest slices (fraction of those in the scan) that must show a vertebra-like bone
    structure on the centerline, else NoSpineFoundError (ratio)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ClassicalParams":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown classical parameters: {', '.join(sorted(unknown))}")
        return cls(**values)
