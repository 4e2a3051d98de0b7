"""What the IIS traversal (``traversal.py``) produces: the accepted vertebrae, one record per step, the result.

* :class:`TraversedInstance` -- one accepted vertebra: its mask and probabilities as crops of the
  model grid, regressed label, completeness, how it was reached;
* :class:`TraversalStep` -- one network pass and what the traversal made of it (phase, event, patch,
  fragment), the unit a Slicer panel shows and ``spineseg iis --steps-dir`` writes;
* :class:`TraversalResult` -- the vertebrae, the memory (and SPIDER disc memory, canal), the log.

Console use::

    from SpineSegLib.iis.infer.traversal import IISTraversal
    trav = IISTraversal(grid.image, predict, options, patch_size=config.patch_size)
    for step in trav.steps():                  # TraversalStep
        print(step.phase, step.event, step.to_dict()["box"])
    [i.summary() for i in trav.result.instances]   # TraversalResult -> TraversedInstance
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from SpineSegLib.core.image import Image
from SpineSegLib.iis.infer.patches import PatchBox

PHASES = ("searching", "following", "converged", "done")


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
