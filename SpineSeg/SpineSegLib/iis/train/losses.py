"""Loss of the IIS network (Lessmann et al. 2019, section 3.6).

``L = seg + label_weight * |p_L - t_L| + completeness_weight * BCE(p_C, t_C)`` with

``seg = (lambda(n) * FP_soft + FN_soft) * voxel volume / 1000 mm^3``, where
``FP_soft = sum_i w_i (1 - t_i) p_i`` and ``FN_soft = sum_i w_i t_i (1 - p_i)`` over the patch,
``w_i = 1 + gamma * exp(-d_i^2 / sigma^2)`` (gamma = 8, sigma = 6 mm; ``d_i`` = distance in mm from
voxel i to the surface of the target, on the model grid) and
``lambda(n) = lambda_min + (1 - lambda_min) / (1 + exp(-(n - n_max/2) / (n_max/10)))``.

Normalisation: the paper sums the errors over the voxels of a 1 mm patch, i.e. it counts mm^3. We
count the same weighted error volume in **cm^3** (sum x voxel volume / 1000 mm^3): independent of
voxel size and patch size, every voxel of every patch weighs the same (as in the paper, so empty
patches count as much per voxel as full ones), and the term keeps the magnitude of the label (L1, in
vertebra positions) and completeness (BCE) terms within one or two orders -- a missed lumbar
vertebral body is ~30, a good segmentation ~1. A patch with no target has ``t = 0`` and ``w = 1``:
``FN = 0`` and ``FP`` pushes the prediction to empty. The SPIDER variant sums this term over its
three output channels (vertebra, disc, canal), each with its own surface weights.

Console use::

    from SpineSegLib.iis.train.losses import fp_weight, surface_weights, iis_loss
    fp_weight(0, 1000), fp_weight(500, 1000), fp_weight(1000, 1000)   # 0.106..., 0.55, 0.994...
    w = surface_weights(mask, spacing_mm=(2, 2, 2))                   # float32, 1 far from the surface
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

GAMMA = 8.0
SIGMA_MM = 6.0


def fp_weight(iteration: int, n_max: int, lambda_min: float = 0.1) -> float:
    """lambda(n): the false-positive weight, rising sigmoidally from ~lambda_min to ~1 (1/2-way at n_max/2)."""
    n_max = max(int(n_max), 1)
    theta = (iteration - n_max / 2.0) / (n_max / 10.0)
    return lambda_min + (1.0 - lambda_min) / (1.0 + math.exp(-theta))


def surface_distance_mm(mask: np.ndarray, spacing_mm) -> np.ndarray:
    """Distance (mm) of every voxel to the surface of ``mask``: inside, to the nearest background
    voxel; outside, to the nearest mask voxel (scipy EDT with the voxel spacing)."""
    mask = np.asarray(mask, bool)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing_mm)
    return np.where(mask, inside, outside).astype(np.float32)


def surface_weights(mask: np.ndarray, spacing_mm, gamma: float = GAMMA, sigma_mm: float = SIGMA_MM) -> np.ndarray:
    """``1 + gamma * exp(-d^2 / sigma^2)`` with d = :func:`surface_distance_mm`; all ones for an empty mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.ones(mask.shape, np.float32)
    d = surface_distance_mm(mask, spacing_mm)
    return (1.0 + gamma * np.exp(-(d * d) / (sigma_mm * sigma_mm))).astype(np.float32)


def segmentation_error(logits, targets, weights, lam: float, voxel_mm3: float):
    """Per-patch ``(lambda * FP_soft + FN_soft)`` in cm^3, summed over channels: tensor ``[N]``."""
    p = logits.float().sigmoid()
    fp = (weights * (1.0 - targets) * p).flatten(1).sum(1)
    fn = (weights * targets * (1.0 - p)).flatten(1).sum(1)
    return (lam * fp + fn) * (voxel_mm3 / 1000.0)


def label_error(label, target, pre_activation=None):
    """``|p_L - t_L|`` per patch. With the label head's value *before* its ReLU (``pre_activation``)
    the error is computed so that it keeps a gradient where the ReLU would block it: for a vertebra
    (t > 0) ``|pre - t|`` (equal to ``|relu(pre) - t|`` whenever pre >= 0, and still pulling a negative
    pre-activation up), for no vertebra (t = 0) ``max(pre, 0)`` (any negative value is right, as in
    the paper). Without it, a label head whose pre-activation turns negative for all patches never
    recovers (a "dead" ReLU; it happened within 200 iterations of the first MR runs)."""
    import torch

    if pre_activation is None:
        return (label.float() - target).abs()
    pre = pre_activation.float()
    return torch.where(target > 0, (pre - target).abs(), pre.clamp(min=0.0))


def iis_loss(output, batch: dict, lam: float, voxel_mm3: float, label_weight: float = 1.0,
             completeness_weight: float = 1.0, label_pre_activation=None) -> dict:
    """The terms of L for a batch (means over the batch). ``batch`` holds tensors ``targets``,
    ``weights`` ``[N, C, Z, Y, X]``, ``label``, ``label_known``, ``complete`` ``[N]``;
    ``label_pre_activation``: see :func:`label_error`."""
    import torch
    import torch.nn.functional as F

    seg = segmentation_error(output.segmentation, batch["targets"], batch["weights"], lam, voxel_mm3).mean()
    known = batch["label_known"].float()
    label_err = (output.label.float() - batch["label"]).abs()
    train_err = label_error(output.label, batch["label"], label_pre_activation)
    label = (train_err * known).sum() / known.sum().clamp(min=1.0)
    completeness = F.binary_cross_entropy_with_logits(output.completeness.float(), batch["complete"])
    total = seg + label_weight * label + completeness_weight * completeness
    return {"loss": total, "seg": seg.detach(), "label": label.detach(), "completeness": completeness.detach(),
            "label_abs_error": torch.where(known > 0, label_err.detach(), torch.full_like(label_err, float("nan")))}


def dice_counts(logits, targets) -> tuple:
    """``(true positives, predicted, reference)`` voxel counts per patch of channel 0 (p > 0.5): numpy ``[N]`` each."""
    pred = (logits[:, 0].float() > 0).flatten(1)
    ref = (targets[:, 0] > 0.5).flatten(1)
    tp = (pred & ref).sum(1).cpu().numpy()
    return tp, pred.sum(1).cpu().numpy(), ref.sum(1).cpu().numpy()
