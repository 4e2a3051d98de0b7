"""Validation on patches: a fixed set of ``validation_patches`` patches from the validation cases
(drawn once from the seed, no augmentation, same target/empty mix as training) and the figures
measured on them.

Figures (:func:`evaluate_patches`): patch Dice = 2|P∩T| / (|P| + |T|) summed over the patches that
have a target (``dice``; ``dice_mean`` averages it per patch), the mean false-positive volume on
patches without one (``empty_fp_mm3``), the mean absolute label error (``label_mae``), the
completeness accuracy and the loss at lambda = 1.

Console use::

    import torch
    from SpineSegLib.iis.model.checkpoint import load_model
    from SpineSegLib.iis.train.cases import gather_cases, split_cases
    from SpineSegLib.iis.train.recipe import load_train_config
    from SpineSegLib.iis.train.validation import evaluate_patches, validation_batches
    cfg = load_train_config("mr-vertebral-bodies-small")
    val = validation_batches(split_cases(gather_cases(cfg), cfg)["validation"], cfg)
    model, _, _ = load_model("runs/mr-vertebral-bodies-small/model.pt")
    evaluate_patches(model, val, cfg, torch.device("cpu"), None, False)["dice"]
"""

from __future__ import annotations

import numpy as np
import torch

from SpineSegLib.iis.train.cases import prepare_cases
from SpineSegLib.iis.train.examples import ExampleStream, collate, to_device
from SpineSegLib.iis.train.losses import dice_counts, iis_loss
from SpineSegLib.iis.train.recipe import TrainConfig

VALIDATION_SEED_OFFSET = 1_000_000_007


def validation_batches(cases, cfg: TrainConfig, log=print) -> list:
    """The fixed validation batches of a run (empty without validation cases)."""
    if not cases:
        return []
    log("preparing the validation cases")
    prepared = prepare_cases(cases, cfg.model, cfg.data.cache, log)
    if not prepared:
        return []
    tc = cfg.training
    stream = ExampleStream(prepared, cfg, augment=False)
    examples = [stream.example(tc.seed + VALIDATION_SEED_OFFSET, j) for j in range(tc.validation_patches)]
    return [collate(examples[i:i + tc.batch_size]) for i in range(0, len(examples), tc.batch_size)]


@torch.no_grad()
def evaluate_patches(model, batches, cfg: TrainConfig, device, amp_dtype, channels_last) -> dict:
    """The validation figures (module docstring) of ``model`` on prepared batches."""
    model.eval()
    vox = float(np.prod(cfg.model.voxel_size_mm))
    tp = pred = ref = 0.0
    per_patch, fp_empty, label_err, compl_ok, compl_n, losses = [], [], [], 0, 0, []
    for batch in batches:
        b = to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(b["inputs"])
        terms = iis_loss(out, b, 1.0, vox, cfg.training.label_weight, cfg.training.completeness_weight)
        losses.append(float(terms["loss"]))
        t, p, r = dice_counts(out.segmentation, b["targets"])
        has = batch["has_target"]
        for i in range(len(has)):
            if has[i]:
                tp, pred, ref = tp + t[i], pred + p[i], ref + r[i]
                per_patch.append(2 * t[i] / max(p[i] + r[i], 1))
                if batch["label_known"][i]:
                    label_err.append(abs(float(out.label[i]) - float(batch["label"][i])))
            else:
                fp_empty.append(p[i] * vox)
        c = (out.completeness.float() > 0).cpu().numpy()
        compl_ok += int(np.sum(c == (batch["complete"] > 0.5)))
        compl_n += len(c)
    model.train()
    nan = float("nan")
    return {
        "loss": float(np.mean(losses)) if losses else nan,
        "dice": float(2 * tp / (pred + ref)) if pred + ref else nan,
        "dice_mean": float(np.mean(per_patch)) if per_patch else nan,
        "empty_fp_mm3": float(np.mean(fp_empty)) if fp_empty else nan,
        "label_mae": float(np.mean(label_err)) if label_err else nan,
        "completeness_accuracy": compl_ok / compl_n if compl_n else nan,
        "patches": int(compl_n),
    }
