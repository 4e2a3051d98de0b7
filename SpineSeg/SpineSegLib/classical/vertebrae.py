"""Model-free vertebra instances with anatomical names: the spine mask of Revy et al. cut at the discs.

No training data: the classical spine mask (``classical.pipeline.segment_spine``), then

1. the axis through the vertebral bodies (``classical.spine_axis``);
2. the disc levels along it: an endplate-pair score and a dynamic-programming fit with a smooth
   vertebral-height prior (``classical.discs``);
3. the mask cut at the disc surfaces, posterior elements with their own body (``classical.separation``);
4. ribs beside each vertebra (``classical.ribs``) and the names from them by maximum likelihood
   (``classical.naming`` over ``core.label_sequence``); uncertain names are said to be uncertain;
5. completeness (a vertebra is complete when a disc level bounds it above and below and the field of
   view does not cut it) and the label map back on the input's grid, in VerSe ids.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.classical.vertebrae import label_vertebrae
    result = label_vertebrae(read_image("chest.nii.gz"))
    write_image(result.labels, "vertebrae.nii.gz")
    for v in result.vertebrae:
        print(v.name, v.complete, "; ".join(v.evidence))
    print(result.naming_note)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import NoSpineFoundError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.core.progress import Progress
from SpineSegLib.classical.discs import DiscParams, find_discs
from SpineSegLib.classical.instances import VertebraeResult, VertebraInstance
from SpineSegLib.classical.naming import name_segments
from SpineSegLib.classical.params import ClassicalParams
from SpineSegLib.classical.pipeline import segment_spine
from SpineSegLib.classical.ribs import lateral_bone
from SpineSegLib.classical.separation import POSTERIOR_SLOPE, reattach_fragments, split_mask
from SpineSegLib.classical.spine_axis import SpineAxis, body_axis


#: recorded with dataset predictions (``annotation.predict``): raise it when the results of the method change,
#: so that cases predicted by an older version count as predicted by another method
METHOD_VERSION = 1


@dataclass
class VertebraeParams:
    discs: DiscParams = field(default_factory=DiscParams)
    posterior_slope: float = POSTERIOR_SLOPE
    min_vertebra_ml: float = 1.0       # smaller pieces (a sliver at the edge of the field of view) are dropped
    reattach: bool = True              # pieces cut off their vertebra go back to the one they touch


def label_vertebrae(image: Image, params: ClassicalParams | None = None, progress: Progress | None = None,
                    vertebra_params: VertebraeParams | None = None, spine=None) -> VertebraeResult:
    """Vertebra instances of a CT, named from the anatomy in view (see the module docstring).

    ``spine``: a :class:`ClassicalResult` of ``image`` already computed (else ``segment_spine`` runs).
    Raises what ``segment_spine`` raises (``InputError`` for what is not a CT, ``NoSpineFoundError``),
    and ``NoSpineFoundError`` when the mask holds no vertebra that can be cut out.
    """
    progress = progress or Progress()
    vp = vertebra_params or VertebraeParams()
    if spine is None:
        spine = segment_spine(image, params, progress)
    started = time.perf_counter()
    timings = {}
    can = to_canonical(image)
    ct = can.image
    spacing = ct.spacing_kji
    hu = ct.array.astype(np.float32, copy=False)
    mask = to_canonical(spine.mask).image.array > 0

    progress.step("vertebral-body axis and disc levels", 0.95)
    axis = body_axis(mask, _centres(spine, ct, mask.shape[0]), spacing)
    discs = find_discs(hu, spacing, axis, vp.discs)
    timings["discs"] = time.perf_counter() - started

    progress.step("cutting the vertebrae", 0.97)
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    corner = np.array([b.start for b in box], float) * spacing
    shifted = SpineAxis(axis.arc_mm, axis.points - corner, axis.tangent, axis.lateral, axis.anterior, axis.body_depth_mm)
    segments = split_mask(mask[box], spacing, shifted, _shifted(discs, corner), vp.posterior_slope)
    if vp.reattach:
        segments = reattach_fragments(segments)
    segments, bounded = _keep_vertebrae(segments, len(discs.index), np.prod(spacing) / 1000.0, vp.min_vertebra_ml)
    timings["cut"] = time.perf_counter() - started - timings["discs"]

    progress.step("ribs and names", 0.99)
    kept = sorted(bounded)
    lateral = lateral_bone(hu, mask, spacing, axis, discs, (params or ClassicalParams()).bone_threshold_hu,
                           vp.posterior_slope)
    pieces = ndimage.find_objects(segments)
    complete = [bounded[s] and not _touches_border(pieces[s - 1], box, mask.shape) for s in kept]
    naming = name_segments([lateral.has_rib(s) for s in kept], complete, [lateral.beside_pelvis(s) for s in kept])
    ids = np.zeros(max(kept, default=0) + 1, np.uint8)
    for s, label in zip(kept, naming.ids):
        ids[s] = label
    labels = np.zeros(mask.shape, np.uint8)
    labels[box] = ids[segments]
    timings["names"] = time.perf_counter() - started - timings["discs"] - timings["cut"]

    instances = _instances(labels[box], [b.start for b in box], ct, kept, naming, complete, lateral)
    timings["vertebrae_total"] = time.perf_counter() - started
    return VertebraeResult(
        labels=image.with_array(can.restore(labels)),
        vertebrae=instances[::-1],              # top to bottom
        names_certain=naming.certain,
        naming_note=naming.note,
        discs_lps=_to_lps(ct, discs.centres)[::-1],
        disc_normals_lps=_directions_to_lps(ct, discs.normals)[::-1],
        spine=spine,
        timings={**spine.timings, **timings},
    )


def _centres(spine, ct: Image, nz: int) -> np.ndarray:
    """The spine centerline's (row, column) on each canonical slice (NaN where it has none)."""
    centres = np.full((nz, 2), np.nan)
    for point in spine.centerline_centres_lps:
        i, j, k = ct.lps_to_index(point)
        if 0 <= round(k) < nz:
            centres[int(round(k))] = (j, i)
    return centres


