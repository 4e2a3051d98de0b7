"""Render the catalogue screenshots in ``Resources/Screenshots/`` offscreen from real results (run from the repo root).

    OMP_NUM_THREADS=1 python scripts/make_screenshots.py [--data ../shared/data] [--out Resources/Screenshots]

* ``SpineSeg-classical.png``: the classical pipeline (what ``spineseg classical`` and the SpineSeg module run) on
  the chest CT LIDC-IDRI-0001: the "Spine" segment and its centerline in 3-D, a sagittal slice with the segment
  and the centerline, and an axial slice with the bounding lines H1-H3 / V1-V6, the chosen parabola and its DP
  points, drawn with the names and colours the module gives these nodes in Slicer.
* ``SpineSegIIS-vertebrae.png``: the bundled ``mr-vertebral-bodies`` IIS model (what ``spineseg iis`` and the
  SpineSegIIS module run) on the lumbar MR MyoSegmenTUM case 44 (in the model's test split, never trained on): the
  labelled vertebral bodies in 3-D and on a sagittal slice, coloured and named from the SpineSeg label table, and
  the per-vertebra table.

3-D views are rendered with VTK offscreen (EGL or OSMesa, whichever VTK finds), slices with matplotlib; the
pictures are saved as 256-colour PNGs (each well under 300 kB). Nothing here is a stand-in: the masks, lines,
parabolas, labels and table rows are those the pipelines return.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSeg"))

from SpineSegLib.core.image import Image, read_image  # noqa: E402
from SpineSegLib.core.labels import VERTEBRAE  # noqa: E402

# Slicer's look: 3-D view background gradient, view-bar colours, and the colours SpineSeg gives its nodes
# (SpineSegLib.slicer.classical_logic: SPINE_COLOUR, H_COLOUR, V_COLOUR, PARABOLA_COLOUR, DP_COLOUR, CENTERLINE_COLOUR).
BACKGROUND_3D = ((0.7568, 0.7647, 0.9098), (0.4549, 0.4706, 0.7451))
VIEW_BARS = {"3D": "#8a8fc4", "Red": "#f34a33", "Yellow": "#edd54c", "Green": "#6eb04b"}
SIZE_PX = (1440, 560)
DPI = 100


def classical_colours() -> dict:
    from SpineSegLib.slicer import classical_logic as c
    return {"spine": c.SPINE_COLOUR, "H": c.H_COLOUR, "V": c.V_COLOUR, "parabola": c.PARABOLA_COLOUR,
            "dp": c.DP_COLOUR, "centerline": c.CENTERLINE_COLOUR}


# ----------------------------------------------------------------------------------------------------------------
# Slices in patient coordinates (axis-aligned grids)

def _axis_map(image: Image):
    """For each LPS axis: (array axis in numpy order, +1/-1 when the array runs along/against it)."""
    out = {}
    for c in range(3):                      # c = i, j, k (ITK order)
        lps_axis = int(np.argmax(np.abs(image.direction[:, c])))
        out[lps_axis] = (2 - c, 1 if image.direction[lps_axis, c] > 0 else -1)
    return out


def _lps_range(image: Image, lps_axis: int) -> tuple[float, float]:
    corners = image.index_to_lps(np.array([[-0.5, -0.5, -0.5], np.array(image.size) - 0.5]))
    lo, hi = sorted(corners[:, lps_axis])
    return float(lo), float(hi)


def lps_slice(image: Image, view: str, position_mm: float):
    """The slice of ``image`` through ``position_mm`` as Slicer shows it: axial (x: R->L, rows: A->P) or sagittal
    (x: A->P, rows: S->I). Returns (2-D array, extent for imshow with origin='upper', (u, v) LPS axes)."""
    fixed, u, v, v_down = {"axial": (2, 0, 1, True), "sagittal": (0, 1, 2, False)}[view]
    amap = _axis_map(image)
    array = image.array
    centre = image.index_to_lps((np.array(image.size) - 1) / 2.0)
    centre[fixed] = position_mm
    axis = amap[fixed][0]
    k = int(np.clip(round(float(image.lps_to_index(centre)[2 - axis])), 0, array.shape[axis] - 1))
    plane = np.take(array, k, axis=axis)
    rest = [a for a in range(3) if a != axis]       # remaining numpy axes, in order
    order = [rest.index(amap[v][0]), rest.index(amap[u][0])]  # rows = v, columns = u
    plane = np.transpose(plane, order)
    if amap[u][1] < 0:
        plane = plane[:, ::-1]
    if (amap[v][1] > 0) != v_down:
        plane = plane[::-1, :]
    u_lo, u_hi = _lps_range(image, u)
    v_lo, v_hi = _lps_range(image, v)
    extent = (u_lo, u_hi, v_hi, v_lo) if v_down else (u_lo, u_hi, v_lo, v_hi)
    return plane, extent, (u, v)


def view_bar(ax, colour: str, letter: str, text: str) -> None:
    """Slicer's view bar: a coloured strip with the view's letter and the slice position."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((0, 1.0), 1, 0.045, transform=ax.transAxes, color=colour, clip_on=False))
    ax.text(0.01, 1.022, letter, transform=ax.transAxes, va="center", ha="left", fontsize=10, weight="bold")
    ax.text(0.07, 1.022, text, transform=ax.transAxes, va="center", ha="left", fontsize=9)


