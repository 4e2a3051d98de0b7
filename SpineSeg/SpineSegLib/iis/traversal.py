"""Following the spine with the IIS network, one patch at a time (Lessmann et al. 2019, section 3.3).

The traversal works on the model grid (``preprocess.to_model_grid(...).image``: canonical LPS
``[z, y, x]``, z superior) and talks to the network only through a callable::

    predict(image_patch, memory_patch) -> (probabilities, label, completeness)

``image_patch`` is float32 ``[Z, Y, X]`` (``pad_value`` outside the volume), ``memory_patch`` is
float32 ``[C, Z, Y, X]`` with one binary channel per memory (vertebrae; SPIDER: vertebrae, discs);
``probabilities`` is ``[Z, Y, X]`` or ``[K, Z, Y, X]`` in 0-1 (channel 0 the next vertebra, SPIDER:
1 its disc, 2 the spinal canal), ``label`` the regressed anatomical label, ``completeness`` the
probability that the vertebra lies completely in the scan. Tests pass an oracle, real runs a
``inference.TorchPredictor``.

What the paper fixes: half-patch sliding steps until a fragment of at least v_min appears; the
next patch is centred on the fragment's bounding-box centre; converged when the centre moves by
at most delta_max = 2 voxels on every axis; at most 10 moves, then the mean of the last two
positions; the vertebra goes to the memory, and to the output only when classified complete; the
same patch is analysed again for the next vertebra; sliding when none is seen; stop at the end.

What this module chooses where the paper is silent (and why):

* **Search order in 3-D.** Patch centres form a grid with half-patch steps on every axis (the last
  position of an axis touches the volume's edge, so every voxel is seen). Levels along z are
  visited in traversal direction (bottom first for ``up``); inside a level the (y, x) columns are
  ordered by their distance in mm from the *column centre* -- the start point if one is given,
  else the middle of the axial plane -- because the spine runs near the middle of the body, so the
  first hit comes after a few steps instead of a full raster.
* **Start point** (``start_lps`` or ``start_voxel``): the first patch is centred there; if nothing
  is seen there, the search proceeds from the start point's level onward, columns ordered around
  it. Vertebrae beyond the start point against the traversal direction are not searched: give the
  first vertebra in traversal direction (e.g. the lowest centerline point for ``up``).
* **Thresholds** (after the public reference code, expressed in mm^3): a search hit needs
  ``min_fragment_mm3`` (v_min, config) of new prediction and, while no vertebra has been found,
  a regressed label >= 0.75 (the label head says "vertebral bone": 0 = none, 1 = C1). The
  reference asks 1.5 on its own label scale; on ours (C1 = 1) that would make a downward
  traversal unable to start at C1. Once a vertebra is known, the next
  fragment (and a followed fragment) needs ``follow_min_mm3`` (default v_min / 2). Connected
  pieces smaller than ``min_component_mm3`` (default v_min / 2, the reference's 500 voxels at
  1 mm) are dropped from every prediction before anything is measured. A vertebra whose regressed
  label is < 0.75 at acceptance is taken as a false positive: it is discarded and the traversal
  ends (reference behaviour; ``accept_min_label=None`` turns it off). Both label gates are off for
  the SPIDER variant, whose label head is not used.
* **New prediction** means probability >= 0.5, inside the volume, and not yet in the memory.
* **Final mask** of a converged vertebra is the prediction of the evaluation that converged (its
  fragment's centre lies within delta_max of the patch centre, so moving once more would not change
  anything) -- no extra network pass; after 10 moves the patch is evaluated once more at the mean
  of the last two positions and that prediction is final.
* **Sliding after a vertebra** (no next fragment in the re-analysed patch, or a followed fragment
  vanished): levels beyond the last vertebra in traversal direction, each level only the columns
  within ``fallback_columns`` half-patch steps of the last vertebra's column (default 1, i.e. a
  3 x 3 neighbourhood, centre first; ``None`` scans whole levels as the initial search does).
  The spine does not jump sideways by more than half a patch between neighbouring vertebrae,
  and a whole-level raster at the end of every spine would cost up to 25 passes per level.
* **A followed fragment that vanishes** (less than ``follow_min_mm3`` at the new position, e.g. a
  false positive the network drops once it sees it whole) sends the traversal back to sliding
  where the sliding was, or -- after a new vertebra -- onward from that vertebra.
* **Stop**: no search position left (end of the volume), ``max_instances`` (25) vertebrae in the
  memory (complete or not), a rejected false positive, or ``max_steps`` network passes.
* **SPIDER variant** (two memory channels): at acceptance, the largest new piece of the disc
  channel becomes this vertebra's disc (disc memory), and the canal channel of that evaluation
  is added to the canal mask (the canal is stitched from all accepted patches).

Console use::

    from SpineSegLib.iis.traversal import IISTraversal, TraversalOptions
    trav = IISTraversal(grid.image, predict, TraversalOptions.from_config(config),
                        patch_size=config.patch_size, pad_value=config.pad_value,
                        memory_channels=config.memory_channels)
    for step in trav.steps():              # one step per network pass (+ a final "done" step)
        print(step.index, step.phase, step.event, step.box.centre_lps, step.fragment_mm3)
    result = trav.result                   # or: result = IISTraversal(...).run()
    [(i.index, i.label, i.complete) for i in result.instances]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Optional

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..image import Image

PHASES = ("searching", "following", "converged", "done")
_FULL = np.ones((3, 3, 3), dtype=bool)


# -- options ------------------------------------------------------------------------------------
@dataclass
class TraversalOptions:
    """Knobs of the traversal; defaults follow the paper and the public reference code."""

    direction: str = "up"                       # "up": the search starts at the bottom
    min_fragment_mm3: float = 1000.0            # v_min: new prediction a search hit needs
    follow_min_mm3: Optional[float] = None      # next / followed fragment; default v_min / 2
    min_component_mm3: Optional[float] = None   # smaller connected pieces are dropped; default v_min / 2
    probability_threshold: float = 0.5
    completeness_threshold: float = 0.5
    max_shift_voxels: int = 2                   # delta_max (max norm, voxels of the model grid)
    max_moves: int = 10
    max_instances: int = 25
    start_min_label: Optional[float] = 0.75     # regressed label a first hit needs (None: off)
    accept_min_label: Optional[float] = 0.75    # below: false positive, traversal ends (None: off)
    keep_incomplete: bool = False               # incomplete vertebrae also go to the output (flagged)
    start_lps: Optional[tuple] = None           # physical start point, LPS mm
    start_voxel: Optional[tuple] = None         # or a model-grid voxel [z, y, x]
    search_step: Optional[tuple] = None         # [z, y, x] voxels; default half the patch
    fallback_columns: Optional[int] = 1         # see the module docstring; None = whole levels
    max_steps: int = 2000                       # safety net against endless loops

    def __post_init__(self):
        if self.direction not in ("up", "down"):
            raise InputError(f"unknown traversal direction {self.direction!r} (use 'up' or 'down')")

    @property
    def follow_mm3(self) -> float:
        return self.min_fragment_mm3 / 2 if self.follow_min_mm3 is None else float(self.follow_min_mm3)

    @property
    def component_mm3(self) -> float:
        return self.min_fragment_mm3 / 2 if self.min_component_mm3 is None else float(self.min_component_mm3)

    @classmethod
    def from_config(cls, config, **overrides) -> "TraversalOptions":
        """Options for a model's :class:`~SpineSegLib.iis.config.IISConfig` (direction, v_min).

        The SPIDER variant's label head is not used (van der Graaf et al. 2.2.4: SPIDER has no
        anatomical labels), so its traversal does not gate on the regressed label.
        """
        base = dict(direction=config.direction, min_fragment_mm3=config.min_fragment_mm3)
        if config.variant == "spider":
            base.update(start_min_label=None, accept_min_label=None)
        defaults = {f.name: f.default for f in fields(cls)}
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise InputError(f"unknown traversal option(s): {', '.join(sorted(unknown))}")
        # None means "not given" for options that cannot be None, and "off" for those that can
        base.update({k: v for k, v in overrides.items() if v is not None or defaults[k] is None
                     or k in ("start_min_label", "accept_min_label", "fallback_columns")})
        return cls(**base)


# -- the patch box ------------------------------------------------------------------------------
@dataclass
class PatchBox:
    """Where a patch lies: on the model grid (voxels, ``[z, y, x]``) and in the patient (LPS mm).

    ``centre_lps``/``size_mm``/``axes_lps`` describe the box a Slicer ROI shows (size along the
    patch axes i, j, k = x, y, z of the model grid; ``axes_lps`` columns are those axes' unit
    vectors in LPS -- Slicer RAS: negate the first two coordinates). ``start_voxel`` may be
    negative and ``start + size`` may pass the volume's end: those parts are padding.
    """

    centre_voxel: tuple
    start_voxel: tuple
    size_voxels: tuple
    centre_lps: tuple
    size_mm: tuple
    axes_lps: tuple
    origin_lps: tuple        # LPS of the patch's first voxel
    spacing_mm: tuple        # (i, j, k)

    @property
    def slices(self) -> tuple:
        """Model-grid slices ``[z, y, x]`` of the whole patch (may reach outside the volume)."""
        return tuple(slice(s, s + n) for s, n in zip(self.start_voxel, self.size_voxels))

    def clipped(self, shape) -> tuple[tuple, tuple]:
        """``(grid_slices, patch_slices)`` of the part of the patch inside a volume of ``shape``."""
        grid, patch = [], []
        for s, n, size in zip(self.start_voxel, self.size_voxels, shape):
            lo, hi = max(s, 0), min(s + n, size)
            hi = max(hi, lo)
            grid.append(slice(lo, hi))
            patch.append(slice(lo - s, hi - s))
        return tuple(grid), tuple(patch)

    def image(self, array: np.ndarray) -> Image:
        """``array`` (patch-shaped, ``[z, y, x]``) as an :class:`Image` with the patch's geometry."""
        return Image(array, self.spacing_mm, self.origin_lps, np.asarray(self.axes_lps, dtype=float).T)

    def to_dict(self) -> dict:
        return {
            "centre_lps": [round(float(v), 3) for v in self.centre_lps],
            "size_mm": [round(float(v), 3) for v in self.size_mm],
            "axes_lps": [[round(float(v), 6) for v in axis] for axis in self.axes_lps],
            "origin_lps": [round(float(v), 3) for v in self.origin_lps],
            "spacing_mm": [round(float(v), 6) for v in self.spacing_mm],
            "centre_voxel_zyx": [int(v) for v in self.centre_voxel],
            "start_voxel_zyx": [int(v) for v in self.start_voxel],
            "size_voxels_zyx": [int(v) for v in self.size_voxels],
        }


