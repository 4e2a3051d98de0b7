"""Augmentation of IIS training patches (Lessmann et al. 2019, section 3.6; SPIDER baseline).

As the public baseline does, each patch gets ONE of: Gaussian noise (p = 0.25), Gaussian smoothing
(p = 0.25) or an elastic deformation (p = 0.5) -- with ``exclusive = False`` they are drawn
independently instead -- and then, with p = 0.05, a field-of-view crop: the image beyond a random
axial plane (top or bottom of the patch, up to half its height) becomes padding and the labels
there 0, so a vertebra cut by it becomes incomplete (``PatchSample.crop_retained``).

* elastic: one random smooth displacement field (uniform noise smoothed with a Gaussian whose
  sigma is drawn from ``elastic_sigma_mm``, scaled to an RMS displacement per axis drawn from
  ``elastic_rms_mm``; optional rotation / scaling about the patch centre) applied with
  ``scipy.ndimage.map_coordinates`` to the image (linear) and to every label patch (nearest
  neighbour), so image, memory, targets and the weights derived from them agree. (MONAI's
  ``Rand3DElasticd`` does the same, but its full-resolution smoothing costs 0.1-0.5 s per 48x48x32
  patch on one CPU core, more than a training step; this costs ~10 ms.);
* noise: zero-mean Gaussian, standard deviation uniform in ``[0, noise_std]`` (normalised units;
  default: 140 HU as the baseline, i.e. 0.14 for CT scaled by 1/1000 and 0.07 for MR in [-1, 1]);
* smoothing: ``scipy.ndimage.gaussian_filter`` with sigma = ``|N(0, 1)| * blur_sigma_voxels``, skipped below
  0.1 voxel (as the baseline).

Intensity domain randomisation (``dr_*`` options, all off by default; every piece has its own
probability and they are drawn independently, after the geometric augmentation above). MR
contrast depends on the scanner, the sequence and its parameters, so a network trained on one
source's contrast meets another source's as an unseen domain; randomising the intensities of the
training patches far beyond the sources at hand (Billot et al., SynthSeg, Med. Image Anal. 2023:
random contrasts, bias fields, resolutions; Tobin et al. 2017, domain randomisation) teaches the
shapes rather than one contrast. On the normalised intensities (MR: [-1, 1] after the 5th-95th
percentile mapping):

* ``dr_bias``: a smooth multiplicative bias field, ``exp`` of Gaussian noise on a 3 x 3 x 3 grid
  (standard deviation ``dr_bias_strength``) interpolated (cubic) to the patch, applied to the
  intensities shifted onto [0, 1];
* ``dr_remap``: a random intensity curve through ``dr_remap_points`` + 1 control points on [-1, 1]
  (monotone cubic, ``scipy.interpolate.PchipInterpolator``): with probability ``dr_remap_monotonic``
  increasing (random positive increments: contrast stretched here, compressed there), otherwise
  with random values at the control points (tissues trade places; Billot et al.'s random
  contrasts);
* ``dr_gamma``: ``u ** g`` on [0, 1] with ``log g`` uniform in ``[-dr_gamma_log, dr_gamma_log]``
  (darker / brighter scans);
* ``dr_invert``: ``-x``: T1 vs T2-like contrast (discs, fluid and fat trade brightness);
* ``dr_lowres``: thick slices / a coarser acquisition: along one axis (the left-right, sagittal
  slice axis with probability 1/2, else one of the other two) the patch is averaged over a slab of
  ``f`` voxels, ``f`` uniform in ``[1, dr_lowres_factor]``, sampled every ``f`` voxels and
  interpolated back (linear);
* ``dr_blur``: Gaussian smoothing, sigma uniform in ``[0, dr_blur_sigma_voxels]`` per axis
  (anisotropic);
* ``dr_noise``: Gaussian noise, standard deviation uniform in ``[0, dr_noise_std]``.

The curve, bias, gamma and inversion results are clipped to [-1, 1], the range the inference's
intensity mapping produces. Padding (``config.pad_value``) stays padding: noise, smoothing and
every intensity transform leave it untouched. With a probability at 0 no random number is drawn
for that piece, so recipes without ``dr_*`` options give exactly the patches they gave before.
Every random number comes from the ``numpy.random.Generator`` passed in, so a patch is a function
of the seed alone.

Console use::

    from SpineSegLib.iis.train.augment import Augmenter, AugmentOptions
    aug = Augmenter(config, AugmentOptions())
    sample = aug(sample, rng)          # a sampling.PatchSample, changed in place and returned
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from SpineSegLib.iis.model.config import IISConfig


# the intensity domain randomisation, in the order applied
DR_STEPS = ("dr_lowres", "dr_bias", "dr_remap", "dr_gamma", "dr_invert", "dr_blur", "dr_noise")


@dataclass
class AugmentOptions:
    noise: float = 0.25
    blur: float = 0.25
    elastic: float = 0.5
    crop: float = 0.05
    exclusive: bool = True                      # one of noise / blur / elastic per patch (baseline)
    noise_std: float | None = None              # None: 140 HU equivalent for the modality
    blur_sigma_voxels: float = 0.5
    elastic_sigma_mm: tuple = (8.0, 16.0)
    elastic_rms_mm: tuple = (0.5, 2.5)
    rotate_deg: float = 0.0                     # with the elastic deformation: uniform +-rotate_deg per axis
    scale: float = 0.0                          # ... and +-scale relative size change per axis
    crop_max_fraction: float = 0.5              # the crop removes at most this fraction of the patch height
    # intensity domain randomisation (module docstring); probabilities, all off by default
    dr_bias: float = 0.0
    dr_bias_strength: float = 0.3               # std of the log field on its 3x3x3 grid
    dr_remap: float = 0.0
    dr_remap_monotonic: float = 0.5             # share of increasing curves
    dr_remap_points: int = 5
    dr_gamma: float = 0.0
    dr_gamma_log: float = 0.5                   # log gamma uniform in [-0.5, 0.5]: gamma 0.61-1.65
    dr_invert: float = 0.0
    dr_lowres: float = 0.0
    dr_lowres_factor: float = 3.0               # slab / sampling step up to 3 voxels (6 mm at 2 mm)
    dr_blur: float = 0.0
    dr_blur_sigma_voxels: float = 1.0
    dr_noise: float = 0.0
    dr_noise_std: float = 0.1

    def __post_init__(self):
        self.elastic_sigma_mm = tuple(float(v) for v in self.elastic_sigma_mm)
        self.elastic_rms_mm = tuple(float(v) for v in self.elastic_rms_mm)
        for name in ("noise", "blur", "elastic", "crop", "dr_remap_monotonic", *DR_STEPS):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augmentation probability {name} must lie in [0, 1]")
        if self.exclusive and self.noise + self.blur + self.elastic > 1.0 + 1e-9:
            raise ValueError("with exclusive augmentation, noise + blur + elastic must not exceed 1")
        if int(self.dr_remap_points) < 2 or self.dr_lowres_factor < 1.0:
            raise ValueError("dr_remap_points must be at least 2 and dr_lowres_factor at least 1")
        self.dr_remap_points = int(self.dr_remap_points)

    @classmethod
    def none(cls) -> "AugmentOptions":
        return cls(noise=0.0, blur=0.0, elastic=0.0, crop=0.0)


class Augmenter:
    def __init__(self, config: IISConfig, options: AugmentOptions | None = None):
        self.config = config
        self.options = options or AugmentOptions()
        self.voxel = np.asarray(config.voxel_size_mm, float)
        if self.options.noise_std is not None:
            self.noise_std = float(self.options.noise_std)
        elif config.intensity.get("kind") == "ct":
            self.noise_std = 140.0 / float(config.intensity.get("scale", 1000.0))
        else:
            self.noise_std = 140.0 / 4096.0 * 2.0

    # -- the pieces ---------------------------------------------------------------------------
    def displacement(self, shape, rng: np.random.Generator) -> np.ndarray:
        """A random smooth displacement field ``[3, Z, Y, X]`` in voxels (module docstring).

        Uniform noise on a grid coarser by about sigma / 2 is smoothed with ``gaussian_filter``,
        interpolated to the patch and scaled to the drawn RMS displacement (mm, per axis).
        """
        o = self.options
        sigma_mm = rng.uniform(*o.elastic_sigma_mm)
        rms_mm = rng.uniform(*o.elastic_rms_mm)
        sigma_vox = sigma_mm / self.voxel
        step = np.maximum(1, np.floor(sigma_vox / 2.0)).astype(int)
        coarse = [int(np.ceil((s - 1) / k)) + 1 for s, k in zip(shape, step)]
        grid = np.meshgrid(*[np.arange(s) / k for s, k in zip(shape, step)], indexing="ij")
        field = np.empty((3, *shape), np.float32)
        for axis in range(3):
            noise = rng.uniform(-1.0, 1.0, coarse)
            smooth = ndimage.gaussian_filter(noise, sigma_vox / step, mode="reflect")
            field[axis] = ndimage.map_coordinates(smooth, grid, order=1, mode="nearest")
        rms = float(np.sqrt(np.mean(field ** 2)))
        if rms > 0:
            field *= (rms_mm / rms) / self.voxel[:, None, None, None]
        return field

    def elastic(self, sample, rng: np.random.Generator) -> None:
        o = self.options
        shape = sample.image.shape
        field = self.displacement(shape, rng)
        centre = (np.asarray(shape, float) - 1) / 2.0
        grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
        if o.rotate_deg or o.scale:
            from scipy.spatial.transform import Rotation

            angles = rng.uniform(-o.rotate_deg, o.rotate_deg, 3)
            scales = 1.0 + rng.uniform(-o.scale, o.scale, 3)
            # in mm, about the patch centre; output voxel -> source voxel
            matrix = Rotation.from_euler("zyx", angles, degrees=True).as_matrix() @ np.diag(1.0 / scales)
            matrix = np.diag(1.0 / self.voxel) @ matrix @ np.diag(self.voxel)
            offsets = (grid.reshape(3, -1).T - centre) @ matrix.T + centre
            grid = offsets.T.reshape(grid.shape).astype(np.float32)
        coords = grid + field
        image = ndimage.map_coordinates(sample.image, coords, order=1, mode="nearest").astype(np.float32)
        # interpolation inside the padding returns the pad value up to rounding: make it exact
        image[np.abs(image - self.config.pad_value) < 1e-4] = self.config.pad_value
        sample.image = image
        sample.instances = ndimage.map_coordinates(sample.instances, coords, order=0, mode="nearest")
        if sample.discs is not None:
            sample.discs = ndimage.map_coordinates(sample.discs, coords, order=0, mode="nearest")
            sample.canal = ndimage.map_coordinates(sample.canal.astype(np.uint8), coords, order=0, mode="nearest") > 0
        sample.augmentations.append("elastic")

    def noise(self, sample, rng: np.random.Generator) -> None:
        pad = sample.image == self.config.pad_value
        std = rng.uniform(0.0, self.noise_std)
        noisy = sample.image + rng.normal(0.0, std, sample.image.shape).astype(np.float32)
        sample.image = np.where(pad, sample.image, noisy).astype(np.float32)
        sample.augmentations.append("noise")

    def blur(self, sample, rng: np.random.Generator) -> None:
        sigma = abs(rng.standard_normal()) * self.options.blur_sigma_voxels
        if sigma <= 0.1:
            return
        pad = sample.image == self.config.pad_value
        smooth = ndimage.gaussian_filter(sample.image, sigma=sigma, mode="nearest")
        sample.image = np.where(pad, sample.image, smooth).astype(np.float32)
        sample.augmentations.append("blur")

    def crop(self, sample, rng: np.random.Generator) -> None:
        depth = sample.image.shape[0]
        n = int(rng.integers(1, max(2, int(depth * self.options.crop_max_fraction) + 1)))
        top = rng.random() < 0.5
        region = np.s_[depth - n:] if top else np.s_[:n]      # z grows superiorly (canonical LPS)
        before = int(np.count_nonzero(sample.instances == sample.target_index)) if sample.target_index else 0
        sample.image[region] = self.config.pad_value
        sample.instances[region] = 0
        if sample.discs is not None:
            sample.discs[region] = 0
            sample.canal[region] = False
        if sample.target_index and before:
            after = int(np.count_nonzero(sample.instances == sample.target_index))
            sample.crop_retained *= after / before
        sample.augmentations.append("crop-top" if top else "crop-bottom")

    # -- all of it ----------------------------------------------------------------------------
    def __call__(self, sample, rng: np.random.Generator):
        o = self.options
        if o.exclusive:
            r = rng.random()
            if r < o.noise:
                self.noise(sample, rng)
            elif r < o.noise + o.blur:
                self.blur(sample, rng)
            elif r < o.noise + o.blur + o.elastic:
                self.elastic(sample, rng)
        else:
            if rng.random() < o.elastic:
                self.elastic(sample, rng)
            if rng.random() < o.noise:
                self.noise(sample, rng)
            if rng.random() < o.blur:
                self.blur(sample, rng)
        for step in DR_STEPS:
            p = getattr(o, step)
            if p and rng.random() < p:
                self.intensity(sample, step, rng)
        if rng.random() < o.crop:
            self.crop(sample, rng)
        return sample

    # -- intensity domain randomisation (module docstring) -------------------------------------
    def intensity(self, sample, step: str, rng: np.random.Generator) -> None:
        """Apply the domain-randomisation ``step`` (a name of :data:`DR_STEPS`) to ``sample``."""
        pad = sample.image == self.config.pad_value
        changed = getattr(self, "_" + step)(sample.image, rng)
        if step not in ("dr_noise", "dr_blur", "dr_lowres"):
            changed = np.clip(changed, -1.0, 1.0)
        sample.image = np.where(pad, sample.image, changed).astype(np.float32)
        sample.augmentations.append(step[3:])

    def _dr_bias(self, image, rng):
        coarse = rng.normal(0.0, self.options.dr_bias_strength, (3, 3, 3))
        zoom = [s / 3.0 for s in image.shape]
        field = np.exp(ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True))
        return (np.clip(image, -1.0, 1.0) + 1.0) * field[tuple(slice(0, s) for s in image.shape)] - 1.0

    def _dr_remap(self, image, rng):
        from scipy.interpolate import PchipInterpolator

        o = self.options
        n = o.dr_remap_points + 1
        if rng.random() < o.dr_remap_monotonic:
            y = np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 1.0, n - 1))])
            y = y / y[-1] * 2.0 - 1.0
        else:
            y = rng.uniform(-1.0, 1.0, n)
        curve = PchipInterpolator(np.linspace(-1.0, 1.0, n), y)
        return curve(np.clip(image, -1.0, 1.0))

    def _dr_gamma(self, image, rng):
        g = np.exp(rng.uniform(-self.options.dr_gamma_log, self.options.dr_gamma_log))
        return ((np.clip(image, -1.0, 1.0) + 1.0) / 2.0) ** g * 2.0 - 1.0

    def _dr_invert(self, image, rng):
        return -image

    def _dr_lowres(self, image, rng):
        axis = 2 if rng.random() < 0.5 else int(rng.integers(0, 2))
        f = rng.uniform(1.0, self.options.dr_lowres_factor)
        n = image.shape[axis]
        slab = ndimage.uniform_filter1d(image, size=max(1, int(round(f))), axis=axis, mode="nearest")
        coarse = _along(slab, axis, np.arange(0.0, n - 1 + 1e-6, f))       # a sample every f voxels
        return _along(coarse, axis, np.arange(n) / f)                         # ... and back, in place

    def _dr_blur(self, image, rng):
        sigma = rng.uniform(0.0, self.options.dr_blur_sigma_voxels, 3)
        return ndimage.gaussian_filter(image, sigma=sigma, mode="nearest")

    def _dr_noise(self, image, rng):
        std = rng.uniform(0.0, self.options.dr_noise_std)
        return image + rng.normal(0.0, std, image.shape).astype(np.float32)


def _along(image: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """``image`` resampled (linear) at fractional ``positions`` along ``axis``, the other axes kept."""
    coords = np.meshgrid(*[positions if a == axis else np.arange(s, dtype=float)
                           for a, s in enumerate(image.shape)], indexing="ij")
    return ndimage.map_coordinates(image, coords, order=1, mode="nearest")
