"""Training patches for the IIS network (Lessmann et al. 2019, section 3.6).

Each patch is drawn from a :class:`~SpineSegLib.iis.train.prepared.PreparedCase` (model grid):

* with probability ``empty_fraction`` (0.25, as the paper) the centre lies anywhere in the scan
  (or, with ``empty_margin_mm``, anywhere near the labelled vertebrae: more hard negatives such as
  an unlabelled sacrum, fewer patches of air); the instance memory then holds every vertebra in the patch and the target is empty, so the network
  learns to answer "nothing left" (label target 0, completeness target 0);
* otherwise a random labelled vertebra is the target: the centre is uniform inside its bounding box
  (optionally grown by ``centre_margin_mm``, per axis: growing it along z shows the network the
  target at the patch's upper / lower edge, as traversal does when it moves on from the previous
  vertebra), redrawn until the patch holds at least
  ``min(min_target_mm3, min_target_fraction x its volume)`` of it. The memory holds every vertebra
  *before* it in the traversal direction -- direction "up": all labelled vertebrae below it
  (``instance index > target``, instances are numbered from the top down); "down": all above it.
  Vertebrae after the target are plain background: the network segments only the next one.

Targets of one patch:

* segmentation: the target vertebra's voxels (SPIDER variant: + the disc below it + every spinal
  canal voxel in the patch; the disc memory holds the discs of the vertebrae in memory);
* label: :func:`regression_target` of the target's VerSe id; unidentified vertebrae (SPIDER
  without a known L5, ``by-position`` without a name) get no label loss;
* completeness: 1 iff the vertebra is complete in the scan AND at most 2 % of it lies outside the
  patch (after the augmentation's field-of-view crop).

Outside the scan the image is ``config.pad_value`` and the labels are 0.

Console use::

    import numpy as np
    from SpineSegLib.iis.train.sampling import PatchSampler, SamplingOptions
    sampler = PatchSampler(prepared_cases, config, SamplingOptions())
    sample = sampler.sample(np.random.default_rng(0))
    sample.image.shape, sample.target_index, sample.label_target
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.iis.model.config import IISConfig


def regression_target(verse_id: int) -> float:
    """The value the IIS label head is trained to regress for a vertebra with VerSe id ``verse_id``.

    The regular sequence C1 ... L5 is 1 ... 24 (Lessmann et al.: "C1 to L5 are represented by
    integers 1 to 24"; 0 = no vertebra). The transitional vertebrae sit half-way between their
    neighbours, as ``labels.Vertebra.order`` places them: **T13 (28) -> 19.5** (between T12 = 19 and
    L1 = 20) and **L6 (25) -> 24.5** (below L5 = 24). A label fit (inference) that spreads a value
    over its two nearest integers thus sees T13 as half T12 / half L1, and L6 as half L5 / half the
    position after L5. The sacrum (26) is not a target of the vertebra network: ValueError.
    """
    verse_id = int(verse_id)
    if verse_id == 26 or verse_id not in VERTEBRAE:
        raise ValueError(f"VerSe id {verse_id} is not a vertebra the IIS network segments (1-25, 28)")
    return float(VERTEBRAE[verse_id].order)


@dataclass
class SamplingOptions:
    empty_fraction: float = 0.25       # patches placed anywhere, with no target
    min_target_mm3: float = 1000.0     # a target patch holds at least this much of the vertebra ...
    min_target_fraction: float = 0.5   # ... or this fraction of a small (or cut-off) vertebra
    complete_fraction: float = 0.98    # complete = flagged complete and > 98 % inside the patch
    centre_margin_mm: float | tuple = 0.0   # grow the target's box for the centre by this ([z, y, x] or one value)
    empty_margin_mm: float | None = None    # empty patches: centre within the labelled vertebrae's box
    #                                         grown by this much; None = anywhere in the scan (paper)
    max_attempts: int = 50

    def __post_init__(self):
        m = self.centre_margin_mm
        self.centre_margin_mm = tuple(float(v) for v in m) if isinstance(m, (list, tuple)) else (float(m),) * 3
        if len(self.centre_margin_mm) != 3:
            raise ValueError("centre_margin_mm takes one value or three ([z, y, x])")
        if not 0.0 <= self.empty_fraction <= 1.0:
            raise ValueError("empty_fraction must lie in [0, 1]")
        if not 0.0 < self.complete_fraction <= 1.0:
            raise ValueError("complete_fraction must lie in (0, 1]")


@dataclass
class PatchSample:
    """One raw patch before augmentation; label maps hold instance indices of the case."""

    case_id: str
    centre: tuple                  # model-grid index of the patch centre
    image: np.ndarray              # float32 [Z, Y, X]
    instances: np.ndarray          # uint8 [Z, Y, X]
    discs: np.ndarray | None       # uint8 (index of the vertebra above the disc) or None
    canal: np.ndarray | None       # bool or None
    target_index: int              # 0: no target
    memory_indices: tuple          # instance indices in the memory
    label_target: float            # 0.0 for no target
    label_known: bool              # False: no label loss for this patch
    complete_in_scan: bool
    target_voxels_total: int       # the target's voxels in the whole scan
    target_voxels_before: int = 0  # ... inside the patch before augmentation
    crop_retained: float = 1.0     # fraction of those the field-of-view crop kept
    augmentations: list = field(default_factory=list)

    @property
    def visible_fraction(self) -> float:
        if not self.target_index or not self.target_voxels_total:
            return 0.0
        return self.target_voxels_before / self.target_voxels_total * self.crop_retained


def extract_patch(array: np.ndarray, start, size, fill) -> np.ndarray:
    """``array[start : start + size]`` with ``fill`` where the patch leaves the array."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, array.shape):
        a, b = max(s, 0), min(s + n, dim)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws :class:`PatchSample` s from prepared cases (uniform over cases, then over vertebrae)."""

    def __init__(self, cases, config: IISConfig, options: SamplingOptions | None = None):
        self.cases = [c for c in cases if c.vertebrae]
        if not self.cases:
            raise ValueError("no case with a labelled vertebra to sample from")
        self.config = config
        self.options = options or SamplingOptions()
        self.patch_size = tuple(config.patch_size)

    def sample(self, rng: np.random.Generator) -> PatchSample:
        case = self.cases[int(rng.integers(len(self.cases)))]
        if rng.random() < self.options.empty_fraction:
            if self.options.empty_margin_mm is None:
                centre = tuple(int(rng.integers(s)) for s in case.shape)
            else:
                m = [int(round(self.options.empty_margin_mm / v)) for v in case.voxel_size_mm]
                lo = [max(min(v.bbox[a] for v in case.vertebrae) - m[a], 0) for a in range(3)]
                hi = [min(max(v.bbox[3 + a] for v in case.vertebrae) + m[a], case.shape[a]) for a in range(3)]
                centre = tuple(int(rng.integers(a, b)) for a, b in zip(lo, hi))
            return self.patch_at(case, centre, 0)
        info = case.vertebrae[int(rng.integers(len(case.vertebrae)))]
        return self.target_patch(case, info.index, rng)

    def target_patch(self, case, index: int, rng: np.random.Generator) -> PatchSample:
        """A patch with vertebra ``index`` of ``case`` as target, centred at random in its box."""
        info = case.vertebrae[[v.index for v in case.vertebrae].index(index)]
        margin = [int(round(m / v)) for m, v in zip(self.options.centre_margin_mm, case.voxel_size_mm)]
        lo = [max(b - m, 0) for b, m in zip(info.bbox[:3], margin)]
        hi = [min(e + m, s) for e, m, s in zip(info.bbox[3:], margin, case.shape)]
        vox_mm3 = case.voxel_volume_mm3
        need = min(self.options.min_target_mm3 / vox_mm3, self.options.min_target_fraction * info.voxels)
        sample = None
        for _ in range(self.options.max_attempts):
            centre = tuple(int(rng.integers(a, b)) for a, b in zip(lo, hi))
            sample = self.patch_at(case, centre, index)
            if sample.target_voxels_before >= need:
                return sample
        centre = tuple((a + b) // 2 for a, b in zip(info.bbox[:3], info.bbox[3:]))
        return self.patch_at(case, centre, index)

    def patch_at(self, case, centre, target_index: int) -> PatchSample:
        """The patch centred at ``centre`` with the given target (0: none, memory = everything)."""
        start = [c - s // 2 for c, s in zip(centre, self.patch_size)]
        image = extract_patch(case.image, start, self.patch_size, self.config.pad_value).astype(np.float32)
        instances = extract_patch(case.instances, start, self.patch_size, 0)
        discs = canal = None
        if self.config.variant == "spider":
            discs = extract_patch(case.discs, start, self.patch_size, 0) if case.discs is not None \
                else np.zeros(self.patch_size, np.uint8)
            canal = extract_patch(case.canal, start, self.patch_size, False) if case.canal is not None \
                else np.zeros(self.patch_size, bool)
        present = [int(i) for i in np.unique(instances) if i]
        if target_index:
            info = next(v for v in case.vertebrae if v.index == target_index)
            if self.config.direction == "up":
                memory = tuple(i for i in present if i > target_index)
            else:
                memory = tuple(i for i in present if i < target_index)
            label = regression_target(info.key) if info.identified else 0.0
            return PatchSample(case.case_id, tuple(centre), image, instances, discs, canal, target_index, memory,
                               label, info.identified, info.complete, info.voxels,
                               int(np.count_nonzero(instances == target_index)))
        return PatchSample(case.case_id, tuple(centre), image, instances, discs, canal, 0, tuple(present),
                           0.0, True, False, 0, 0)


@dataclass
class TrainingExample:
    """Network inputs and targets of one patch (numpy, channel first)."""

    inputs: np.ndarray        # [C_in, Z, Y, X] float32: image, memory (, disc memory)
    targets: np.ndarray       # [C_out, Z, Y, X] float32
    weights: np.ndarray       # [C_out, Z, Y, X] float32 surface-distance weights
    label: float
    label_known: bool
    complete: float
    has_target: bool


def to_example(sample: PatchSample, config: IISConfig, options: SamplingOptions, weight_fn) -> TrainingExample:
    """Channels of ``sample`` (after augmentation); ``weight_fn(mask) -> weights`` gives the
    surface-distance weights of one target mask (``losses.surface_weights``)."""
    inst = sample.instances
    memory = np.isin(inst, sample.memory_indices) if sample.memory_indices else np.zeros(inst.shape, bool)
    target = (inst == sample.target_index) if sample.target_index else np.zeros(inst.shape, bool)
    has_target = bool(target.any())
    inputs = [sample.image.astype(np.float32), memory.astype(np.float32)]
    targets = [target]
    if config.variant == "spider":
        disc_memory = np.isin(sample.discs, sample.memory_indices) if sample.memory_indices else np.zeros(inst.shape, bool)
        disc_target = (sample.discs == sample.target_index) if sample.target_index else np.zeros(inst.shape, bool)
        inputs.append(disc_memory.astype(np.float32))
        targets += [disc_target, sample.canal.astype(bool)]
    weights = np.stack([weight_fn(t) for t in targets]).astype(np.float32)
    if has_target:
        complete = sample.complete_in_scan and sample.visible_fraction >= options.complete_fraction
        label, label_known = sample.label_target, sample.label_known
    else:
        complete, label, label_known = False, 0.0, True
    return TrainingExample(np.stack(inputs), np.stack(targets).astype(np.float32), weights, float(label),
                           bool(label_known), float(complete), has_target)
