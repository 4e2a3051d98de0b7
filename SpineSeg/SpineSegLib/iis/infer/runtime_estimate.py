"""How long an IIS run will take: network passes expected for a scan x seconds per pass on a device.

* **Passes** (:func:`expected_passes`): the traversal (``traversal.py``) searches patch columns level by
  level until the first vertebra, spends about four passes per vertebra (a hit, one to three moves to
  converge, the re-analysis of the same patch for the next one), and slides on through the 3 x 3
  columns around the last vertebra at the end. The number of vertebrae is the scan's superior-inferior
  extent over a vertebra-plus-disc pitch (22-40 mm, 30 mm typical), at most 25.
* **Seconds per pass** (:func:`pass_seconds`): measured -- by :func:`measure_pass_seconds` (one warm-up
  and a few timed passes of the real network on a random patch, in a child process so that Slicer's
  process needs no torch: ``spineseg speed --model M.pt``, see ``SpineSegLib.cli.speed``), or from the
  model card's ``per_pass_seconds`` -- else guessed from the network's arithmetic (:func:`network_tflop`)
  and a throughput per device class (:data:`GUESS_TFLOPS`, from passes measured on this project's CI
  machine and on an H100; see the module's tests and the report).

Console use::

    from SpineSegLib.iis.infer.runtime_estimate import estimate
    est = estimate(config, extent_mm=(300, 350, 350), per_pass_s={"cpu": 3.8})
    print(est.text("cpu"))        # 'about 3 min (2 min - 10 min): ~53 passes x 3.8 s (measured)'
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from SpineSegLib.core.files import write_text_atomic
from SpineSegLib.iis.model.config import IISConfig

#: vertebra + disc pitch along the spine, mm (cervical ~18, thoracic ~25-30, lumbar ~35-40)
PITCH_MM = (22.0, 30.0, 40.0)
PASSES_PER_VERTEBRA = (3.0, 4.0, 6.0)
#: effective TFLOP/s used when nothing was measured: per CPU core (fp32 / bf16 with AMX) and per GPU
GUESS_TFLOPS = {"cpu_core_fp32": 0.05, "cpu_core_bf16": 0.29, "cuda": 25.0}
#: fixed cost of one pass besides the arithmetic (patch extraction, connected components), seconds
PASS_OVERHEAD_S = {"cpu": 0.03, "cuda": 0.02}


def network_tflop(config: IISConfig) -> float:
    """Floating-point operations (TFLOP, 2 per multiply-add) of one forward pass of ``IISNet``: the
    3x3x3 convolutions of the encoder and decoder blocks and the 2x2x2 up-convolutions; the small
    recognition heads are left out."""
    w, levels = config.width, config.levels
    voxels = float(math.prod(config.patch_size))
    macs = 0.0
    for level in range(levels):
        v = voxels / 8 ** level
        macs += 27 * v * ((config.in_channels if level == 0 else w) * w + w * w)     # encoder block
        if level < levels - 1:
            macs += 27 * v * (2 * w * w + w * w)                                        # decoder block
            macs += 8 * (v / 8) * w * w                                                 # up-convolution
    return 2 * macs / 1e12


def model_grid_shape(config: IISConfig, extent_mm) -> tuple:
    """Canonical ``[z, y, x]`` shape of a scan of ``extent_mm`` (z, y, x: S-I, A-P, L-R) on the model grid."""
    return tuple(max(1, int(math.ceil(e / v))) for e, v in zip(extent_mm, config.voxel_size_mm))


def _positions(n: int, p: int) -> int:
    from SpineSegLib.iis.infer.patches import axis_positions

    return len(axis_positions(n, p, max(1, p // 2)))


def expected_passes(config: IISConfig, extent_mm) -> tuple[int, int, int]:
    """``(low, typical, high)`` numbers of network passes for a scan of ``extent_mm`` (z, y, x mm)."""
    nz, ny, nx = model_grid_shape(config, extent_mm)
    pz, py, px = config.patch_size
    columns = _positions(ny, py) * _positions(nx, px)
    search = (1, min(columns, 4), 2 * columns)
    vertebrae = [min(25, max(1, round(extent_mm[0] / pitch))) for pitch in reversed(PITCH_MM)]
    end = (0, 9, 18)
    return tuple(int(round(s + v * k + e)) for s, v, k, e in zip(search, vertebrae, PASSES_PER_VERTEBRA, end))


def guessed_pass_seconds(config: IISConfig, device: str, cpu_cores: Optional[int] = None, bf16: bool = False) -> float:
    """Seconds per pass from the arithmetic alone (no measurement)."""
    tflop = network_tflop(config)
    if device == "cuda":
        return PASS_OVERHEAD_S["cuda"] + tflop / GUESS_TFLOPS["cuda"]
    cores = cpu_cores or os.cpu_count() or 1
    per_core = GUESS_TFLOPS["cpu_core_bf16" if bf16 else "cpu_core_fp32"]
    return PASS_OVERHEAD_S["cpu"] + tflop / (per_core * cores)


@dataclass
class Estimate:
    passes: tuple                                   # (low, typical, high)
    per_pass_s: dict                                # device -> seconds
    sources: dict = field(default_factory=dict)     # device -> "measured" | "model card" | "guessed"
    setup_s: float = 5.0                            # reading, resampling, mapping back, labelling

    def seconds(self, device: str) -> tuple[float, float, float]:
        p = self.per_pass_s[device]
        return tuple(self.setup_s + n * p for n in self.passes)

    def text(self, device: str) -> str:
        low, typical, high = self.seconds(device)
        return (f"about {format_duration(typical)} ({format_duration(low)} - {format_duration(high)}): "
                f"~{self.passes[1]} passes x {self.per_pass_s[device]:.3g} s ({self.sources.get(device, 'guessed')})")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def pass_seconds(config: IISConfig, measured: Optional[dict] = None, card: Optional[dict] = None,
                 cpu_cores: Optional[int] = None, bf16: bool = False) -> tuple[dict, dict]:
    """``({device: seconds}, {device: source})`` for cpu and cuda: measured, else the card's, else a guess."""
    values, sources = {}, {}
    for device in ("cpu", "cuda"):
        for source, table in (("measured", measured), ("model card", card)):
            if table and isinstance(table.get(device), (int, float)) and table[device] > 0:
                values[device], sources[device] = float(table[device]), source
                break
        else:
            values[device], sources[device] = guessed_pass_seconds(config, device, cpu_cores, bf16), "guessed"
    return values, sources