def overlay_labels(ax, plane_labels, extent, colours: dict, opacity: float = 0.5) -> None:
    """Filled segments (Slicer's default fill opacity) with outlines, coloured per label value."""
    rgba = np.zeros(plane_labels.shape + (4,))
    for value, colour in colours.items():
        inside = plane_labels == value
        rgba[inside, :3] = colour
        rgba[inside, 3] = opacity
    ax.imshow(rgba, extent=extent, origin="upper", interpolation="nearest")
    for value, colour in colours.items():
        inside = (plane_labels == value).astype(float)
        if inside.any():
            ny, nx = inside.shape
            xs = extent[0] + (np.arange(nx) + 0.5) * (extent[1] - extent[0]) / nx
            ys = extent[3] + (np.arange(ny) + 0.5) * (extent[2] - extent[3]) / ny    # row 0 is the top
            ax.contour(xs, ys, inside, levels=[0.5], colors=[colour], linewidths=1.2)


def legend(ax, entries, loc: str = "upper right") -> None:
    """A small key in a corner of a view: (name, colour, "fill" | "line")."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=c, edgecolor=c, alpha=0.8) if kind == "fill" else Line2D([], [], color=c, lw=2)
               for _, c, kind in entries]
    key = ax.legend(handles, [name for name, _, _ in entries], loc=loc, fontsize=9, frameon=False)
    for text, (_, colour, _) in zip(key.get_texts(), entries):
        text.set_color(colour)


# ----------------------------------------------------------------------------------------------------------------
# 3-D views (VTK offscreen)

def _surface(mask: np.ndarray, image: Image, smoothing_iterations: int = 30):
    """Closed surface of a binary mask in LPS mm (flying edges, windowed-sinc smoothing, as Slicer's default)."""
    import vtk
    from vtk.util import numpy_support

    data = vtk.vtkImageData()
    data.SetDimensions(*reversed(mask.shape))
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True))
    fe = vtk.vtkFlyingEdges3D()
    fe.SetInputData(data)
    fe.SetValue(0, 0.5)
    smooth = vtk.vtkWindowedSincPolyDataFilter()
    smooth.SetInputConnection(fe.GetOutputPort())
    smooth.SetNumberOfIterations(smoothing_iterations)
    smooth.SetPassBand(0.02)
    smooth.NormalizeCoordinatesOn()
    transform = vtk.vtkTransform()
    transform.SetMatrix(image.index_to_lps_matrix().ravel().tolist())
    to_lps = vtk.vtkTransformPolyDataFilter()
    to_lps.SetTransform(transform)
    to_lps.SetInputConnection(smooth.GetOutputPort())
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(to_lps.GetOutputPort())
    normals.Update()
    return normals.GetOutput()


