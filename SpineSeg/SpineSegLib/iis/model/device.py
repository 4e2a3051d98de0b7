"""The one device resolution (``auto`` / ``cpu`` / ``cuda[:N]``) and the CPU facts inference and
training both need.

Console use::

    from SpineSegLib.iis.model.device import resolve_device
    resolve_device("auto")        # device(type='cuda') where torch sees a GPU, else cpu
"""

from __future__ import annotations

import os

import torch

from SpineSegLib.core.errors import InputError


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` (or ``"cuda:N"``) -> a torch device, with clear errors."""
    name = str(device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no usable CUDA GPU"
            raise InputError(f"device {device!r} was asked for, but torch sees no CUDA GPU ({build}); "
                             "use --device cpu or auto")
        try:
            return torch.device(name)
        except RuntimeError:
            pass
    raise InputError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)")


def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # probing must never break inference
            pass
    return False


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