def make_box(grid: Image, centre, patch_size) -> PatchBox:
    """The box of a patch of ``patch_size`` ``[z, y, x]`` centred at voxel ``centre`` of ``grid``."""
    centre = tuple(int(c) for c in centre)
    size = tuple(int(p) for p in patch_size)
    start = tuple(c - p // 2 for c, p in zip(centre, size))
    geometric_centre_ijk = [start[2 - a] + (size[2 - a] - 1) / 2.0 for a in range(3)]
    axes = tuple(tuple(float(v) for v in grid.direction[:, a]) for a in range(3))
    return PatchBox(
        centre_voxel=centre,
        start_voxel=start,
        size_voxels=size,
        centre_lps=tuple(float(v) for v in grid.index_to_lps(geometric_centre_ijk)),
        size_mm=tuple(size[2 - a] * grid.spacing[a] for a in range(3)),
        axes_lps=axes,
        origin_lps=tuple(float(v) for v in grid.index_to_lps([start[2], start[1], start[0]])),
        spacing_mm=tuple(grid.spacing),
    )


def extract_patch(array: np.ndarray, box: PatchBox, pad_value) -> np.ndarray:
    """The patch of ``array`` under ``box``; parts outside the volume hold ``pad_value``."""
    out = np.full(box.size_voxels, pad_value, dtype=array.dtype)
    grid, patch = box.clipped(array.shape)
    out[patch] = array[grid]
    return out


# -- what the traversal produces -----------------------------------------------------------------
@dataclass
class TraversedInstance:
    """One vertebra the traversal accepted (memory and, when complete or kept, the output)."""

    index: int                   # 1-based, in traversal order (= its id in ``TraversalResult.memory``)
    centre_voxel: tuple          # patch centre at acceptance, model grid [z, y, x]
    offset: tuple                # model-grid [z, y, x] of mask[0, 0, 0] / probability[0, 0, 0]
    mask: np.ndarray             # bool crop: the voxels this vertebra claimed in the memory
    probability: np.ndarray      # float32 crop: its probabilities (zero away from the mask)
    label: float                 # regressed label at acceptance
    completeness: float          # probability of complete visibility
    complete: bool
    in_output: bool              # complete, or incomplete with keep_incomplete
    moves: int                   # re-centrings before acceptance
    averaged: bool               # accepted at the mean of the last two positions (no convergence)
    evaluations: int             # network passes spent on this vertebra
    volume_mm3: float
    box: PatchBox                # the patch at acceptance
    disc_mask: Optional[np.ndarray] = None          # SPIDER: crop of its disc (same offset rules)
    disc_probability: Optional[np.ndarray] = None
    disc_offset: Optional[tuple] = None

    @property
    def slices(self) -> tuple:
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.mask.shape))

    @property
    def disc_slices(self) -> Optional[tuple]:
        if self.disc_mask is None:
            return None
        return tuple(slice(o, o + n) for o, n in zip(self.disc_offset, self.disc_mask.shape))

    def centroid_voxel(self) -> np.ndarray:
        """Centre of mass of the mask, model grid [z, y, x] (continuous)."""
        return np.array(ndimage.center_of_mass(self.mask)) + np.asarray(self.offset)

    def summary(self) -> dict:
        return {
            "index": self.index, "label": round(float(self.label), 3),
            "completeness": round(float(self.completeness), 4), "complete": bool(self.complete),
            "in_output": bool(self.in_output), "moves": int(self.moves), "averaged": bool(self.averaged),
            "evaluations": int(self.evaluations), "volume_mm3": round(float(self.volume_mm3), 1),
            "patch": self.box.to_dict(),
        }


