"""CT or MR from the intensities alone, and CTs whose intensities are no longer Hounsfield units.

* :func:`guess_modality` -- ``"ct"`` or ``"mr"`` and why (IIS refuses a model of the other modality; a new
  annotation dataset records it).
* :func:`ct_encoding_problem` -- a one-line explanation when the image looks like a CT stored in a way that
  lost its Hounsfield units, else ``None``:

  - **unscaled / offset CT**: HU + 1024 stored as unsigned integers without the rescale slope / intercept
    that would turn them back into HU (air near 0, fat and soft tissue around 900-1200);
  - **display-windowed 8-bit CT**: a CT squeezed into 0-255 through a display window (everything below
    the window clipped to 0, everything above it to 255).

  Both guess ``"mr"`` (nothing is negative), and both would be segmented as garbage if passed on as they
  are; the callers refuse them with this line instead.

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.core.modality import ct_encoding_problem, guess_modality
    image = read_image("scan.nii.gz")
    modality, reason = guess_modality(image)      # ("ct", "51% of the voxels are air (-1100 to -850 HU)")
    problem = ct_encoding_problem(image)          # None, or "the image looks like a CT stored without ..."
"""

from __future__ import annotations

import math

import numpy as np

from SpineSegLib.core.image import Image

MAX_VOXELS = 4_000_000        # a regular subsample of at most this many voxels is plenty for fractions

# unscaled CT (values = HU + 1024), in stored values
OFFSET = 1024
AIR_MAX = 200                 # <= -824 HU: air (and the scanner's padding, -1024 HU -> 0)
MIN_AIR = 0.02                # CTs in ../shared/data 0.12-0.63; required (a crop inside the body is not flagged)
GAP = (450, 850)              # -574 ... -174 HU: between lung and fat, only partial-volume voxels in a CT
SOFT = (850, 1250)            # -174 ... +226 HU: fat, muscle, organs, blood
BONE_MIN = 1300               # > +276 HU: bone
PEAK_BIN = 50                 # histogram bin of the soft-tissue peak
MIN_SOFT_SHARE = 0.45         # of the non-air voxels; CTs in ../shared/data 0.56-0.91, MR scaled onto 1000 <= 0.30
MAX_GAP_RATIO = 0.25          # gap / soft; CTs <= 0.08, MR scaled onto 1000 >= 0.65 (a continuous ramp)
MIN_BONE = 0.001              # a scan of the spine has bone

# display-windowed 8-bit CT
MIN_CLIPPED_LOW = 0.25        # at 0: air (and lung, fat) below the window; MR in ../shared/data <= 0.21
MIN_CLIPPED_HIGH = 0.0005     # at 255: bone above the window
HIGH_SPIKE = 10.0             # 255 holds this many times the mean of 250-254 (MR: one voxel at its maximum)


def _sample(image) -> np.ndarray:
    a = np.asarray(getattr(image, "array", image))
    if a.size > MAX_VOXELS:
        step = int(math.ceil((a.size / MAX_VOXELS) ** (1 / 3)))
        a = a[::step, ::step, ::step]
    return a


def guess_modality(image: Image) -> tuple[str, str]:
    """``("ct" | "mr", reason)`` from the intensities alone.

    CT holds Hounsfield units: air at -1000, fat around -100, values within -3100 ... 32767. MR
    magnitude images are never negative. CT when the values lie in the HU range and either at
    least 5 % of the voxels are air (-1100 to -850 HU) or at least 2 % are at or below -80 HU
    with a spread of at least 300 between the 0.5th and 99.5th percentiles (a crop inside the
    body: fat, soft tissue, bone; z-scored MR, also negative, spans only a few units).
    """
    a = _sample(image).astype(np.float32, copy=False)
    low, high = np.percentile(a, [0.5, 99.5])
    air = float(((a >= -1100) & (a <= -850)).mean())
    dark = float((a <= -80).mean())
    in_range = low >= -3100 and high <= 32767
    if in_range and air >= 0.05:
        return "ct", f"{air:.0%} of the voxels are air (-1100 to -850 HU)"
    if in_range and dark >= 0.02 and high - low >= 300:
        return "ct", f"{dark:.0%} of the voxels at or below -80 HU, intensities {low:.0f} to {high:.0f}"
    if dark < 0.02:
        return "mr", f"only {dark:.1%} of the voxels are below -80, as in MR magnitude images (CT has air and fat)"
    return "mr", f"intensities {low:.1f} to {high:.1f} do not look like Hounsfield units"


