"""Training examples and batches: patches drawn (``sampling``), augmented (``augment``) and given
their surface weights (``losses.surface_weights``), as a pure function of ``(seed, iteration, index)``.

Patch ``b`` of iteration ``n`` is drawn from ``numpy.random.default_rng([seed, n, b])``: the batches
do not depend on the number of data workers or on where a run was resumed.

Console use::

    from SpineSegLib.iis.train.examples import ExampleStream, batches
    stream = ExampleStream(prepared_cases, cfg)            # cfg: a recipe.TrainConfig
    for iteration, batch in batches(stream, seed=0, start=0, stop=3, batch_size=1, workers=0):
        batch["inputs"].shape                              # (1, 2, 48, 48, 48)
"""

from __future__ import annotations

import numpy as np
import torch

from SpineSegLib.iis.train.augment import Augmenter, AugmentOptions
from SpineSegLib.iis.train.losses import surface_weights
from SpineSegLib.iis.train.recipe import TrainConfig
from SpineSegLib.iis.train.sampling import PatchSampler, to_example


class ExampleStream:
    """Training (or validation) examples as a pure function of ``(seed, iteration, index)``."""

    def __init__(self, prepared, cfg: TrainConfig, augment: bool = True):
        self.config = cfg.model
        self.sampling = cfg.training.sampling
        self.sampler = PatchSampler(prepared, cfg.model, self.sampling)
        self.augmenter = Augmenter(cfg.model, cfg.training.augmentation if augment else AugmentOptions.none())
        self.gamma, self.sigma = cfg.training.gamma, cfg.training.sigma_mm
        self.spacing = tuple(cfg.model.voxel_size_mm)

    def example(self, seed: int, iteration: int, index: int = 0):
        rng = np.random.default_rng([int(seed), int(iteration), int(index)])
        sample = self.augmenter(self.sampler.sample(rng), rng)
        return to_example(sample, self.config, self.sampling,
                          lambda m: surface_weights(m, self.spacing, self.gamma, self.sigma))

    def batch(self, seed: int, iteration: int, batch_size: int) -> dict:
        return collate([self.example(seed, iteration, b) for b in range(batch_size)])


def collate(examples) -> dict:
    """One batch (numpy arrays with a leading batch axis) from ``sampling.to_example`` examples."""
    return {
        "inputs": np.stack([e.inputs for e in examples]),
        "targets": np.stack([e.targets for e in examples]),
        "weights": np.stack([e.weights for e in examples]),
        "label": np.array([e.label for e in examples], np.float32),
        "label_known": np.array([e.label_known for e in examples], bool),
        "complete": np.array([e.complete for e in examples], np.float32),
        "has_target": np.array([e.has_target for e in examples], bool),
    }


class _BatchDataset(torch.utils.data.IterableDataset):
    """Batches for iterations ``start+1 .. stop`` in order; worker w of W makes every W-th one."""

    def __init__(self, stream: ExampleStream, seed: int, start: int, stop: int, batch_size: int):
        super().__init__()
        self.stream, self.seed, self.start, self.stop, self.batch_size = stream, seed, start, stop, batch_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        for it in range(self.start + 1 + w, self.stop + 1, n):
            yield it, self.stream.batch(self.seed, it, self.batch_size)


def _as_is(item):
    return item     # keep numpy arrays (the default would turn them into tensors)


def batches(stream: ExampleStream, seed: int, start: int, stop: int, batch_size: int, workers: int):
    """``(iteration, batch)`` for iterations ``start+1 .. stop``, made here (``workers`` 0) or by
    ``workers`` loader processes; the same batches either way."""
    if workers <= 0:
        for it in range(start + 1, stop + 1):
            yield it, stream.batch(seed, it, batch_size)
        return
    loader = torch.utils.data.DataLoader(_BatchDataset(stream, seed, start, stop, batch_size), batch_size=None,
                                         collate_fn=_as_is, num_workers=workers, prefetch_factor=4)
    yield from loader


def to_device(batch: dict, device, channels_last: bool) -> dict:
    """A batch as torch tensors on ``device`` (5-D ones channels-last when asked)."""
    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        if t.ndim == 5 and channels_last:
            t = t.contiguous(memory_format=torch.channels_last_3d)
        out[k] = t.to(device, non_blocking=True)
    return out
