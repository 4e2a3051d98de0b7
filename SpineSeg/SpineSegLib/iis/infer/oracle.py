"""A perfect "network" that answers from a reference label map: for testing and showing the traversal.

:class:`LabelMapOracle` is a ``predict(image_patch, memory_patch)`` callable for
:class:`~SpineSegLib.iis.infer.traversal.IISTraversal`. Run the traversal on the reference label map
itself (as the image, on the model grid), so that every image patch the oracle receives *is* the
label patch. It answers what a perfectly trained IIS network would: the next vertebra in traversal
direction that is visible in the patch and not yet in the memory (the bottom-most for ``up``), its
label, and whether it is complete (at most 2 % of it outside the patch, and not cut by the edge of
the scan). For the SPIDER variant it adds the disc below that vertebra and the spinal canal.

Console use::

    from SpineSegLib.iis.infer.preprocess import to_model_grid
    from SpineSegLib.iis.infer.traversal import IISTraversal
    from SpineSegLib.iis.infer.traversal_options import TraversalOptions
    from SpineSegLib.iis.infer.oracle import LabelMapOracle
    grid = to_model_grid(image, config)
    ref = grid.labels(reference)                      # reference label map on the model grid
    oracle = LabelMapOracle(ref.array, direction="up")
    trav = IISTraversal(ref.with_array(ref.array.astype("float32")), oracle,
                        TraversalOptions(start_min_label=None), patch_size=config.patch_size)
    result = trav.run()
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np
from scipy import ndimage


class LabelMapOracle:
    """``predict`` from a label map (see the module docstring).

    ``labels``: the reference on the model grid (int array ``[z, y, x]``); ``vertebra_ids``: the
    ids that count as vertebrae (default: every id in 1-28); ``regressed``: maps an id to the
    label the oracle reports (default: the id itself); ``hidden``: ids the oracle does not see
    (to make a gap); ``disc_of``: vertebra id -> id of the disc below it (SPIDER); ``canal_id``;
    ``min_visible_voxels``: a vertebra with fewer voxels in the patch counts as not visible (a
    trained network never saw a smaller target: the training sampler wants > 1000 voxels of it).
    """

    def __init__(self, labels: np.ndarray, direction: str = "up", vertebra_ids: Optional[Iterable[int]] = None,
                 regressed: Optional[Callable[[int], float]] = None, hidden: Iterable[int] = (),
                 outside_fraction: float = 0.02, disc_of: Optional[dict] = None, canal_id: Optional[int] = None,
                 min_visible_voxels: int = 0):
        labels = np.asarray(labels)
        present = [int(v) for v in np.unique(labels) if v != 0]
        ids = [v for v in present if 1 <= v <= 28] if vertebra_ids is None else [int(v) for v in vertebra_ids if v in present]
        self.hidden = {int(h) for h in hidden}
        self.ids = [v for v in ids if v not in self.hidden]
        index = np.arange(max(present) + 1 if present else 1)
        self.total = np.bincount(labels.ravel().astype(np.int64), minlength=index.size)
        centroids = ndimage.center_of_mass(np.ones_like(labels, dtype=np.uint8), labels, self.ids) if self.ids else []
        self.centroid_z = {v: float(c[0]) for v, c in zip(self.ids, centroids)}
        self.up = direction == "up"
        self.regressed = regressed or (lambda v: float(v))
        self.outside_fraction = float(outside_fraction)
        self.disc_of = dict(disc_of or {})
        self.canal_id = canal_id
        self.min_visible = int(min_visible_voxels)
        edges = np.zeros(labels.shape, dtype=bool)
        for axis in range(3):
            sl = [slice(None)] * 3
            sl[axis] = 0
            edges[tuple(sl)] = True
            sl[axis] = -1
            edges[tuple(sl)] = True
        self.cut = {int(v) for v in np.unique(labels[edges]) if v != 0}
        self.calls = 0

    def next_vertebra(self, patch: np.ndarray, memory: np.ndarray) -> Optional[int]:
        """The id the oracle would segment in this patch (None: no unsegmented vertebra visible)."""
        ids = np.round(patch).astype(np.int64)
        ids[patch < 0.5] = 0
        counts = np.bincount(ids.ravel(), minlength=self.total.size)
        remembered = np.bincount(ids[memory > 0].ravel(), minlength=self.total.size)
        candidates = [v for v in self.ids if v < counts.size and counts[v] > max(self.min_visible, 0)
                      and remembered[v] * 2 < counts[v]]
        if not candidates:
            return None
        key = (lambda v: self.centroid_z[v]) if self.up else (lambda v: -self.centroid_z[v])
        return min(candidates, key=key)

    def __call__(self, image_patch: np.ndarray, memory_patch: np.ndarray):
        self.calls += 1
        patch = np.asarray(image_patch)
        memory = np.asarray(memory_patch)
        if memory.ndim == 3:
            memory = memory[None]
        channels = 3 if memory.shape[0] > 1 else 1
        prob = np.zeros((channels,) + patch.shape, dtype=np.float32)
        target = self.next_vertebra(patch, memory[0])
        if channels > 1 and self.canal_id is not None:
            prob[2] = np.abs(patch - self.canal_id) < 0.5
        if target is None:
            return prob, 0.0, 0.0
        inside = np.abs(patch - target) < 0.5
        prob[0] = inside
        outside = 1.0 - inside.sum() / max(int(self.total[target]), 1)
        complete = outside <= self.outside_fraction and target not in self.cut
        if channels > 1 and target in self.disc_of:
            disc = self.disc_of[target]
            prob[1] = (np.abs(patch - disc) < 0.5) & (memory[1] == 0)
        return prob, self.regressed(target), 1.0 if complete else 0.0