def ct_encoding_problem(image) -> str | None:
    """One line naming the problem when ``image`` (an :class:`Image` or an array) looks like a CT whose
    values are no longer Hounsfield units, else ``None``. Only images with nothing negative can be flagged
    (a CT in HU has air at -1000), so CTs in HU never are; the rules are strict enough that none of the
    MR scans in ``../shared/data`` (uint8 0-255 and uint16) is flagged, even with its intensities scaled
    so that its tissue lands on the offset CT's soft-tissue peak.
    """
    a = _sample(image)
    numeric = np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    if a.size == 0 or a.dtype == bool or not numeric:
        return None
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        return None          # refused elsewhere, with its own message
    lo, hi = float(a.min()), float(a.max())
    if lo < 0:
        return None
    return _windowed_uint8(a, lo, hi) or _offset_ct(a)


def _windowed_uint8(a: np.ndarray, lo: float, hi: float) -> str | None:
    """0-255 integers with a large fraction clipped to 0 and a spike of clipped voxels at 255."""
    if lo != 0 or hi != 255:
        return None
    if np.issubdtype(a.dtype, np.floating) and not np.array_equal(a, np.round(a)):
        return None
    counts = np.bincount(a.astype(np.uint8, copy=False).ravel(), minlength=256)
    low, high = counts[0] / a.size, counts[255] / a.size
    spike = counts[255] / max(counts[250:255].mean(), 1.0)
    if low < MIN_CLIPPED_LOW or high < MIN_CLIPPED_HIGH or spike < HIGH_SPIKE:
        return None
    return (f"the image looks like a CT windowed for display into 0-255 ({low:.0%} of the voxels clipped to 0, "
            f"{high:.1%} to 255), not Hounsfield units: use the original CT (DICOM or a file in HU), not an "
            "exported picture")


def _offset_ct(a: np.ndarray) -> str | None:
    """The histogram of a CT shifted by +1024: air near 0, a dominant fat / soft-tissue peak at 850-1250 with
    almost nothing between it and air (450-850), and some bone above it."""
    v = a.astype(np.float32, copy=False)
    n = v.size
    air = np.count_nonzero(v <= AIR_MAX) / n
    soft = np.count_nonzero((v >= SOFT[0]) & (v <= SOFT[1])) / n
    gap = np.count_nonzero((v >= GAP[0]) & (v < GAP[1])) / n
    bone = np.count_nonzero(v > BONE_MIN) / n
    if not MIN_AIR <= air < 1.0 or bone < MIN_BONE:
        return None
    if soft < MIN_SOFT_SHARE * (1.0 - air) or gap > MAX_GAP_RATIO * soft:
        return None
    body = v[v > AIR_MAX]
    counts, edges = np.histogram(body, bins=np.arange(AIR_MAX, body.max() + 2 * PEAK_BIN, PEAK_BIN))
    peak = float(edges[int(np.argmax(counts))]) + PEAK_BIN / 2
    if not SOFT[0] <= peak <= SOFT[1]:
        return None
    return (f"the image looks like a CT stored without its rescale (values = HU + {OFFSET}?): nothing is negative, "
            f"{air:.0%} of the voxels lie near 0 (air at -1000 HU) and the tissue peak is at {peak:.0f} (fat and soft "
            f"tissue, -100 ... +50 HU); store it in Hounsfield units (apply the rescale slope / intercept: subtract "
            f"{OFFSET})")