def _keep_vertebrae(segments: np.ndarray, n_discs: int, ml_per_voxel: float, min_ml: float):
    """Drop pieces under ``min_ml``; ``{segment: bounded by a disc above and below}`` of the rest."""
    counts = np.bincount(segments.ravel(), minlength=n_discs + 2)
    small = [s for s in range(1, counts.size) if 0 < counts[s] * ml_per_voxel < min_ml]
    if small:
        segments = np.where(np.isin(segments, small), 0, segments)
    kept = {s: 1 < s <= n_discs for s in range(1, counts.size) if counts[s] * ml_per_voxel >= min_ml}
    if not kept:
        raise NoSpineFoundError("no vertebra found: the spine mask holds no piece of vertebra size between the disc levels")
    return segments, kept


def _shifted(discs, corner: np.ndarray):
    from dataclasses import replace
    return replace(discs, centres=discs.centres - corner)


def _touches_border(piece, box, shape) -> bool:
    """Whether a piece (slices within ``box``) reaches the first or last voxel layer of the volume."""
    return any(box[a].start + piece[a].start == 0 or box[a].start + piece[a].stop == shape[a] for a in range(3))


def _instances(labels: np.ndarray, corner, ct: Image, kept, naming, complete, lateral) -> list[VertebraInstance]:
    out = []
    ids = [int(naming.ids[pos]) for pos in range(len(kept))]
    counts = np.bincount(labels.ravel(), minlength=max(ids, default=0) + 1)
    centres = ndimage.center_of_mass(labels > 0, labels, ids)
    for pos, s in enumerate(kept):
        label = ids[pos]
        kji = np.asarray(centres[pos]) + corner
        centroid = ct.index_to_lps(kji[::-1])
        left, right = lateral.has_rib(s)
        evidence = list(naming.evidence[pos])
        if not complete[pos]:
            evidence.append("cut by the field of view or not bounded by a disc on both sides")
        out.append(VertebraInstance(label, VERTEBRAE[label].name, bool(complete[pos]), tuple(centroid),
                                    int(counts[label]), evidence, bool(left), bool(right)))
    return out


def _to_lps(ct: Image, points_mm: np.ndarray) -> np.ndarray:
    if len(points_mm) == 0:
        return np.zeros((0, 3))
    zyx = np.asarray(points_mm) / ct.spacing_kji
    return ct.index_to_lps(zyx[:, ::-1])


def _directions_to_lps(ct: Image, vectors_mm: np.ndarray) -> np.ndarray:
    if len(vectors_mm) == 0:
        return np.zeros((0, 3))
    return np.asarray(vectors_mm)[:, ::-1] @ ct.direction.T