def estimate(config: IISConfig, extent_mm, per_pass_s: Optional[dict] = None, card: Optional[dict] = None,
             cpu_cores: Optional[int] = None, bf16: bool = False) -> Estimate:
    """The run-time estimate for a scan of ``extent_mm`` (canonical z, y, x: S-I, A-P, L-R, in mm)."""
    values, sources = pass_seconds(config, per_pass_s, card, cpu_cores, bf16)
    return Estimate(expected_passes(config, extent_mm), values, sources)


def extent_of(image) -> tuple:
    """Canonical (z, y, x) extent in mm of an :class:`~SpineSegLib.core.image.Image` (S-I, A-P, L-R)."""
    from SpineSegLib.core.orientation import axis_permutation

    perm, _ = axis_permutation(image.direction)
    size, spacing = image.size, image.spacing
    return tuple(size[perm[a]] * spacing[perm[a]] for a in (2, 1, 0))


# -- measuring (imports torch) ----------------------------------------------------------------------
def measure_pass_seconds(model_path, device: str = "cpu", repeats: int = 3, precision: str = "auto",
                         threads: Optional[int] = None) -> dict:
    """Median seconds of ``repeats`` forward passes (after one warm-up) of the model on a random patch."""
    import numpy as np
    import torch

    from SpineSegLib.iis.infer.predictor import TorchPredictor
    from SpineSegLib.iis.model.checkpoint import load_model
    from SpineSegLib.iis.model.device import available_cores, resolve_device

    torch.set_num_threads(int(threads) if threads else available_cores())
    dev = resolve_device(device)
    net, config, _ = load_model(model_path, device="cpu")
    predict = TorchPredictor(net, config, dev, precision)
    rng = np.random.default_rng(0)
    image = rng.standard_normal(config.patch_size).astype(np.float32)
    memory = np.zeros((config.memory_channels, *config.patch_size), np.float32)
    predict(image, memory)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        predict(image, memory)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"device": dev.type, "seconds": float(np.median(times)), "precision": predict.precision,
            "describe": predict.describe()}


def probe(model_path=None, devices=("auto",), repeats: int = 3, threads: Optional[int] = None,
          progress=None) -> dict:
    """What this machine offers (torch, GPUs, CPU cores, bf16) and, with a model, its measured pass times.
    ``progress(phase, fraction)`` hears of each device timed (default: a ``{"progress": NaN, ...}`` line on
    stdout)."""
    import torch

    from SpineSegLib.iis.model.device import available_cores, cpu_has_bf16

    info = {"torch": torch.__version__, "cuda": bool(torch.cuda.is_available()), "cpu_cores": available_cores(),
            "cpu_bf16": cpu_has_bf16(), "gpus": [], "per_pass_seconds": {}, "precision": {}}
    if info["cuda"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
    if model_path:
        from SpineSegLib.iis.model.checkpoint import read_checkpoint

        info["model"] = str(model_path)
        info["config"] = read_checkpoint(model_path)["config"]
        wanted = []
        for d in devices:
            if d == "auto":
                wanted += ["cpu"] + (["cuda"] if info["cuda"] else [])
            elif d == "cuda" and not info["cuda"]:
                continue
            else:
                wanted.append(d)
        for d in dict.fromkeys(wanted):
            if progress is None:
                print(json.dumps({"progress": math.nan, "message": f"timing a network pass on {d}"}), flush=True)
            else:
                progress(f"timing a network pass on {d}", math.nan)
            m = measure_pass_seconds(model_path, d, repeats, threads=threads)
            info["per_pass_seconds"][m["device"]] = round(m["seconds"], 4)
            info["precision"][m["device"]] = m["describe"]
    return info


class PassTimeCache:
    """Measured seconds per pass, kept in a JSON file per model file (name, size and time stamp) and device."""

    def __init__(self, path):
        self.path = Path(path)

    @staticmethod
    def key(model_path) -> str:
        p = Path(model_path)
        st = p.stat()
        return f"{p.name}:{st.st_size}:{int(st.st_mtime)}"

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, model_path) -> dict:
        return dict(self._read().get(self.key(model_path), {}))

    def put(self, model_path, per_pass_s: dict) -> None:
        data = self._read()
        entry = data.get(self.key(model_path), {})
        entry.update({k: float(v) for k, v in per_pass_s.items()})
        data[self.key(model_path)] = entry
        write_text_atomic(self.path, json.dumps(data, indent=1))

