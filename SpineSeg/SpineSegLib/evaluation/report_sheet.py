"""The PNG sheet of a per-vertebra report (:mod:`SpineSegLib.evaluation.vertebra_report`): a curved sagittal CT
view through the vertebrae's centroids with the labels in their colours (:mod:`SpineSegLib.core.labels`), each
vertebra named beside it and the trabecular cores outlined, and a table panel (volume, heights, ratios, grade,
trabecular HU, completeness) with the screening caveat. Drawn with matplotlib's Agg backend (no display, no
pyplot state), :data:`SHEET_SIZE_PX` pixels.

Console use::

    from SpineSegLib.evaluation.report_sheet import save_report_sheet
    save_report_sheet(report, ct, labels, "vertebrae.png")     # refuses an existing file unless force=True
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import replaced_atomically
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.evaluation.quicklook import check_png_path, curved_columns

SHEET_SIZE_PX = (1600, 1000)
DPI = 100
WINDOW_HU = (-250, 1000)
GRADE_COLOURS = {1: "#fff2a8", 2: "#ffc37a", 3: "#ff8a80"}
HINT_COLOURS = {"<= 110": "#ffb3ad", "<= 160": "#fff2a8"}
GREY = (0.6, 0.6, 0.6)     # a label outside the table
SHORT_HINTS = {"<= 110": "<= 110 HU: osteoporosis likely", "<= 160": "<= 160 HU: osteoporosis possible",
               "> 160": "> 160 HU: above"}
COLUMNS = ("Vertebra", "Volume\nml", "Ant.\nmm", "Mid.\nmm", "Post.\nmm", "A/P", "M/P", "P/nb.", "Genant\ngrade",
           "Type", "Trab. HU\nmean ± SD", "Screening hint\n(L1 thresholds)", "Com-\nplete")
WIDTHS = (0.075, 0.065, 0.055, 0.055, 0.055, 0.05, 0.05, 0.05, 0.06, 0.08, 0.1, 0.225, 0.05)


def save_report_sheet(report, ct: Image, labels: Image, path, force: bool = False) -> Path:
    """Draw the sheet of ``report`` (a :class:`~SpineSegLib.evaluation.vertebra_report.VertebraReport` of
    ``labels`` and ``ct``, on the same grid) into the .png ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_png_path(path, force, what="the report sheet")
    if ct.shape != labels.shape:
        raise InputError(f"the CT ({ct.shape}) and the label map ({labels.shape}) differ in size; "
                         "give the report's own images (report.ct, report.labels)")
    fig = Figure(figsize=(SHEET_SIZE_PX[0] / DPI, SHEET_SIZE_PX[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    _draw_sagittal(fig.add_axes((0.035, 0.1, 0.3, 0.82)), ct, labels, report)
    _draw_table(fig.add_axes((0.35, 0.1, 0.64, 0.82)), report)
    names = [r.name for r in report.rows]
    fig.text(0.01, 0.975, f"SpineSeg vertebra report: {len(names)} vertebrae ({names[0]}-{names[-1]})  |  "
             f"{report.header.get('label_grid', '')}  |  {report.header.get('created', '')}",
             fontsize=11, weight="bold", va="top")
    l1 = report.header["screening"]["l1"]
    fig.text(0.01, 0.062, "Caveat: " + report.header["screening"]["caveat"] + ".  " + l1[:1].upper() + l1[1:]
             + " (* in the table).", fontsize=10, color="darkred", weight="bold")
    fig.text(0.01, 0.035, "Grade: Genant-style semi-quantitative grade from the largest height loss (A/P wedge, M/P "
             "biconcave, P/neighbours crush): 0 <20 %, 1 20-25 %, 2 25-40 %, 3 >40 %; measured on the 3-D label, a "
             "hint for review. Genant et al., J Bone Miner Res 1993;8:1137-48.", fontsize=8.5)
    fig.text(0.01, 0.012, "Trabecular HU: body core eroded by "
             f"{report.header['trabecular']['erosion_mm']:g} mm (white outline). Thresholds <= 110 HU (specific), "
             "<= 160 HU (sensitive) for L1: Pickhardt et al., Ann Intern Med 2013;158:588-95.  '-': not graded "
             "or not measured (see the CSV/JSON notes).", fontsize=8.5)
    with replaced_atomically(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _colour(label: int) -> tuple:
    return VERTEBRAE[label].color if label in VERTEBRAE else GREY


def _columns_through_centroids(can: Image, rows) -> np.ndarray:
    """For each axial slice of the canonical ``can``, the x index of the curved sagittal cut."""
    nz, _, nx = can.array.shape
    return curved_columns(can.lps_to_index(np.array([r.centroid_lps for r in rows], float).reshape(-1, 3)), nz, nx)


def _draw_sagittal(ax, ct: Image, labels: Image, report) -> None:
    can_ct, can_labels = to_canonical(ct).image, to_canonical(labels).image
    nz, ny, _ = can_ct.array.shape
    _, sy, sz = can_ct.spacing
    column = _columns_through_centroids(can_ct, report.rows)
    hu = can_ct.array[np.arange(nz), :, column]
    lab = can_labels.array[np.arange(nz), :, column]
    extent = (-0.5 * sy, (ny - 0.5) * sy, -0.5 * sz, (nz - 0.5) * sz)      # y (anterior left), z (up), mm
    ax.imshow(hu, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower", extent=extent,
              interpolation="nearest", aspect="equal")
    rgba = np.zeros(lab.shape + (4,), np.float32)
    for r in report.rows:
        colour = _colour(r.label)
        rgba[lab == r.label] = (*colour, 0.45)
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest", aspect="equal")
    cores = getattr(report, "cores", None) or {}
    if cores:
        core = _core_slice(labels, cores, column)
        if core.any():
            ax.contour(core, levels=[0.5], colors="white", linewidths=0.6, origin="lower", extent=extent)
    _name_vertebrae(ax, can_ct, lab, report.rows, column)
    ys, zs = np.nonzero(lab.T)
    if len(ys):
        ax.set_xlim(max(ys.min() * sy - 55.0, extent[0]), min(ys.max() * sy + 20.0, extent[1]))
        ax.set_ylim(max(zs.min() * sz - 15.0, extent[2]), min(zs.max() * sz + 15.0, extent[3]))
    ax.set_xlabel("anterior  <-  y (mm)  ->  posterior", fontsize=9)
    ax.set_ylabel("z (mm, superior up)", fontsize=9)
    ax.set_title("curved sagittal view through the centroids", fontsize=10)
    ax.set_anchor("N")
    ax.tick_params(labelsize=8)


def _core_slice(labels: Image, cores: dict, column: np.ndarray) -> np.ndarray:
    """The trabecular cores (``{label: (box, core)}`` on the label grid) on the curved sagittal cut."""
    full = np.zeros(labels.shape, bool)
    for box, core in cores.values():
        full[box] |= core
    can = to_canonical(labels.with_array(full)).image.array
    return can[np.arange(can.shape[0]), :, column]


def _name_vertebrae(ax, can: Image, lab: np.ndarray, rows, column) -> None:
    """Each vertebra's name (and grade, when >= 1) in front of it, in its colour with a dark edge."""
    from matplotlib import patheffects

    _, sy, sz = can.spacing
    for r in rows:
        in_cut = np.nonzero(lab == r.label)
        if len(in_cut[0]):
            z_mm = float(np.mean(in_cut[0])) * sz
            y_mm = float(in_cut[1].min()) * sy - 4.0
        else:                    # not in the cut (a small or lateral part): in front of its centroid
            _, j, k = can.lps_to_index(np.asarray(r.centroid_lps, float))
            z_mm, y_mm = float(k) * sz, float(j) * sy - 25.0
        text = r.name + (f"  G{r.genant_grade}" if r.genant_grade else "")
        colour = _colour(r.label)
        ax.text(y_mm, z_mm, text, ha="right", va="center", fontsize=9, weight="bold", color=colour,
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])


def _cells(r) -> list[str]:
    def num(v, digits=1):
        return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

    hu = "-" if not math.isfinite(r.trabecular_mean_hu) else \
        f"{r.trabecular_mean_hu:.0f} ± {r.trabecular_sd_hu:.0f}"
    hint = next((short for prefix, short in SHORT_HINTS.items() if r.screening_hint.startswith(prefix)), "-")
    return [r.name + ("*" if r.is_l1 else ""), num(r.volume_ml), num(r.anterior_height_mm),
            num(r.middle_height_mm), num(r.posterior_height_mm), num(r.wedge_ratio, 2), num(r.biconcave_ratio, 2),
            num(r.crush_ratio, 2), "-" if r.genant_grade is None else str(r.genant_grade),
            r.deformity_type if r.genant_grade else "", hu, hint, "yes" if r.complete else "no"]


def _draw_table(ax, report) -> None:
    ax.axis("off")
    rows = report.rows
    n = len(rows) + 1
    row_h = min(0.05, 1.0 / n)
    table = ax.table(cellText=[_cells(r) for r in rows], colLabels=COLUMNS, colWidths=WIDTHS, cellLoc="center",
                     bbox=(0.0, 1.0 - n * row_h, 1.0, n * row_h))
    table.auto_set_font_size(False)
    table.set_fontsize(9.5 if len(rows) <= 20 else 8.5)
    for c in range(len(COLUMNS)):
        table[0, c].set_facecolor("#dde3ea")
        table[0, c].get_text().set_weight("bold")
    for n_row, r in enumerate(rows, start=1):
        colour = _colour(r.label)
        table[n_row, 0].set_facecolor((*colour, 0.55))
        if r.is_l1:
            table[n_row, 0].get_text().set_weight("bold")
        if r.genant_grade:
            for c in (8, 9):
                table[n_row, c].set_facecolor(GRADE_COLOURS[r.genant_grade])
        for prefix, hint_colour in HINT_COLOURS.items():
            if r.screening_hint.startswith(prefix):
                for c in (10, 11):
                    table[n_row, c].set_facecolor(hint_colour)
        if not r.complete:
            table[n_row, 12].get_text().set_color("darkred")