def _actor(polydata, colour, opacity: float = 1.0):
    import vtk
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetOpacity(opacity)
    actor.GetProperty().SetSpecular(0.2)
    actor.GetProperty().SetSpecularPower(20)
    return actor


def _tube(points_lps: np.ndarray, colour, radius: float):
    import vtk
    pts = vtk.vtkPoints()
    for p in points_lps:
        pts.InsertNextPoint(*map(float, p))
    line = vtk.vtkPolyLineSource()
    line.SetNumberOfPoints(len(points_lps))
    line.SetPoints(pts)
    tube = vtk.vtkTubeFilter()
    tube.SetInputConnection(line.GetOutputPort())
    tube.SetRadius(radius)
    tube.SetNumberOfSides(16)
    tube.Update()
    return _actor(tube.GetOutput(), colour)


def render_3d(actors, size, azimuth_deg: float, elevation_deg: float = 10.0, zoom: float = 1.0, points_lps=None):
    """RGB array of the actors seen like Slicer's 3-D view: from the patient's front (anterior, superior up),
    turned by ``azimuth_deg`` (VTK's azimuth; negative turns towards the patient's right), on Slicer's background
    gradient; and the screen positions (pixels, origin top-left) of ``points_lps``."""
    import vtk
    from vtk.util import numpy_support

    renderer = vtk.vtkRenderer()
    renderer.GradientBackgroundOn()
    renderer.SetBackground(*BACKGROUND_3D[1])
    renderer.SetBackground2(*BACKGROUND_3D[0])
    for actor in actors:
        renderer.AddActor(actor)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(8)
    window.AddRenderer(renderer)
    window.SetSize(*size)
    camera = renderer.GetActiveCamera()
    renderer.ResetCamera()
    focal = np.array(camera.GetFocalPoint())
    camera.SetPosition(*(focal + np.array([0.0, -camera.GetDistance(), 0.0])))   # LPS: anterior is -y
    camera.SetViewUp(0, 0, 1)
    camera.Azimuth(azimuth_deg)
    camera.Elevation(elevation_deg)
    camera.OrthogonalizeViewUp()
    renderer.ResetCamera()
    camera.Zoom(zoom)
    renderer.ResetCameraClippingRange()
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    out = grab.GetOutput()
    w, h, _ = out.GetDimensions()
    rgb = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3].copy()
    screen = []
    coordinate = vtk.vtkCoordinate()
    coordinate.SetCoordinateSystemToWorld()
    for p in ([] if points_lps is None else points_lps):
        coordinate.SetValue(*map(float, p))
        x, y = coordinate.GetComputedDoubleDisplayValue(renderer)
        screen.append((x, h - y))
    window.Finalize()
    return rgb, np.array(screen)


# ----------------------------------------------------------------------------------------------------------------
# Figures

def _figure():
    from matplotlib.figure import Figure
    return Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI, facecolor="black")


