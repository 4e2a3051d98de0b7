"""Quick-look PNG of a classical segmentation: a curved sagittal view along the spine and an axial
view of a mid-spine slice, with the mask, the centerline, the bounding lines, the chosen parabola
and the DP points. Drawn with matplotlib's Agg backend (no display needed, no pyplot state).

Console use::

    from SpineSegLib.evaluation.quicklook import save_quicklook
    save_quicklook(ct, result, "spine.png")                  # refuses to overwrite unless force=True
    save_quicklook(ct, result, "spine.png", reference=ref)   # also outlines a reference mask
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import check_force, replaced_atomically
from SpineSegLib.core.image import Image
from SpineSegLib.core.orientation import to_canonical

WINDOW_HU = (-250, 1000)
HALF_FIELD_MM = 75.0


def check_png_path(path, force: bool = False, what: str = "the quick-look picture") -> Path:
    """Raise unless ``path`` is a .png that may be written."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: {what} must be a .png file")
    return check_force(path, force)


def curved_columns(centres_ijk: np.ndarray, nz: int, nx: int) -> np.ndarray:
    """For each axial slice, the column (x index) of a curved sagittal cut through the points ``centres_ijk``
    (continuous (i, j, k) indices; the middle column without points)."""
    if len(centres_ijk):
        order = np.argsort(centres_ijk[:, 2])
        column = np.interp(np.arange(nz), centres_ijk[order, 2], centres_ijk[order, 0])
    else:
        column = np.full(nz, nx / 2.0)
    return np.clip(np.round(column).astype(int), 0, nx - 1)


def save_quicklook(image: Image, result, path, force: bool = False, reference: Image | None = None, title: str = "") -> Path:
    """Draw the quick-look picture of ``result`` (a ClassicalResult of ``image``) into ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_png_path(path, force)
    ct = to_canonical(image).image
    mask = to_canonical(result.mask).image.array > 0
    ref = None
    if reference is not None:
        from SpineSegLib.core.grids import conform
        on_grid, _ = conform(reference, image, label=True, what="the reference", onto="the scan")
        ref = to_canonical(on_grid).image.array > 0
    centres = _to_index(ct, result.centerline_centres_lps)
    fig = Figure(figsize=(13, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax_sag, ax_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _draw_sagittal(ax_sag, ct, mask, ref, result, centres)
    _draw_axial(ax_ax, ct, mask, ref, result, centres, _axial_slice(result, centres, ct.array.shape[0]))
    heading = title or "classical spine segmentation"
    heading += f"  |  contrast: {'yes' if result.contrast else 'no'}"
    if ref is not None:
        heading += "  |  red outline: reference"
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()

    with replaced_atomically(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def _to_index(ct: Image, points) -> np.ndarray:
    """LPS points -> continuous (i=x, j=y, k=z) indices of the canonical ``ct``."""
    points = np.asarray(points, float).reshape(-1, 3)
    return ct.lps_to_index(points) if len(points) else np.zeros((0, 3))


def _draw_sagittal(ax, ct: Image, mask, ref, result, centres) -> None:
    """Curved sagittal view: for each slice the column of the centerline, with the centerline's
    maxima, the fitted curve and the front-most DP point of each slice."""
    hu = ct.array
    nz, ny, nx = hu.shape
    sx, sy, sz = ct.spacing
    column = curved_columns(centres, nz, nx)
    extent = (-0.5 * sy, (ny - 0.5) * sy, -0.5 * sz, (nz - 0.5) * sz)   # y (mm, anterior left), z (mm, up)
    ax.imshow(hu[np.arange(nz), :, column], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower",
              extent=extent, interpolation="nearest")
    _overlay(ax, mask[np.arange(nz), :, column], extent, origin="lower")
    if ref is not None:
        ax.contour(ref[np.arange(nz), :, column], levels=[0.5], colors="red", linewidths=0.7, origin="lower", extent=extent)
    pts = _to_index(ct, result.centerline_points_lps)
    inl = np.asarray(result.centerline_inliers, bool)
    if len(pts):
        ax.plot(pts[inl, 1] * sy, pts[inl, 2] * sz, "o", ms=2.5, color="deepskyblue", label="maxima (inliers)")
        ax.plot(pts[~inl, 1] * sy, pts[~inl, 2] * sz, "x", ms=3, color="orange", label="maxima (outliers)")
    curve = _to_index(ct, result.centerline_curve_lps)
    if len(curve):
        ax.plot(curve[:, 1] * sy, curve[:, 2] * sz, "-", lw=1.2, color="lime", label="fitted centerline")
    for fit in result.parabolas:
        dp = _to_index(ct, fit.dp_points)
        if len(dp):
            front = dp[np.argmin(dp[:, 1])]
            ax.plot(front[1] * sy, front[2] * sz, ".", ms=2, color="red")
    if len(centres):
        yc = centres[:, 1] * sy
        ax.set_xlim(max(yc.min() - 2 * HALF_FIELD_MM, extent[0]), min(yc.max() + 1.5 * HALF_FIELD_MM, extent[1]))
    ax.set_xlabel("anterior  <-  y (mm)  ->  posterior")
    ax.set_ylabel("z (mm, superior up)")
    ax.set_title("curved sagittal view along the centerline")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.6)


def _axial_slice(result, centres, nz: int) -> int:
    """The axial slice to show: the clearest body edge (lowest edge score) among the middle half of the
    slices with a parabola; else the centerline's middle slice."""
    if result.parabolas:
        zs = np.array([p.slice_index for p in result.parabolas])
        scores = np.array([p.edge_score for p in result.parabolas])
        lo, hi = np.percentile(zs, [25, 75])
        middle = (zs >= lo) & (zs <= hi)
        return int(zs[middle][np.argmin(scores[middle])])
    if len(centres):
        return int(round(np.median(centres[:, 2])))
    return nz // 2