@dataclass
class TraversalStep:
    """One network pass of the traversal, after the traversal decided what it means.

    ``phase``: ``searching`` (nothing to follow: a search position, or a lost trail),
    ``following`` (a fragment is seen and the patch moves on to its centre), ``converged`` (this
    pass's fragment is accepted as a vertebra -- see ``accepted``), ``done`` (the final step, no
    pass; ``box`` is None). ``event`` says more: search-miss, search-hit, start-hit, start-miss,
    next-hit, next-miss, move, lost, converged, averaged, rejected, and for ``done`` the reason.
    ``fragment`` is the new prediction in the patch (bool ``[Z, Y, X]``) after dropping small
    pieces; ``memory`` is the LIVE memory of the traversal (model grid, int16 instance ids);
    ``found_by`` says how the fragment being followed was found (start, search, next).
    """

    index: int
    phase: str
    event: str
    box: Optional[PatchBox]
    fragment: Optional[np.ndarray]
    fragment_mm3: float
    label: Optional[float]
    completeness: Optional[float]
    instance_count: int          # vertebrae in the memory so far
    output_count: int            # of which in the output
    moves: int                   # moves spent on the vertebra being followed
    memory: np.ndarray
    progress: float              # 0-1, how far along the volume in traversal direction
    accepted: Optional[TraversedInstance] = None
    message: str = ""
    found_by: Optional[str] = None   # how the fragment being followed was found: start, search or next

    def fragment_on_grid(self) -> tuple[tuple, np.ndarray]:
        """``(grid_slices, mask)``: the fragment's part inside the volume, for pasting on the grid."""
        grid, patch = self.box.clipped(self.memory.shape)
        return grid, self.fragment[patch]

    def fragment_image(self) -> Image:
        """The fragment as a uint8 image on the patch's own grid (LPS geometry)."""
        return self.box.image(self.fragment.astype(np.uint8))

    def to_dict(self) -> dict:
        return {
            "index": self.index, "phase": self.phase, "event": self.event,
            "box": None if self.box is None else self.box.to_dict(),
            "fragment_mm3": round(float(self.fragment_mm3), 1),
            "label": None if self.label is None else round(float(self.label), 3),
            "completeness": None if self.completeness is None else round(float(self.completeness), 4),
            "instance_count": self.instance_count, "output_count": self.output_count,
            "moves": self.moves, "progress": round(float(self.progress), 4),
            "accepted": None if self.accepted is None else self.accepted.summary(),
            "message": self.message, "found_by": self.found_by,
        }


