"""Per-vertebra measurements from an instance label map (and the image): volume, mean intensity and the
anterior / middle / posterior height of the vertebral body, measured along the spine's local axis.

Method (all in millimetres, in physical LPS space, so any voxel size and orientation works):

1. **Centroids** of every vertebra of the label map; vertebrae are ordered along the spine by the
   label table (C1 ... L5, S1; T13/L6 in their place).
2. **Local spine axis** ``s`` of a vertebra: the direction from the centroid of the vertebra below it to
   the one above it (its own centroid replaces a missing neighbour; with no neighbour at all, the
   patient's superior axis), pointing superior. **Anterior** ``a``: the patient's anterior direction
   (LPS -y) made perpendicular to ``s``; **lateral** ``l = s x a``.
3. **Vertebral body**: in the mid-sagittal band (``|l - l0| <= band_mm`` around the vertebra's
   centroid) the mask's profile along ``a`` is scanned from its most anterior point backwards; the body
   ends at the first gap of more than ``gap_mm`` -- the spinal canal, which separates the body from the
   posterior arch. A mask of the body alone (as in MR vertebral-body labels) has no gap: all of it is
   the body. The body's depth ``d`` is its extent along ``a``.
4. **Heights**: the body is divided into three equal parts along ``a``; in each third, lines parallel
   to ``s`` are cast every ``line_step_mm`` along ``a`` and at ``l0 - band_mm/2, l0, l0 + band_mm/2``;
   the mask is sampled along each line (linear interpolation, inside where >= 0.5, 0.25 mm steps) and
   the line's height is the length of its longest inside run (endplate to endplate). The **anterior,
   middle and posterior heights** are the medians of the line heights of the anterior, middle and
   posterior third. The **height continuity** is the median, over the lines, of the longest run divided by
   the extent from the line's first to its last inside sample: 1 for a solid body, lower where the mask has
   gaps along the height (a body segmented as pieces of cortex), whose heights are then too short.
   (The semi-quantitative method of Genant et al. reads the same three heights from a
   lateral radiograph; here they come from the 3-D mask, along the local axis rather than the image's
   superior axis, so a tilted spine does not shorten them.)

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.evaluation.measurements import measure_vertebrae
    rows = measure_vertebrae(read_image("vertebrae.nii.gz"), read_image("ct.nii.gz"))
    for m in rows:
        print(m.name, round(m.volume_ml, 1), m.anterior_height_mm, m.middle_height_mm, m.posterior_height_mm)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE, name_of

ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])
SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])


@dataclass
class VertebraMeasurement:
    label: int
    name: str
    voxels: int
    volume_ml: float
    mean_intensity: float            # NaN without an image
    centroid_lps: tuple
    axis_lps: tuple                  # the local spine axis used (unit, pointing superior)
    body_depth_mm: float             # extent of the vertebral body along the anterior axis
    anterior_height_mm: float        # NaN when the body could not be measured
    middle_height_mm: float
    posterior_height_mm: float
    height_continuity: float = math.nan  # median over the height lines of longest inside run / first-to-last
                                         # extent: < 1 where the mask has gaps along the body's height

    def row(self) -> dict:
        d = asdict(self)
        d["centroid_lps"] = [round(v, 2) for v in self.centroid_lps]
        d["axis_lps"] = [round(v, 4) for v in self.axis_lps]
        return d


def _order(label: int) -> float:
    v = VERTEBRAE.get(int(label))
    return v.order if v is not None else 1000.0 + int(label)


def spine_axes(centroids: dict) -> dict:
    """``{label: unit axis (LPS, pointing superior)}`` from the centroids of the neighbours (step 2)."""
    labels = sorted(centroids, key=_order)          # top (C1) to bottom (S1)
    axes = {}
    for n, label in enumerate(labels):
        above = np.asarray(centroids[labels[n - 1]] if n > 0 else centroids[label], float)
        below = np.asarray(centroids[labels[n + 1]] if n + 1 < len(labels) else centroids[label], float)
        axis = above - below
        norm = np.linalg.norm(axis)
        if norm < 1e-6:
            axes[label] = SUPERIOR_LPS.copy()
            continue
        axis /= norm
        if axis @ SUPERIOR_LPS < 0:     # ids out of the table could come in any order
            axis = -axis
        axes[label] = axis
    return axes


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(axis, float) / np.linalg.norm(axis)
    a = ANTERIOR_LPS - (ANTERIOR_LPS @ s) * s
    if np.linalg.norm(a) < 1e-3:       # a spine running anterior-posterior: no sagittal plane to speak of
        a = np.array([1.0, 0.0, 0.0]) - s[0] * s
    a /= np.linalg.norm(a)
    return s, a, np.cross(s, a)


def _longest_run(inside: np.ndarray) -> np.ndarray:
    """Length (in samples) of the longest run of True along the last axis."""
    n = inside.shape[-1]
    padded = np.concatenate([np.zeros(inside.shape[:-1] + (1,), bool), inside,
                             np.zeros(inside.shape[:-1] + (1,), bool)], axis=-1)
    change = np.diff(padded.astype(np.int8), axis=-1)
    best = np.zeros(inside.shape[:-1], dtype=int)
    for idx in np.ndindex(inside.shape[:-1]):
        starts = np.flatnonzero(change[idx] == 1)
        ends = np.flatnonzero(change[idx] == -1)
        if starts.size:
            best[idx] = int(np.max(ends - starts))
    return best


def _body_range(u_a: np.ndarray, u_l: np.ndarray, band: float, bin_mm: float, gap_mm: float):
    """``(back, front, l0)`` of the vertebral body along ``a`` (step 3), None when the band is empty."""
    in_band = np.abs(u_l) <= band
    if not in_band.any():
        return None
    a_band = u_a[in_band]
    front = float(a_band.max())
    occupied = np.zeros(int(np.ceil((front - a_band.min()) / bin_mm)) + 1, bool)
    occupied[((front - a_band) / bin_mm).astype(int)] = True
    empty_run, depth_bins = 0, len(occupied)
    for n, hit in enumerate(occupied):
        if hit:
            empty_run = 0
            continue
        empty_run += 1
        if empty_run * bin_mm > gap_mm:
            depth_bins = n - empty_run + 1
            break
    back = front - depth_bins * bin_mm
    body = in_band & (u_a >= back) & (u_a <= front)
    return back, front, float(np.median(u_l[body]))


def _frame_coordinates(kji: np.ndarray, grid: Image, centroid_lps, axis_lps):
    s, a, l = _frame(axis_lps)
    rel = grid.index_to_lps(kji[:, ::-1].astype(float)) - np.asarray(centroid_lps, float)
    return (s, a, l), rel @ s, rel @ a, rel @ l


def body_voxels(kji: np.ndarray, grid: Image, centroid_lps, axis_lps, band_mm: float = 4.0,
                gap_mm: float = 2.0) -> Optional[np.ndarray]:
    """Which of a vertebra's voxels belong to its vertebral body (step 3, as :func:`body_heights` finds it).

    ``kji``: the vertebra's voxels, N x 3 indices ``[k, j, i]`` of ``grid``; ``centroid_lps`` / ``axis_lps``:
    those of its :class:`VertebraMeasurement`. Returns a bool array (N,): the voxels between the back and the
    front of the body along the anterior axis (at every lateral position); None when the mid-sagittal band
    holds no voxel.
    """
    _, _, u_a, u_l = _frame_coordinates(np.asarray(kji), grid, centroid_lps, axis_lps)
    found = _body_range(u_a, u_l, max(band_mm, float(min(grid.spacing))), max(1.0, 0.5 * float(max(grid.spacing))),
                        gap_mm)
    if found is None:
        return None
    return (u_a >= found[0]) & (u_a <= found[1])


def body_heights(mask: np.ndarray, grid: Image, centroid_lps, axis_lps, band_mm: float = 4.0,
                 gap_mm: float = 2.0, line_step_mm: float = 1.0, sample_mm: float = 0.25) -> dict:
    """Body depth and anterior / middle / posterior heights (mm) of one vertebra (steps 3-4).

    ``mask`` is a bool crop ``[k, j, i]`` whose first voxel lies at ``grid``'s origin (``grid`` carries
    the crop's geometry). Lines are cast every ``line_step_mm`` across the body found in step 3; the
    height profile ``h(a)`` (median over the three lateral positions) is trimmed to where it reaches
    half its maximum -- the rounded or tilted rims in front of and behind the body proper -- and that
    extent (the reported depth) is split into thirds; each height is the median of ``h`` in its third.
    """
    nan = {"body_depth_mm": math.nan, "anterior_height_mm": math.nan, "middle_height_mm": math.nan,
           "posterior_height_mm": math.nan, "height_continuity": math.nan}
    kji = np.argwhere(mask)
    if len(kji) < 8:
        return nan
    (s, a, l), u_s, u_a, u_l = _frame_coordinates(kji, grid, centroid_lps, axis_lps)
    band = max(band_mm, float(min(grid.spacing)))
    found = _body_range(u_a, u_l, band, max(1.0, 0.5 * float(max(grid.spacing))), gap_mm)
    if found is None:
        return nan
    back, front, l0 = found
    body = (u_a >= back) & (u_a <= front)
    reach = float(np.abs(u_s[body]).max()) + 3.0 * float(max(grid.spacing))
    ts = np.arange(-reach, reach + sample_mm / 2, sample_mm)
    positions = np.arange(back + line_step_mm / 2, front, line_step_mm)
    if len(positions) < 3:
        return nan
    lateral = np.array([l0 - band / 2.0, l0, l0 + band / 2.0])
    c = np.asarray(centroid_lps, float)
    pts = (c + positions[:, None, None, None] * a + lateral[None, :, None, None] * l
           + ts[None, None, :, None] * s)
    inverse = np.linalg.inv(grid.direction @ np.diag(grid.spacing))
    ijk = (pts - np.asarray(grid.origin)) @ inverse.T
    sampled = ndimage.map_coordinates(mask.astype(np.float32), [ijk[..., 2], ijk[..., 1], ijk[..., 0]],
                                      order=1, cval=0.0)
    inside = sampled >= 0.5
    runs = _longest_run(inside) * sample_mm
    profile = np.median(runs, axis=1)                                          # h(a), back to front
    proper = np.flatnonzero(profile >= 0.5 * profile.max()) if profile.max() > 0 else []
    if len(proper) < 3:
        return nan
    span = _span(inside) * sample_mm
    lines = runs[proper[0]:proper[-1] + 1].ravel()
    spans = span[proper[0]:proper[-1] + 1].ravel()
    profile = profile[proper[0]:proper[-1] + 1]
    thirds = np.array_split(profile[::-1], 3)                                  # front to back
    return {"body_depth_mm": float(len(profile) * line_step_mm),
            "anterior_height_mm": float(np.median(thirds[0])),
            "middle_height_mm": float(np.median(thirds[1])),
            "posterior_height_mm": float(np.median(thirds[2])),
            "height_continuity": float(np.median(lines[spans > 0] / spans[spans > 0])) if (spans > 0).any()
            else math.nan}


def _span(inside: np.ndarray) -> np.ndarray:
    """Length (in samples) from the first to the last True along the last axis (0 where none)."""
    any_ = inside.any(axis=-1)
    first = np.argmax(inside, axis=-1)
    last = inside.shape[-1] - 1 - np.argmax(inside[..., ::-1], axis=-1)
    return np.where(any_, last - first + 1, 0)


def measure_vertebrae(labels: Image, image: Optional[Image] = None, ids=None, **options) -> list[VertebraMeasurement]:
    """Measurements of every vertebra (or of ``ids``) of an instance label map, top to bottom.

    ``image`` (same grid) gives the mean intensity (HU for CT). ``options`` go to :func:`body_heights`.
    """
    array = np.asarray(labels.array)
    if array.dtype.kind not in "iub":
        if array.dtype.kind != "f" or np.any(array != np.round(array)):
            raise InputError("a label map must hold whole numbers")
        array = array.astype(np.int32)
    if image is not None and image.shape != labels.shape:
        raise InputError(f"the image ({image.shape}) and the label map ({labels.shape}) differ in size")
    present = [int(v) for v in np.unique(array) if v > 0]
    wanted = present if ids is None else [int(i) for i in ids if int(i) in present]
    boxes = ndimage.find_objects(array.astype(np.int32) if array.dtype.kind == "b" else array)
    centroids, crops = {}, {}
    for label in present:
        box = boxes[label - 1]
        own = array[box] == label
        kji = np.array(ndimage.center_of_mass(own)) + [b.start for b in box]
        centroids[label] = labels.index_to_lps(kji[::-1])
        crops[label] = (box, own)
    # pass 1: axes from whole-vertebra centroids find the bodies; pass 2: axes from the body centroids
    # (posterior elements and cut-off parts pull a whole vertebra's centroid away from the column)
    axes = spine_axes(centroids)
    band, gap = options.get("band_mm", 4.0), options.get("gap_mm", 2.0)
    body_centroids = {}
    for label in present:
        box, own = crops[label]
        kji = np.argwhere(own) + [b.start for b in box]
        _, _, u_a, u_l = _frame_coordinates(kji, labels, centroids[label], axes[label])
        found = _body_range(u_a, u_l, max(band, min(labels.spacing)), max(1.0, 0.5 * max(labels.spacing)), gap)
        inside = (u_a >= found[0]) & (u_a <= found[1]) if found is not None else np.ones(len(kji), bool)
        body_centroids[label] = labels.index_to_lps(kji[inside].mean(axis=0)[::-1])
    axes = spine_axes(body_centroids)
    voxel_ml = labels.voxel_volume_mm3 / 1000.0
    out = []
    for label in sorted(wanted, key=_order):
        box, own = crops[label]
        pad = 2
        padded = np.pad(own, pad)
        start = np.array([b.start for b in box]) - pad
        crop_grid = Image(np.zeros((1, 1, 1), np.uint8), labels.spacing, labels.index_to_lps(start[::-1]),
                          labels.direction)
        heights = body_heights(padded, crop_grid, centroids[label], axes[label], **options)
        mean = float(np.asarray(image.array)[box][own].mean()) if image is not None else math.nan
        out.append(VertebraMeasurement(
            label=label, name=name_of(label), voxels=int(own.sum()), volume_ml=float(own.sum() * voxel_ml),
            mean_intensity=mean, centroid_lps=tuple(float(v) for v in centroids[label]),
            axis_lps=tuple(float(v) for v in axes[label]), **heights))
    return out
