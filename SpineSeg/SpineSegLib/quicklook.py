"""Quick-look PNG of a classical segmentation: a curved sagittal view along the spine and an axial
view of a mid-spine slice, with the mask, the centerline, the bounding lines, the chosen parabola
and the DP points. Drawn with matplotlib's Agg backend (no display needed, no pyplot state).

Console use::

    from SpineSegLib.quicklook import save_quicklook
    save_quicklook(ct, result, "spine.png")                  # refuses to overwrite unless force=True
    save_quicklook(ct, result, "spine.png", reference=ref)   # also outlines a reference mask
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError, OutputExistsError
from .image import Image, replaced_atomically
from .orientation import to_canonical

WINDOW_HU = (-250, 1000)
HALF_FIELD_MM = 75.0


def check_png_path(path, force: bool = False) -> Path:
    """Raise unless ``path`` is a .png that may be written."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the quick-look picture must be a .png file")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force (force=True) to overwrite it")
    return path


def save_quicklook(image: Image, result, path, force: bool = False, reference: Image | None = None, title: str = "") -> Path:
    """Draw the quick-look picture of ``result`` (a ClassicalResult of ``image``) into ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_png_path(path, force)
    can = to_canonical(image)
    ct = can.image
    hu = ct.array
    mask = to_canonical(result.mask).image.array > 0
    ref = None
    if reference is not None:
        from .image import resample_to_grid
        ref = to_canonical(resample_to_grid(reference, image, label=True)).image.array > 0
    nz, ny, nx = hu.shape
    sx, sy, sz = ct.spacing

    def to_index(points):
        points = np.asarray(points, float).reshape(-1, 3)
        return ct.lps_to_index(points) if len(points) else np.zeros((0, 3))   # (i=x, j=y, k=z)

    centres = to_index(result.centerline_centres_lps)
    fig = Figure(figsize=(13, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax_sag, ax_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)

    # -- curved sagittal: for each slice the column of the centerline ---------------------------
    if len(centres):
        order = np.argsort(centres[:, 2])
        column = np.interp(np.arange(nz), centres[order, 2], centres[order, 0])
    else:
        column = np.full(nz, nx / 2.0)
    column = np.clip(np.round(column).astype(int), 0, nx - 1)
    sag = hu[np.arange(nz), :, column]                      # (z, y)
    sag_mask = mask[np.arange(nz), :, column]
    extent = (-0.5 * sy, (ny - 0.5) * sy, -0.5 * sz, (nz - 0.5) * sz)   # y (mm, anterior left), z (mm, up)
    ax_sag.imshow(sag, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower", extent=extent,
                  interpolation="nearest")
    _overlay(ax_sag, sag_mask, extent, origin="lower")
    if ref is not None:
        ax_sag.contour(ref[np.arange(nz), :, column], levels=[0.5], colors="red", linewidths=0.7, origin="lower", extent=extent)
    pts = to_index(result.centerline_points_lps)
    inl = np.asarray(result.centerline_inliers, bool)
    if len(pts):
        ax_sag.plot(pts[inl, 1] * sy, pts[inl, 2] * sz, "o", ms=2.5, color="deepskyblue", label="maxima (inliers)")
        ax_sag.plot(pts[~inl, 1] * sy, pts[~inl, 2] * sz, "x", ms=3, color="orange", label="maxima (outliers)")
    curve = to_index(result.centerline_curve_lps)
    if len(curve):
        ax_sag.plot(curve[:, 1] * sy, curve[:, 2] * sz, "-", lw=1.2, color="lime", label="fitted centerline")
    for fit in result.parabolas:
        dp = to_index(fit["dp_points"])
        front = dp[np.argmin(dp[:, 1])] if len(dp) else None
        if front is not None:
            ax_sag.plot(front[1] * sy, front[2] * sz, ".", ms=2, color="red")
    if len(centres):
        yc = centres[:, 1] * sy
        ax_sag.set_xlim(max(yc.min() - 2 * HALF_FIELD_MM, extent[0]), min(yc.max() + 1.5 * HALF_FIELD_MM, extent[1]))
    ax_sag.set_xlabel("anterior  <-  y (mm)  ->  posterior")
    ax_sag.set_ylabel("z (mm, superior up)")
    ax_sag.set_title("curved sagittal view along the centerline")
    ax_sag.legend(loc="lower left", fontsize=7, framealpha=0.6)

    # -- axial: the slice with a parabola nearest the middle of the spine ------------------------
    if result.parabolas:
        # the clearest body edge among the middle half of the slices with a parabola
        zs = np.array([p["slice"] for p in result.parabolas])
        scores = np.array([p.get("edge_score", 0.0) for p in result.parabolas])
        lo, hi = np.percentile(zs, [25, 75])
        middle = (zs >= lo) & (zs <= hi)
        k = int(zs[middle][np.argmin(scores[middle])])
    elif len(centres):
        k = int(round(np.median(centres[:, 2])))
    else:
        k = nz // 2
    extent_ax = (-0.5 * sx, (nx - 0.5) * sx, (ny - 0.5) * sy, -0.5 * sy)
    ax_ax.imshow(hu[k], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent_ax, interpolation="nearest")
    _overlay(ax_ax, mask[k], extent_ax, origin="upper")
    if ref is not None:
        ax_ax.contour(ref[k], levels=[0.5], colors="red", linewidths=0.7, extent=(extent_ax[0], extent_ax[1], extent_ax[3], extent_ax[2]))
    colours = {"H": "magenta", "V": "yellow"}
    for entry in result.slices:
        if entry["slice"] != k:
            continue
        for name, segment in entry["lines"].items():
            seg = to_index(segment)
            ax_ax.plot(seg[:, 0] * sx, seg[:, 1] * sy, "-", lw=0.8, color=colours[name[0]])
            ax_ax.annotate(name, (seg[0, 0] * sx, seg[0, 1] * sy), color=colours[name[0]], fontsize=6)
    for fit in result.parabolas:
        if fit["slice"] != k:
            continue
        par, dp, c = to_index(fit["parabola"]), to_index(fit["dp_points"]), to_index(fit["centre"])
        ax_ax.plot(par[:, 0] * sx, par[:, 1] * sy, "-", lw=1.2, color="red", label="chosen parabola")
        ax_ax.plot(dp[:, 0] * sx, dp[:, 1] * sy, ".", ms=3, color="lime", label="DP points")
        ax_ax.plot(c[:, 0] * sx, c[:, 1] * sy, "+", ms=8, color="cyan", label="parabola centre")
    here = centres[np.argmin(np.abs(centres[:, 2] - k))] if len(centres) else np.array([nx / 2, ny / 2, k])
    ax_ax.set_xlim(max(here[0] * sx - HALF_FIELD_MM, extent_ax[0]), min(here[0] * sx + HALF_FIELD_MM, extent_ax[1]))
    ax_ax.set_ylim(min(here[1] * sy + 1.1 * HALF_FIELD_MM, extent_ax[2]), max(here[1] * sy - 0.9 * HALF_FIELD_MM, extent_ax[3]))
    ax_ax.set_xlabel("patient right  <-  x (mm)  ->  patient left")
    ax_ax.set_ylabel("anterior (top)  y (mm)  posterior (bottom)")
    z_mm = ct.index_to_lps([0, 0, k])[2]
    ax_ax.set_title(f"axial slice {k} (z = {z_mm:.1f} mm LPS)")
    if result.parabolas:
        ax_ax.legend(loc="lower left", fontsize=7, framealpha=0.6)
    heading = title or "classical spine segmentation"
    heading += f"  |  contrast: {'yes' if result.contrast else 'no'}"
    if ref is not None:
        heading += "  |  red outline: reference"
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()

    with replaced_atomically(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def _overlay(ax, mask2d, extent, origin):
    rgba = np.zeros(mask2d.shape + (4,), np.float32)
    rgba[mask2d] = (0.1, 0.9, 0.9, 0.35)
    ax.imshow(rgba, extent=extent, origin=origin, interpolation="nearest")
