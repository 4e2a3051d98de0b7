"""Draw the 128x128 extension and module icons (run from the repo root; matplotlib only).

    python scripts/make_icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSeg"))
from SpineSegLib.core.labels import VERTEBRAE  # noqa: E402


def draw(path: Path, ids, memory_upto: int | None = None, box: bool = False, pencil: bool = False) -> None:
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 128)
    ax.set_ylim(0, 128)
    ax.axis("off")
    n = len(ids)
    for i, label in enumerate(ids):
        y = 10 + i * (108 / n)
        x = 64 + 14 * ((i - (n - 1) / 2) / n) ** 2 * 4 - 7  # gentle lordotic curve
        colour = VERTEBRAE[label].color
        if memory_upto is not None and i < memory_upto:
            colour = (0.55, 0.55, 0.6)
        h = 108 / n - 3
        body = FancyBboxPatch((x - 26, y), 40, h, boxstyle="round,pad=0,rounding_size=5",
                              fc=colour, ec=(0.15, 0.15, 0.2), lw=1.3)
        ax.add_patch(body)
        process = plt.Polygon([(x + 16, y + h * 0.75), (x + 40, y + h * 0.15), (x + 42, y - 2), (x + 16, y + h * 0.2)],
                              closed=True, fc=colour, ec=(0.15, 0.15, 0.2), lw=1.0)
        ax.add_patch(process)
    if box:
        i = memory_upto or 0
        y = 10 + i * (108 / n)
        ax.add_patch(FancyBboxPatch((22, y - 12), 84, 108 / n + 18, boxstyle="round,pad=0,rounding_size=2",
                                    fc="none", ec=(1.0, 0.2, 0.2), lw=2.2))
    if pencil:      # the annotation panel: a pencil correcting the spine
        draw_pencil(ax)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, transparent=True)
    plt.close(fig)


def draw_pencil(ax) -> None:
    """A pencil from the lower right towards the middle of the spine (the SpineSegAnnotate icon)."""
    tip, end = (70.0, 58.0), (118.0, 10.0)
    ax.plot([tip[0] + 7, end[0]], [tip[1] - 7, end[1]], color=(0.95, 0.75, 0.2), lw=9, solid_capstyle="butt")
    ax.plot([end[0] - 5, end[0]], [end[1] + 5, end[1]], color=(0.9, 0.45, 0.5), lw=9, solid_capstyle="butt")
    ax.add_patch(plt.Polygon([tip, (tip[0] + 3.5, tip[1] - 10.5), (tip[0] + 10.5, tip[1] - 3.5)], closed=True,
                             fc=(0.95, 0.85, 0.65), ec=(0.15, 0.15, 0.2), lw=1.0))
    ax.add_patch(plt.Polygon([tip, (tip[0] + 1.2, tip[1] - 3.6), (tip[0] + 3.6, tip[1] - 1.2)], closed=True,
                             fc=(0.15, 0.15, 0.2)))


def main():
    lumbar_thoracic = [24, 23, 22, 21, 20, 19]
    draw(REPO / "SpineSeg.png", lumbar_thoracic)
    draw(REPO / "SpineSeg" / "Resources" / "Icons" / "SpineSeg.png", lumbar_thoracic)
    draw(REPO / "SpineSegIIS" / "Resources" / "Icons" / "SpineSegIIS.png", lumbar_thoracic, memory_upto=2, box=True)
    draw(REPO / "SpineSegAnnotate" / "Resources" / "Icons" / "SpineSegAnnotate.png", lumbar_thoracic, pencil=True)


if __name__ == "__main__":
    main()