@dataclass
class TraversalResult:
    instances: list                      # TraversedInstance, in traversal order
    memory: np.ndarray                   # model grid, int16 instance index (0 = none)
    disc_memory: Optional[np.ndarray]    # SPIDER: model grid, int16 index of the vertebra owning the disc
    canal: Optional[np.ndarray]          # SPIDER: model grid, bool
    steps: int                           # network passes
    stop_reason: str
    log: list                            # TraversalStep.to_dict() of every step
    grid: Image

    @property
    def output_instances(self) -> list:
        return [i for i in self.instances if i.in_output]


# -- internal: one evaluation -------------------------------------------------------------------
@dataclass
class _Evaluation:
    box: PatchBox
    probability: np.ndarray      # [K, Z, Y, X] float32
    label: float
    completeness: float
    fragment: np.ndarray         # bool [Z, Y, X]
    volume_mm3: float


@dataclass
class _Follow:
    position: tuple
    evaluation: _Evaluation
    moves: int = 0
    previous: Optional[tuple] = None
    evaluations: int = 1
    averaged: bool = False
    found_by: str = "search"


def axis_positions(n: int, p: int, step: int) -> list[int]:
    """Patch centres along one axis of length ``n`` with patch ``p`` and ``step``: the first patch
    starts at 0, the last ends at ``n`` (a volume shorter than the patch gets one, centred)."""
    if n <= p:
        return [n // 2]  # one patch, padded on both sides
    last = n - p + p // 2
    out = list(range(p // 2, last + 1, max(1, step)))
    if out[-1] != last:
        out.append(last)
    return out


def _round_half_up(values) -> tuple:
    return tuple(int(math.floor(float(v) + 0.5)) for v in values)


class IISTraversal:
    """The traversal as a step generator (see the module docstring).

    ``image``: the normalised model-grid image (``ModelGrid.image``); ``patch_size`` and
    ``pad_value`` come from the model's config; ``memory_channels`` is 2 for the SPIDER variant.
    """

    def __init__(self, image: Image, predict: Callable, options: Optional[TraversalOptions] = None, *,
                 patch_size=(128, 128, 128), pad_value: float = -1.0, memory_channels: int = 1):
        self.image = image
        self.array = np.asarray(image.array, dtype=np.float32)
        self.predict = predict
        self.options = options or TraversalOptions()
        self.patch_size = tuple(int(p) for p in patch_size)
        self.pad_value = float(pad_value)
        self.memory_channels = int(memory_channels)
        self.voxel_mm3 = float(np.prod(image.spacing))
        self.shape = self.array.shape
        self.memory = np.zeros(self.shape, dtype=np.int16)
        self.disc_memory = np.zeros(self.shape, dtype=np.int16) if self.memory_channels > 1 else None
        self.canal = np.zeros(self.shape, dtype=bool) if self.memory_channels > 1 else None
        self.instances: list[TraversedInstance] = []
        self.result: Optional[TraversalResult] = None
        self._log: list[dict] = []
        self._steps = 0
        self._progress = 0.0
        o = self.options
        step = o.search_step or tuple(max(1, p // 2) for p in self.patch_size)
        self.step = tuple(int(s) for s in step)
        self._up = o.direction == "up"
        self._start = self._start_voxel()

    # -- geometry helpers ---------------------------------------------------------------------
    def _start_voxel(self) -> Optional[tuple]:
        o = self.options
        if o.start_voxel is not None:
            zyx = _round_half_up(o.start_voxel)
        elif o.start_lps is not None:
            ijk = self.image.lps_to_index(np.asarray(o.start_lps, dtype=float))
            zyx = _round_half_up(ijk[::-1])
        else:
            return None
        if not all(0 <= c < n for c, n in zip(zyx, self.shape)):
            where = f"LPS {tuple(round(float(v), 1) for v in o.start_lps)} mm" if o.start_lps is not None else f"voxel {zyx}"
            raise InputError(f"the start point ({where}) lies outside the image")
        return zyx

    def _levels(self) -> list[int]:
        zs = axis_positions(self.shape[0], self.patch_size[0], self.step[0])
        return zs if self._up else zs[::-1]

    def _columns(self, centre_yx, radius_steps: Optional[int]) -> list[tuple]:
        """(y, x) patch columns ordered by distance (mm) from ``centre_yx``."""
        if radius_steps is None:
            ys = axis_positions(self.shape[1], self.patch_size[1], self.step[1])
            xs = axis_positions(self.shape[2], self.patch_size[2], self.step[2])
            cols = [(y, x) for y in ys for x in xs]
        else:
            # neighbouring columns half a patch away; one that clamping at the volume's edge pulls
            # back to less than half a step from the centre shows nothing new and is left out
            ys, xs = [], []
            for values, axis, centre in ((ys, 1, centre_yx[0]), (xs, 2, centre_yx[1])):
                for a in range(-radius_steps, radius_steps + 1):
                    c = self._clamp_centre(int(centre) + a * self.step[axis], axis)
                    if (a == 0 or abs(c - centre) >= self.step[axis] / 2) and c not in values:
                        values.append(c)
            cols = [(y, x) for y in ys for x in xs]
        sy, sx = self.image.spacing[1], self.image.spacing[0]
        return sorted(cols, key=lambda c: (math.hypot((c[0] - centre_yx[0]) * sy, (c[1] - centre_yx[1]) * sx), c))

    def _clamp_centre(self, c: int, axis: int) -> int:
        n, p = self.shape[axis], self.patch_size[axis]
        if n <= p:
            return n // 2
        return int(min(max(c, p // 2), n - p + p // 2))

    def _initial_positions(self) -> Iterator[tuple]:
        if self._start is not None:
            centre = self._start[1:]
            levels = [z for z in self._levels() if (z >= self._start[0] - self.step[0] // 2 if self._up
                                                    else z <= self._start[0] + self.step[0] // 2)]
        else:
            centre = (self.shape[1] / 2.0, self.shape[2] / 2.0)
            levels = self._levels()
        columns = self._columns(centre, None)
        for z in levels:
            for y, x in columns:
                yield (z, y, x)

    def _fallback_positions(self, after: tuple) -> Iterator[tuple]:
        """Sliding onward from the vertebra centred at ``after`` (see the module docstring)."""
        zc = after[0]
        n, p, s = self.shape[0], self.patch_size[0], self.step[0]
        first, last = (p // 2, n - p + p // 2) if n > p else (n // 2, n // 2)
        levels = []
        k = 1
        while True:
            z = zc + k * s if self._up else zc - k * s
            if (self._up and z >= last) or (not self._up and z <= first):
                end = last if self._up else first
                if (self._up and end > zc) or (not self._up and end < zc):
                    levels.append(end)
                break
            levels.append(z)
            k += 1
        columns = self._columns(after[1:], self.options.fallback_columns)
        for z in levels:
            for y, x in columns:
                yield (z, y, x)

    # -- one network pass ---------------------------------------------------------------------
    def _evaluate(self, position) -> _Evaluation:
        box = make_box(self.image, position, self.patch_size)
        image_patch = extract_patch(self.array, box, self.pad_value)
        memories = [self.memory] + ([self.disc_memory] if self.disc_memory is not None else [])
        memory_patch = np.stack([extract_patch(m, box, 0) > 0 for m in memories]).astype(np.float32)
        prob, label, completeness = self.predict(image_patch, memory_patch)
        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim == 3:
            prob = prob[None]
        if prob.shape[1:] != self.patch_size:
            raise ValueError(f"the network returned maps of shape {prob.shape[1:]} for a patch of {self.patch_size}")
        self._steps += 1
        valid = np.zeros(self.patch_size, dtype=bool)
        valid[box.clipped(self.shape)[1]] = True
        fragment = (prob[0] >= self.options.probability_threshold) & (memory_patch[0] == 0) & valid
        fragment = self._drop_small_pieces(fragment)
        return _Evaluation(box, prob, float(label), float(completeness), fragment,
                           float(fragment.sum()) * self.voxel_mm3)

    def _drop_small_pieces(self, mask: np.ndarray, keep_largest: bool = False) -> np.ndarray:
        if not mask.any():
            return mask
        labels, n = ndimage.label(mask, structure=_FULL)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        if keep_largest:
            keep = np.zeros_like(sizes, dtype=bool)
            keep[int(np.argmax(sizes))] = sizes.max() * self.voxel_mm3 >= self.options.component_mm3
        else:
            keep = sizes * self.voxel_mm3 >= self.options.component_mm3
            keep[0] = False
        return keep[labels]

    def _bbox_centre(self, ev: _Evaluation) -> tuple:
        idx = np.nonzero(ev.fragment)
        lo = np.array([i.min() for i in idx]) + np.asarray(ev.box.start_voxel)
        hi = np.array([i.max() for i in idx]) + np.asarray(ev.box.start_voxel)
        return _round_half_up((lo + hi) / 2.0)

    def _advance_progress(self, box: PatchBox) -> float:
        n = self.shape[0]
        if self._up:
            reached = (box.start_voxel[0] + box.size_voxels[0]) / n
        else:
            reached = (n - box.start_voxel[0]) / n
        self._progress = max(self._progress, min(1.0, max(0.0, reached)))
        return self._progress

    # -- accepting a vertebra -----------------------------------------------------------------
    def _accept(self, follow: _Follow) -> TraversedInstance:
        ev = follow.evaluation
        o = self.options
        grid_sl, patch_sl = ev.box.clipped(self.shape)
        index = len(self.instances) + 1
        mask_full = ev.fragment[patch_sl]
        crop = _bbox(mask_full, margin=2)
        mask = mask_full[crop]
        near = ndimage.binary_dilation(mask, structure=_FULL)
        prob = np.where(near, ev.probability[0][patch_sl][crop], 0.0).astype(np.float32)
        offset = tuple(g.start + c.start for g, c in zip(grid_sl, crop))
        region = tuple(slice(o_, o_ + n) for o_, n in zip(offset, mask.shape))
        self.memory[region][mask] = index
        complete = ev.completeness >= o.completeness_threshold
        inst = TraversedInstance(
            index=index, centre_voxel=tuple(follow.position), offset=offset, mask=mask, probability=prob,
            label=ev.label, completeness=ev.completeness, complete=bool(complete),
            in_output=bool(complete or o.keep_incomplete), moves=follow.moves, averaged=follow.averaged,
            evaluations=follow.evaluations, volume_mm3=float(mask.sum()) * self.voxel_mm3, box=ev.box,
        )
        if self.disc_memory is not None and ev.probability.shape[0] > 1:
            disc_valid = np.zeros(self.patch_size, dtype=bool)
            disc_valid[patch_sl] = True
            disc_mem = extract_patch(self.disc_memory, ev.box, 0) > 0
            disc = (ev.probability[1] >= o.probability_threshold) & disc_valid & ~disc_mem & ~ev.fragment
            disc = self._drop_small_pieces(disc, keep_largest=True)[patch_sl]
            if disc.any():
                dcrop = _bbox(disc, margin=2)
                dmask = disc[dcrop]
                dnear = ndimage.binary_dilation(dmask, structure=_FULL)
                inst.disc_mask = dmask
                inst.disc_probability = np.where(dnear, ev.probability[1][patch_sl][dcrop], 0.0).astype(np.float32)
                inst.disc_offset = tuple(g.start + c.start for g, c in zip(grid_sl, dcrop))
                self.disc_memory[inst.disc_slices][dmask] = index
            if ev.probability.shape[0] > 2:
                self.canal[grid_sl] |= ev.probability[2][patch_sl] >= o.probability_threshold
        self.instances.append(inst)
        return inst

    # -- the generator --------------------------------------------------------------------------
    def _step(self, phase, event, ev: Optional[_Evaluation], moves=0, accepted=None, message="",
              found_by=None) -> TraversalStep:
        step = TraversalStep(
            index=len(self._log) + 1, phase=phase, event=event,
            box=None if ev is None else ev.box,
            fragment=None if ev is None else ev.fragment,
            fragment_mm3=0.0 if ev is None else ev.volume_mm3,
            label=None if ev is None else ev.label,
            completeness=None if ev is None else ev.completeness,
            instance_count=len(self.instances),
            output_count=sum(1 for i in self.instances if i.in_output),
            moves=moves, memory=self.memory,
            progress=1.0 if phase == "done" else (self._advance_progress(ev.box) if ev is not None else self._progress),
            accepted=accepted, message=message, found_by=found_by,
        )
        self._log.append(step.to_dict())
        return step

    def steps(self) -> Iterator[TraversalStep]:
        """Run the traversal, yielding a :class:`TraversalStep` after every network pass."""
        o = self.options
        search = self._initial_positions()
        search_after = 0     # how many vertebrae were known when ``search`` was made
        # an action is (kind, position, follow context): kinds start/search/next look for a new
        # fragment, move/average follow one
        action = ("start", self._start, None) if self._start is not None else None
        stop_reason = None

        while stop_reason is None:
            if self._steps >= o.max_steps:
                stop_reason = f"stopped after {o.max_steps} network passes"
                break
            if action is None:
                position = next(search, None)
                if position is None:
                    stop_reason = "end of the volume"
                    break
                action = ("search", position, None)
            kind, position, context = action
            action = None
            ev = self._evaluate(position)

            if kind in ("start", "search", "next"):
                if not self._detected(ev):
                    if kind == "next":
                        yield self._step("searching", "next-miss", ev,
                                         message="no next vertebra in the patch: sliding on")
                        search, search_after = self._fallback_positions(position), len(self.instances)
                    else:
                        yield self._step("searching", f"{kind}-miss", ev)
                    continue
                follow = _Follow(tuple(position), ev, found_by=kind)
                event = f"{kind}-hit"
            else:
                if ev.volume_mm3 < o.follow_mm3:
                    yield self._step("searching", "lost", ev, context.moves,
                                     message="the followed fragment vanished: searching again")
                    # resume sliding where it was; after a new vertebra, slide on from that one
                    if self.instances and search_after != len(self.instances):
                        search = self._fallback_positions(self.instances[-1].centre_voxel)
                        search_after = len(self.instances)
                    continue
                averaged = kind == "average"
                follow = _Follow(tuple(position), ev, moves=context.moves + (0 if averaged else 1),
                                 previous=context.position, evaluations=context.evaluations + 1, averaged=averaged,
                                 found_by=context.found_by)
                event = "averaged" if averaged else "move"

            centre = self._bbox_centre(ev)
            shift = max(abs(a - b) for a, b in zip(centre, follow.position))
            if not (follow.averaged or shift <= o.max_shift_voxels):
                if follow.moves >= o.max_moves:
                    previous = follow.previous if follow.previous is not None else follow.position
                    target = _round_half_up((np.asarray(follow.position) + np.asarray(previous)) / 2.0)
                    action = ("average", target, follow)
                else:
                    action = ("move", centre, follow)
                yield self._step("following", event, ev, follow.moves, found_by=follow.found_by,
                                 message=f"fragment of {ev.volume_mm3 / 1000:.1f} ml, centre {shift} voxels away")
                continue

            # converged (or averaged): accept the vertebra
            if o.accept_min_label is not None and ev.label < o.accept_min_label:
                yield self._step("converged", "rejected", ev, follow.moves, found_by=follow.found_by,
                                 message=f"regressed label {ev.label:.2f} < {o.accept_min_label}: "
                                         "taken as a false positive; the traversal ends")
                stop_reason = "false positive (regressed label too low)"
                break
            inst = self._accept(follow)
            what = "complete" if inst.complete else ("incomplete, kept" if inst.in_output else "incomplete, memory only")
            yield self._step("converged", "averaged" if follow.averaged else "converged", ev, follow.moves,
                             accepted=inst, found_by=follow.found_by,
                             message=f"vertebra {inst.index} ({what}) after {follow.moves} moves, label "
                                     f"{ev.label:.2f}, completeness {ev.completeness:.2f}, {inst.volume_mm3 / 1000:.1f} ml")
            if len(self.instances) >= o.max_instances:
                stop_reason = f"{o.max_instances} vertebrae (the maximum)"
                break
            action = ("next", follow.position, None)   # the same patch again, with the updated memory

        yield self._step("done", stop_reason, None, message=stop_reason)
        self.result = TraversalResult(
            instances=list(self.instances), memory=self.memory, disc_memory=self.disc_memory, canal=self.canal,
            steps=self._steps, stop_reason=stop_reason, log=list(self._log), grid=self.image,
        )

    def _detected(self, ev: _Evaluation) -> bool:
        o = self.options
        if not self.instances:
            if ev.volume_mm3 < o.min_fragment_mm3:
                return False
            return o.start_min_label is None or ev.label >= o.start_min_label
        return ev.volume_mm3 >= o.follow_mm3

    def run(self) -> TraversalResult:
        """Run to the end; returns :class:`TraversalResult` (also kept as ``self.result``)."""
        for _ in self.steps():
            pass
        return self.result


def _bbox(mask: np.ndarray, margin: int = 0) -> tuple:
    """Slices of the bounding box of ``mask`` grown by ``margin`` (clipped)."""
    idx = np.nonzero(mask)
    if not idx[0].size:
        return tuple(slice(0, 0) for _ in mask.shape)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + 1 + margin, n))
                 for i, n in zip(idx, mask.shape))


def run_traversal(image: Image, predict: Callable, options: Optional[TraversalOptions] = None, **kw) -> TraversalResult:
    """Plain call: the whole traversal at once (see :class:`IISTraversal`)."""
    return IISTraversal(image, predict, options, **kw).run()
