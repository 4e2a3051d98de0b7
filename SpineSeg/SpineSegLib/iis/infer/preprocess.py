"""Bringing a scan onto an IIS model's grid and intensity scale -- shared by training and inference.

The model sees the canonical LPS layout (``[z, y, x]``, z superior, y posterior, x left; see
``SpineSegLib.core.orientation``) resampled to ``config.voxel_size_mm``, with intensities normalised
as ``config.intensity`` says:

* CT (``kind = "ct"``): HU clipped to ``[low, high]`` and divided by ``scale``;
* MR (``kind = "mr"``): values clipped to the ``low``-th and ``high``-th percentiles of the whole
  scan and mapped linearly onto ``[-1, 1]`` (Lessmann et al., section 5).

Console use::

    from SpineSegLib.iis.infer.preprocess import to_model_grid
    grid = to_model_grid(ct, config)          # ct: Image; config: IISConfig
    grid.image.array                          # normalised float32 [z, y, x] at the model's voxel size
    labels_on_model = grid.labels(label_image)  # a label map of the same scan, same grid
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image
from SpineSegLib.core.resample import resample_to_grid, resample_to_spacing
from SpineSegLib.core.orientation import to_canonical
from SpineSegLib.iis.model.config import IISConfig


def normalise_intensity(array: np.ndarray, intensity: dict) -> np.ndarray:
    """Normalise raw intensities as an :class:`IISConfig` ``intensity`` entry says (float32)."""
    array = np.asarray(array, dtype=np.float32)
    kind = intensity.get("kind")
    if kind == "ct":
        out = np.clip(array, intensity["low"], intensity["high"]) / float(intensity["scale"])
    elif kind == "mr":
        lo, hi = np.percentile(array, [intensity["low"], intensity["high"]])
        if hi <= lo:
            raise InputError("the image has (almost) constant intensities; nothing to segment")
        out = (np.clip(array, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
    else:
        raise InputError(f"unknown intensity normalisation {kind!r}")
    return out.astype(np.float32)


@dataclass
class ModelGrid:
    """A scan on the model's grid, and the grids it came from."""

    image: Image        # normalised, canonical LPS, model voxel size
    source: Image       # the scan as given (any orientation)

    def labels(self, label_image: Image) -> Image:
        """A label map of the same scan mapped onto the model grid (nearest neighbour)."""
        return resample_to_grid(label_image, self.image, label=True)

    def to_source(self, array: np.ndarray, label: bool = True) -> Image:
        """An array on the model grid mapped back onto the scan's own grid."""
        return resample_to_grid(self.image.with_array(array), self.source, label=label, default=0)


def to_model_grid(image: Image, config: IISConfig) -> ModelGrid:
    """Reorient, resample (linear) and normalise ``image`` for ``config``'s network."""
    if not np.isfinite(image.array).all():
        raise InputError("the image contains NaN or infinite values")
    canonical = to_canonical(image).image
    normalised = canonical.with_array(normalise_intensity(canonical.array, config.intensity))
    spacing_ijk = tuple(reversed(config.voxel_size_mm))
    if np.allclose(normalised.spacing, spacing_ijk, atol=1e-3):
        resampled = normalised
    else:
        resampled = resample_to_spacing(normalised, spacing_ijk, label=False, default=config.pad_value)
    resampled.array = resampled.array.astype(np.float32, copy=False)
    return ModelGrid(resampled, image)