def _draw_axial(ax, ct: Image, mask, ref, result, centres, k: int) -> None:
    """Axial slice ``k`` with the mask, the bounding lines, the chosen parabola and the DP points."""
    hu = ct.array
    nz, ny, nx = hu.shape
    sx, sy, sz = ct.spacing
    extent = (-0.5 * sx, (nx - 0.5) * sx, (ny - 0.5) * sy, -0.5 * sy)
    ax.imshow(hu[k], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent, interpolation="nearest")
    _overlay(ax, mask[k], extent, origin="upper")
    if ref is not None:
        ax.contour(ref[k], levels=[0.5], colors="red", linewidths=0.7, extent=(extent[0], extent[1], extent[3], extent[2]))
    colours = {"H": "magenta", "V": "yellow"}
    for entry in result.slices:
        if entry.slice_index != k:
            continue
        for name, segment in entry.segments().items():
            seg = _to_index(ct, segment)
            ax.plot(seg[:, 0] * sx, seg[:, 1] * sy, "-", lw=0.8, color=colours[name[0]])
            ax.annotate(name, (seg[0, 0] * sx, seg[0, 1] * sy), color=colours[name[0]], fontsize=6)
    for fit in result.parabolas:
        if fit.slice_index != k:
            continue
        par, dp, c = _to_index(ct, fit.parabola), _to_index(ct, fit.dp_points), _to_index(ct, fit.centre)
        ax.plot(par[:, 0] * sx, par[:, 1] * sy, "-", lw=1.2, color="red", label="chosen parabola")
        ax.plot(dp[:, 0] * sx, dp[:, 1] * sy, ".", ms=3, color="lime", label="DP points")
        ax.plot(c[:, 0] * sx, c[:, 1] * sy, "+", ms=8, color="cyan", label="parabola centre")
    here = centres[np.argmin(np.abs(centres[:, 2] - k))] if len(centres) else np.array([nx / 2, ny / 2, k])
    ax.set_xlim(max(here[0] * sx - HALF_FIELD_MM, extent[0]), min(here[0] * sx + HALF_FIELD_MM, extent[1]))
    ax.set_ylim(min(here[1] * sy + 1.1 * HALF_FIELD_MM, extent[2]), max(here[1] * sy - 0.9 * HALF_FIELD_MM, extent[3]))
    ax.set_xlabel("patient right  <-  x (mm)  ->  patient left")
    ax.set_ylabel("anterior (top)  y (mm)  posterior (bottom)")
    ax.set_title(f"axial slice {k} (z = {ct.index_to_lps([0, 0, k])[2]:.1f} mm LPS)")
    if result.parabolas:
        ax.legend(loc="lower left", fontsize=7, framealpha=0.6)


def _overlay(ax, mask2d, extent, origin):
    rgba = np.zeros(mask2d.shape + (4,), np.float32)
    rgba[mask2d] = (0.1, 0.9, 0.9, 0.35)
    ax.imshow(rgba, extent=extent, origin=origin, interpolation="nearest")