def save_small_png(fig, path: Path) -> Path:
    """Save ``fig`` as a 256-colour PNG (catalogue pictures stay small)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image as PILImage

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    picture = PILImage.open(buffer).convert("RGB").quantize(colors=256, method=PILImage.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)
    return path


def _image_axes(fig, rect, title_colour, letter, text):
    ax = fig.add_axes(rect)
    ax.set_facecolor("black")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(title_colour)
    view_bar(ax, title_colour, letter, text)
    return ax


def classical_figure(ct: Image, result, path: Path) -> Path:
    colours = classical_colours()
    mask = result.mask.array > 0
    curve = np.asarray(result.centerline_curve_lps)
    actors = [_actor(_surface(mask, ct), colours["spine"], opacity=0.45), _tube(curve, colours["centerline"], 2.5)]
    size3d = (520, 520)
    rgb, ends = render_3d(actors, size3d, azimuth_deg=-55, zoom=1.1, points_lps=curve[[0, -1]])
    fig = _figure()
    ax3d = _image_axes(fig, [0.005, 0.01, 0.355, 0.88], VIEW_BARS["3D"], "1", "3D: Spine, centerline")
    ax3d.imshow(rgb)
    top = ends[int(np.argmin(ends[:, 1]))]
    ax3d.text(top[0] + 12, top[1] + 20, "centerline", color=colours["centerline"], fontsize=10)

    # sagittal through the centerline's mean left-right position
    x_mid = float(np.median(curve[:, 0]))
    plane, extent, _ = lps_slice(ct, "sagittal", x_mid)
    labels, _, _ = lps_slice(result.mask, "sagittal", x_mid)
    axs = _image_axes(fig, [0.365, 0.01, 0.255, 0.88], VIEW_BARS["Yellow"], "Y", f"R: {-x_mid:.1f}mm")
    axs.imshow(plane, cmap="gray", vmin=-160, vmax=240, extent=extent, origin="upper", interpolation="bilinear")
    overlay_labels(axs, (labels > 0).astype(int), extent, {1: colours["spine"]})
    axs.plot(curve[:, 1], curve[:, 2], color=colours["centerline"], lw=1.8)
    y_mid = float(np.median(curve[:, 1]))
    axs.set_xlim(y_mid - 110, y_mid + 110)
    axs.set_ylim(extent[2], extent[3])
    legend(axs, [("Spine", colours["spine"], "fill"), ("centerline", colours["centerline"], "line")])

    # axial through a mid-spine slice with its lines and parabola
    entry = result.slices[len(result.slices) // 2]
    fit = min(result.parabolas, key=lambda p: abs(p.slice_index - entry.slice_index))
    plane, extent, _ = lps_slice(ct, "axial", entry.z_mm)
    labels, _, _ = lps_slice(result.mask, "axial", entry.z_mm)
    axa = _image_axes(fig, [0.625, 0.01, 0.37, 0.88], VIEW_BARS["Red"], "R", f"S: {entry.z_mm:.1f}mm")
    axa.imshow(plane, cmap="gray", vmin=-160, vmax=240, extent=extent, origin="upper", interpolation="bilinear")
    overlay_labels(axa, (labels > 0).astype(int), extent, {1: colours["spine"]}, opacity=0.3)
    for name, segment in entry.segments().items():
        colour = colours["H"] if name.startswith("H") else colours["V"]
        axa.plot(segment[:, 0], segment[:, 1], color=colour, lw=1.3)
        anchor = segment[0] if name.startswith("H") else segment[1]
        offset = (-9, 0) if name.startswith("H") else (0, 9 if name == "V4" else 5)
        axa.text(anchor[0] + offset[0], anchor[1] + offset[1], name, color=colour, fontsize=8,
                 ha="center", va="center")
    axa.plot(fit.parabola[:, 0], fit.parabola[:, 1], color=colours["parabola"], lw=1.6)
    axa.plot(fit.dp_points[:, 0], fit.dp_points[:, 1], "o", color=colours["dp"], ms=2.2)
    axa.text(fit.parabola[0, 0] - 2, fit.parabola[0, 1] - 4, "parabola", color=colours["parabola"], fontsize=8,
             ha="right")
    at = curve[int(np.argmin(np.abs(curve[:, 2] - entry.z_mm)))]
    axa.plot([at[0]], [at[1]], "o", color=colours["centerline"], ms=5)
    centre = np.mean(np.vstack([entry.h1, entry.h3]), axis=0)
    axa.set_xlim(centre[0] - 62, centre[0] + 62)
    axa.set_ylim(centre[1] + 50, centre[1] - 52)
    fig.text(0.005, 0.962, "SpineSeg (classical pipeline) on LIDC-IDRI-0001: Spine segment, centerline, "
             "bounding lines and parabola", color="white", fontsize=11)
    return save_small_png(fig, path)


def iis_figure(mr: Image, result, path: Path) -> Path:
    ids = sorted(int(v) for v in np.unique(result.labels.array) if v)
    colours = {i: VERTEBRAE[i].color_255 for i in ids}
    colours = {i: tuple(c / 255.0 for c in rgb) for i, rgb in colours.items()}
    actors = [_actor(_surface(result.labels.array == i, mr), colours[i]) for i in ids]
    size3d = (440, 520)
    azimuth = -70
    centres = [mr.index_to_lps(np.argwhere(result.labels.array == i).mean(axis=0)[::-1]) for i in ids]
    rgb, screen = render_3d(actors, size3d, azimuth_deg=azimuth, zoom=1.15, points_lps=np.array(centres))
    fig = _figure()
    ax3d = _image_axes(fig, [0.005, 0.01, 0.30, 0.88], VIEW_BARS["3D"], "1", "3D: vertebrae")
    ax3d.imshow(rgb)
    for i, (x, y) in zip(ids, screen):
        ax3d.text(x + 55, y, VERTEBRAE[i].name, color="white", fontsize=11, weight="bold", va="center")

    inside = np.argwhere(result.labels.array > 0)
    x_mid = float(np.median(mr.index_to_lps(inside[:, ::-1].astype(float))[:, 0]))
    plane, extent, _ = lps_slice(mr, "sagittal", x_mid)
    labels, _, _ = lps_slice(result.labels, "sagittal", x_mid)
    axs = _image_axes(fig, [0.31, 0.01, 0.33, 0.88], VIEW_BARS["Yellow"], "Y", f"R: {-x_mid:.1f}mm")
    axs.imshow(plane, cmap="gray", extent=extent, origin="upper", interpolation="bilinear",
               vmin=0, vmax=float(np.percentile(plane, 99.5)))
    overlay_labels(axs, labels, extent, colours)
    for i, centre in zip(ids, centres):
        axs.text(centre[1] - 38, centre[2], VERTEBRAE[i].name, color=colours[i], fontsize=10, weight="bold",
                 va="center", ha="right")
    table_axes(fig, result, [0.655, 0.06, 0.335, 0.79])
    fig.text(0.005, 0.962, "SpineSeg IIS (bundled mr-vertebral-bodies model) on a lumbar MR (MyoSegmenTUM 44): "
             "labelled vertebral bodies and the per-vertebra table", color="white", fontsize=11)
    return save_small_png(fig, path)


def table_axes(fig, result, rect) -> None:
    """The per-vertebra table as the module's table node shows it."""
    ax = fig.add_axes(rect)
    ax.axis("off")
    header = ["Name", "Complete", "Completeness", "Volume (ml)", "In output"]
    rows = [[v.name, "yes" if v.complete else "no", f"{v.completeness:.2f}", f"{v.volume_ml:.1f}",
             "yes" if v.in_output else "no"] for v in result.instances]
    table = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1.0, 1.6)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#888888")
        cell.set_facecolor("#dfe3ee" if r == 0 else "white")
        if r > 0 and c == 0:
            label = result.instances[r - 1].id
            if label in VERTEBRAE:
                cell.set_facecolor(tuple(x / 255 for x in VERTEBRAE[label].color_255))
    view_bar(ax, "#cccccc", "", "Table: vertebrae")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--out", type=Path, default=REPO / "Resources" / "Screenshots")
    args = parser.parse_args(argv)

    from SpineSegLib.classical import segment_spine
    from SpineSegLib.iis.infer.run import segment_vertebrae
    from SpineSegLib.iis.model.catalog import resolve_model

    ct = read_image(args.data / "ct" / "lidc-idri-0001" / "image.nii.gz")
    print(classical_figure(ct, segment_spine(ct), args.out / "SpineSeg-classical.png"))
    mr = read_image(args.data / "mr" / "vertebral-bodies-myosegmentum" / "44_img.nii.gz")
    iis = segment_vertebrae(mr, resolve_model("mr-vertebral-bodies"), device="cpu")
    print(iis_figure(mr, iis, args.out / "SpineSegIIS-vertebrae.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
