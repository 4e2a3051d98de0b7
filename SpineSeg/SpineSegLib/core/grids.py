"""How two images' grids relate, and the one place that decides whether one image may be put onto the
other's grid (a prediction onto its reference, a label map onto its scan).

The rule (:func:`relate`, :func:`conform`), in order:

1. **Same grid** (shape, spacing, origin, axes): used as it is.
2. **Same voxels in another axis order** (axes permuted and/or flipped, the same voxel centres): mapped
   exactly, by copying voxels; the note says so.
3. Otherwise the **fields of view** are compared. An image's field of view is the box its voxels cover
   (voxel centres +- half a spacing, oriented along its axes). With ``I`` the volume of the intersection of
   the two boxes (computed exactly, also for oblique boxes):

   * ``iou = I / (volume A + volume B - I)``, the overlap of the two fields of view;
   * ``inside = I / min(volume A, volume B)``, how much of the smaller one lies inside the larger one.

   The image is put onto the other grid when ``iou >= MIN_IOU`` (50 %) or ``inside >= MIN_INSIDE`` (95 %):
   exactly (copying voxels, 0 elsewhere for label maps) when the voxel centres still coincide (the same lattice,
   another extent, e.g. a segmentation saved with its own extent), else resampled (nearest neighbour for
   label maps); the note names the spacings and the overlap. Otherwise :class:`InputError`, naming the overlap.

Why these numbers: a prediction on a resampled, reoriented or thick-slice copy of the same scan covers the
same field of view (``iou`` ~100 %; a same-size copy rotated by 20 degrees 78 %, by 45 degrees 70 %); a
prediction on a crop of the scan, or a reference drawn on a crop, lies inside the other field of view (``inside``
~100 %, whatever ``iou``). Images of different scans in general do neither: LIDC-IDRI-0001's chest CT and MyoSegmenTUM's lumbar
MR (stored without scanner geometry, at the origin) overlap by 7 % (``iou``), and only 80 % of the MR's box lies
inside the CT's. Geometry cannot prove that two images show the same scan (two chest CTs centred on the
scanner's isocentre overlap a lot; files of one dataset stored at the origin share a grid): the rule catches
the gross mismatch, and the note makes every resampling visible.

Console use::

    from SpineSegLib.core.grids import conform, relate
    relate(pred, ref)                    # GridRelation(kind='resample', iou=0.99, inside=1.0)
    pred_on_ref, note = conform(pred, ref, label=True, what="the prediction", onto="the reference")
    if note:
        print("note:", note)            # resampled the prediction onto the reference's grid (...)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.resample import lattice_map, resample_to_grid

#: fields of view that overlap by at least this much (intersection over union) may be resampled
MIN_IOU = 0.5
#: ... and so may two where at least this fraction of the smaller one lies inside the larger one (a crop)
MIN_INSIDE = 0.95


@dataclass(frozen=True)
class GridRelation:
    """How a moving image's grid relates to a reference grid (see the module docstring).

    ``kind``: ``same``, ``axes`` (the same voxels, other axis order), ``lattice`` (voxel centres coincide,
    other extent) or ``resample``; ``iou`` and ``inside`` as defined in the module docstring."""

    kind: str
    iou: float = 1.0
    inside: float = 1.0

    @property
    def accepted(self) -> bool:
        """Whether the rule allows putting the moving image onto the reference grid."""
        return self.kind in ("same", "axes") or self.iou >= MIN_IOU or self.inside >= MIN_INSIDE


def relate(moving: Image, reference: Image) -> GridRelation:
    """Classify how ``moving``'s grid relates to ``reference``'s (geometry only; no voxel is read)."""
    if moving.same_grid(reference):
        return GridRelation("same")
    lattice = lattice_map(moving, reference)
    if lattice is not None and lattice.same_voxels:
        return GridRelation("axes")
    iou, inside = field_of_view_overlap(moving, reference)
    return GridRelation("lattice" if lattice is not None else "resample", iou, inside)


def conform(moving: Image, reference: Image, *, label: bool = True, what: str = "the prediction",
            onto: str = "the reference", default=None) -> tuple[Image, str | None]:
    """``moving`` on ``reference``'s grid and a one-line note saying how it got there (None: it was there).

    Raises :class:`InputError` when the grids differ and the fields of view barely overlap (the rule in the
    module docstring). ``what`` / ``onto`` name the two images in the messages; ``label``: nearest-neighbour
    resampling (label maps) rather than linear; ``default``: the value outside ``moving`` (None: 0 for label
    maps, else ``moving``'s minimum). Only ``reference``'s geometry is used.
    """
    relation = check(moving, reference, what=what, onto=onto)
    if relation.kind == "same":
        return reference.with_array(moving.array), None
    return resample_to_grid(moving, reference, label=label, default=default), \
        note(relation, moving, reference, what, onto, label)


def check(moving: Image, reference: Image, *, what: str = "the prediction",
          onto: str = "the reference") -> GridRelation:
    """:func:`relate`, raising the :class:`InputError` of :func:`conform` when the rule refuses (for a check
    before the work, e.g. before segmenting a scan whose result will be compared with a reference)."""
    relation = relate(moving, reference)
    if not relation.accepted:
        raise InputError(_refusal(relation, moving, reference, what, onto))
    return relation


# -- messages --------------------------------------------------------------------------------------------
def describe_grid(image: Image) -> str:
    """``"224x224x77 voxels of 1x1x3 mm, origin (..), axes LPS"`` (for messages)."""
    size = "x".join(str(s) for s in image.size)
    origin = ", ".join(f"{o:.2f}" for o in image.origin)
    return f"{size} voxels of {_spacing(image)} mm, origin ({origin}), axes {image.orientation}"


def _percent(fraction: float) -> str:
    """``0.038`` -> ``"3 %"``: rounded down, so that an overlap just below a threshold never reads as the
    threshold (``"< 1 %"`` for a small non-zero fraction)."""
    if fraction <= 0:
        return "0 %"
    return "< 1 %" if fraction < 0.01 else f"{int(100 * fraction + 1e-9)} %"


def note(relation: GridRelation, moving: Image, reference: Image, what: str, onto: str, label: bool = True) -> str:
    """The one-line note for a mapping the rule accepted (:func:`conform`)."""
    if relation.kind == "axes":
        return (f"mapped {what} exactly onto {onto}'s grid (the same voxels in another axis order: "
                f"{moving.orientation} -> {reference.orientation})")
    overlap = f"fields of view overlap {_percent(relation.iou)}"
    if relation.iou < MIN_IOU:      # accepted as a crop
        small, large = (what, onto) if _box_volume(moving) <= _box_volume(reference) else (onto, what)
        overlap += f": {small}'s lies inside {large}'s"
    if relation.kind == "lattice":
        return f"mapped {what} exactly onto {onto}'s grid (the same voxel lattice, another extent; {overlap})"
    axes = "" if moving.orientation == reference.orientation else \
        f", axes {moving.orientation} -> {reference.orientation}"
    method = "nearest neighbour" if label else "linear interpolation"
    return (f"resampled {what} onto {onto}'s grid ({method}; spacing {_spacing(moving)} -> {_spacing(reference)} mm"
            f"{axes}; {overlap})")


def _refusal(relation: GridRelation, moving: Image, reference: Image, what: str, onto: str) -> str:
    """The one-line refusal for grids the rule does not map (:func:`conform`)."""
    if relation.iou <= 0:
        how = "do not overlap in space at all"
    else:
        how = (f"their fields of view overlap by only {_percent(relation.iou)} (resampling needs "
               f"{_percent(MIN_IOU)}, or one lying inside the other: {_percent(relation.inside)} of the smaller "
               "lies inside the larger)")
    return (f"{what} and {onto} do not share a grid and {how}: are they the same scan? "
            f"({what}: {describe_grid(moving)}; {onto}: {describe_grid(reference)})")


def _spacing(image: Image) -> str:
    return "x".join(f"{s:.3g}" for s in image.spacing)


# -- fields of view --------------------------------------------------------------------------------------
def field_of_view_overlap(a: Image, b: Image) -> tuple[float, float]:
    """``(iou, inside)`` of the two images' fields of view (module docstring), exact for any orientation."""
    volume_a, volume_b = _box_volume(a), _box_volume(b)
    shared = _intersection_volume(a, b)
    return float(shared / (volume_a + volume_b - shared)), float(shared / min(volume_a, volume_b))


def _box_volume(image: Image) -> float:
    return float(np.prod(image.size) * abs(np.linalg.det(image.direction @ np.diag(image.spacing))))


def _intersection_volume(a: Image, b: Image) -> float:
    """Volume (mm^3) shared by the two fields of view: the boxes written as 12 half-spaces in ``a``'s
    continuous index space, the vertices of their intersection found plane triple by plane triple, and the
    volume of that convex polytope summed face by face. Axis-parallel boxes take a shortcut."""
    to_a = np.linalg.inv(a.direction @ np.diag(a.spacing))
    m = to_a @ b.direction @ np.diag(b.spacing)            # a-index = m @ b-index + c
    c = a.lps_to_index(b.origin)
    mm3_per_index = abs(np.linalg.det(a.direction @ np.diag(a.spacing)))
    lo_a, hi_a = np.full(3, -0.5), np.asarray(a.size) - 0.5
    scale = np.abs(m).max()
    if (np.count_nonzero(np.abs(m) > 1e-9 * scale, axis=0) == 1).all():   # faces parallel: intervals
        corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in b.size]))) @ m.T + c
        lo, hi = np.maximum(lo_a, corners.min(axis=0)), np.minimum(hi_a, corners.max(axis=0))
        return float(np.prod(np.clip(hi - lo, 0, None)) * mm3_per_index)
    # half-spaces g @ x <= h: a's box, then b's (b-index = inv(m) @ (x - c))
    inv = np.linalg.inv(m)
    g = np.vstack([np.eye(3), -np.eye(3), inv, -inv])
    h = np.concatenate([hi_a, -lo_a, np.asarray(b.size) - 0.5 + inv @ c, 0.5 - inv @ c])
    return _polytope_volume(g, h) * mm3_per_index


