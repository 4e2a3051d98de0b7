"""Running an :class:`~SpineSegLib.iis.model.network.IISNet` as the traversal's ``predict`` callable.

* :class:`TorchPredictor` -- one forward pass per patch under ``torch.inference_mode``, with the
  fastest safe settings: on the CPU bf16 autocast when the processor has bf16 instructions (AMX or
  AVX512-BF16: a 64-channel 128^3 pass was ~5x faster here) and channels-last-3d memory for fp32;
  on CUDA bf16 (or fp16) autocast and channels-last-3d;
* :class:`FallbackPredictor` -- wraps a GPU predictor and, when a forward pass raises
  ``torch.cuda.OutOfMemoryError``, says so and continues on the CPU for the rest of the run.

The device itself (``auto`` / ``cpu`` / ``cuda``) is resolved by ``SpineSegLib.iis.model.device``.

bf16 keeps 8 significant bits: the regressed label comes out in steps of 1/8 around L1-L5, which
the label-sequence fit absorbs; probabilities move by well under 1 %.

Console use::

    from SpineSegLib.iis.model.checkpoint import load_model
    from SpineSegLib.iis.infer.predictor import TorchPredictor
    from SpineSegLib.iis.model.device import resolve_device
    net, config, _ = load_model("model.pt")
    predict = TorchPredictor(net, config, resolve_device("auto"))
    prob, label, completeness = predict(image_patch, memory_patch)
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from SpineSegLib.core.errors import InputError
from SpineSegLib.iis.model.device import cpu_has_bf16

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def default_precision(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchPredictor:
    """``predict(image_patch, memory_patch) -> (probabilities [K,Z,Y,X], label, completeness)``.

    ``precision``: auto | fp32 | bf16 | fp16 (fp16 only on CUDA); ``channels_last``: None = auto
    (CUDA always; CPU only in fp32, where it was measured faster -- bf16 gains nothing from it).
    """

    def __init__(self, model, config, device="cpu", precision: str = "auto", channels_last: Optional[bool] = None):
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
        self.model = model
        self.config = config
        self.device = torch.device(device)
        self.precision = default_precision(self.device) if precision == "auto" else precision
        if self.precision == "fp16" and self.device.type != "cuda":
            raise InputError("fp16 inference needs a CUDA GPU; use bf16 or fp32 on the CPU")
        if channels_last is None:
            channels_last = self.device.type == "cuda" or self.precision == "fp32"
        self.channels_last = bool(channels_last)
        self.passes = 0
        self.model.eval()
        self.model.to(self.device)
        self.model.to(memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format)

    def describe(self) -> str:
        return f"{self.device.type} {self.precision}{' channels-last' if self.channels_last else ''}"

    def __call__(self, image_patch: np.ndarray, memory_patch: np.ndarray):
        memory_patch = np.asarray(memory_patch, dtype=np.float32)
        if memory_patch.ndim == 3:
            memory_patch = memory_patch[None]
        x = np.concatenate([np.asarray(image_patch, dtype=np.float32)[None], memory_patch])[None]
        x = torch.from_numpy(x).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        dtype = _AUTOCAST.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            out = self.model(x)
            prob = torch.sigmoid(out.segmentation.float())[0]
            label = out.label.float()[0]
            completeness = torch.sigmoid(out.completeness.float())[0]
        self.passes += 1
        return prob.cpu().numpy(), float(label), float(completeness)

    def release(self) -> None:
        """Move the model to the CPU and give the GPU's cached memory back."""
        self.model.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class FallbackPredictor:
    """Calls ``primary``; on ``torch.cuda.OutOfMemoryError`` tells ``notify`` and switches, for good,
    to ``make_fallback()`` (a CPU predictor), repeating the failed pass there."""

    def __init__(self, primary: Callable, make_fallback: Callable[[], Callable],
                 notify: Optional[Callable[[str], None]] = None):
        self.primary = primary
        self.make_fallback = make_fallback
        self.notify = notify or (lambda message: None)
        self.active = primary
        self.fell_back = False

    def describe(self) -> str:
        describe = getattr(self.active, "describe", None)
        return describe() if describe else type(self.active).__name__

    def __call__(self, image_patch, memory_patch):
        if not self.fell_back:
            try:
                return self.primary(image_patch, memory_patch)
            except torch.cuda.OutOfMemoryError:
                self.fell_back = True
                release = getattr(self.primary, "release", None)
                if release is not None:
                    release()
                self.active = self.make_fallback()
                self.notify(f"GPU out of memory: continuing on the CPU ({self.describe()}); this is slower")
        return self.active(image_patch, memory_patch)