def _polytope_volume(g: np.ndarray, h: np.ndarray) -> float:
    """Volume of the bounded convex polytope ``{x : g @ x <= h}`` (0 when it is empty or flat)."""
    norms = np.linalg.norm(g, axis=1)
    planes = np.unique(np.round(np.column_stack([g / norms[:, None], h / norms]), 9), axis=0)
    g, h = planes[:, :3], planes[:, 3]        # coinciding faces of the two boxes counted once
    tol = 1e-9 * max(1.0, float(np.abs(h).max()))
    vertices = []
    for rows in itertools.combinations(range(len(g)), 3):
        planes = g[list(rows)]
        if abs(np.linalg.det(planes)) < 1e-12:
            continue
        x = np.linalg.solve(planes, h[list(rows)])
        if (g @ x <= h + tol * 10).all():
            vertices.append(x)
    if len(vertices) < 4:
        return 0.0
    vertices = np.unique(np.round(np.array(vertices), 9), axis=0)
    centre = vertices.mean(axis=0)
    volume = 0.0
    for normal, offset in zip(g, h):
        face = vertices[np.abs(vertices @ normal - offset) <= tol * 10]
        if len(face) < 3:
            continue
        # the face polygon's area (vertices sorted by angle around its centroid), times the height of the
        # pyramid from the polytope's centre
        u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(normal, u)
        rel = face - face.mean(axis=0)
        pts = np.stack([rel @ u, rel @ v], axis=1)
        pts = pts[np.argsort(np.arctan2(pts[:, 1], pts[:, 0]))]
        area = 0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], -1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], -1)))
        volume += area * (offset - centre @ normal) / 3.0
    return float(max(volume, 0.0))
