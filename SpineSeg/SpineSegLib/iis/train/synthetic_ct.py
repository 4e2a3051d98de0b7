"""CT-like training images synthesised from vertebra label maps (no CT needed).

No large labelled CT set can be reached from this project's machines, but manual vertebra masks can
(VerSe, ``../shared/data/masks/verse``). :func:`synthesize_ct` paints a plausible CT around such a
mask, with HU values from the CT literature and random variation per image:

* vertebrae: cancellous bone 120-300 HU with texture, a cortical shell (outer 1-2 mm) of 450-900 HU;
* the body: an ellipse of soft tissue (20-60 HU) around and anterior to the spine, a subcutaneous fat
  layer (-120 to -80 HU), air (-1000 HU) outside;
* at thoracic levels: both lungs (-880 to -780 HU) and ribs (a cortical ring along the outer lung
  wall, every 20-30 mm), the bony structures next to the spine that the network must not take for
  vertebrae; from T4 down a descending aorta left-anterior of the body, with or without contrast;
* then Gaussian blur (sigma 0.5-1.0 mm) and noise (sigma 8-25 HU).

Everything is built on a 1 mm canonical (LPS) grid covering the mask's extent plus a margin. It is
a crude phantom: it teaches shapes, the memory mechanism and the HU range of bone, not the look of
real anatomy; see the CT model card for what a network trained on it does on real CT.

The dataset kind ``synthetic-ct`` (``iis.train.readers``) reads a folder of label maps (VerSe names or
any ``*.nii.gz``) and returns ``variants`` synthetic cases per map, written once into a cache folder
(``$SPINESEG_CACHE`` or ``~/.cache/spineseg``) keyed by the map's content, the seed and this
module's version.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.iis.train.synthetic_ct import synthesize_ct
    ct, labels = synthesize_ct(read_image("sub-verse004_seg-vert_msk.nii.gz"), seed=3)
    write_image(ct, "synthetic_ct.nii.gz")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import sha256_of
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.resample import resample_to_spacing
from SpineSegLib.core.orientation import to_canonical

VERSION = 1
THORACIC = range(8, 20)        # T1-T12 (VerSe ids)


def _ellipse(shape_yx, centre, axes):
    yy, xx = np.ogrid[: shape_yx[0], : shape_yx[1]]
    return ((yy - centre[0]) / axes[0]) ** 2 + ((xx - centre[1]) / axes[1]) ** 2


def synthesize_ct(labels: Image, seed: int = 0, margin_mm: float = 60.0) -> tuple[Image, Image]:
    """A synthetic CT (int16 HU) and its vertebra labels, both on a 1 mm canonical LPS grid."""
    rng = np.random.default_rng(seed)
    lab = to_canonical(resample_to_spacing(labels, (1.0, 1.0, 1.0), label=True)).image
    arr = lab.array.astype(np.uint8)
    arr[(arr > 28) | (arr == 26) | (arr == 27)] = 0
    if not arr.any():
        raise InputError("synthetic CT: the label map holds no vertebra")
    # pad in y/x so the body fits; z stays (the mask's extent is the scan's extent)
    m = int(margin_mm)
    arr = np.pad(arr, ((0, 0), (m, m), (m, m)))
    origin = np.asarray(lab.origin) - lab.direction @ np.array([m, m, 0.0])
    nz, ny, nx = arr.shape
    spine = arr > 0
    ct = np.full(arr.shape, -1000.0, np.float32)
    near_spine = ndimage.distance_transform_edt(~spine) < rng.uniform(4, 10)   # lungs keep away from bone

    # body ellipse per slice, centred anterior of the spine
    zs = np.nonzero(spine.any(axis=(1, 2)))[0]
    cy_all, cx_all = {}, {}
    for z in zs:
        yy, xx = np.nonzero(spine[z])
        cy_all[z], cx_all[z] = yy.mean(), xx.mean()
    zi = np.arange(nz)
    cy = np.interp(zi, zs, [cy_all[z] for z in zs])
    cx = np.interp(zi, zs, [cx_all[z] for z in zs])
    level = np.interp(zi, zs, [np.median(arr[z][arr[z] > 0]) for z in zs])   # VerSe id along z
    neck = level < 8
    thorax = (level >= THORACIC.start) & (level < THORACIC.stop)
    ap = rng.uniform(85, 120)
    lr = rng.uniform(130, 175)
    soft = rng.uniform(20, 60)
    fat = rng.uniform(-120, -80)
    fat_mm = rng.uniform(8, 25)
    lung_hu = rng.uniform(-880, -780)
    contrast = rng.random() < 0.5
    aorta_hu = rng.uniform(150, 350) if contrast else rng.uniform(35, 50)
    rib_step = rng.uniform(20, 30)
    rib_phase = rng.uniform(0, rib_step)
    for z in range(nz):
        a_ap = 45.0 if neck[z] else ap
        a_lr = 55.0 if neck[z] else lr
        # the spine lies in the posterior part of the body: body centre ~0.45 AP-axes anterior of it
        centre = (cy[z] - (0.15 if neck[z] else 0.3) * a_ap, cx[z])
        e = _ellipse((ny, nx), centre, (a_ap, a_lr))
        body = e <= 1.0
        inner = _ellipse((ny, nx), centre, (a_ap - fat_mm, a_lr - fat_mm)) <= 1.0
        sl = ct[z]
        sl[body] = fat
        sl[inner] = soft + rng.normal(0, 4)
        if thorax[z]:
            for side in (-1, 1):   # lungs left and right of the spine, anterior-lateral
                lc = (cy[z] - 0.3 * a_ap, cx[z] + side * 0.5 * a_lr)
                le = _ellipse((ny, nx), lc, (0.6 * a_ap, 0.36 * a_lr))
                lung = (le <= 1.0) & inner & ~near_spine[z]
                sl[lung] = lung_hu
                # ribs: a cortical ring along the outer lung wall at rib levels
                if ((z - rib_phase) % rib_step) < rng.uniform(7, 10):
                    ring = (le > 1.0) & (le <= 1.25) & inner & ((np.arange(ny)[:, None] - cy[z]) < 0.3 * a_ap)
                    sl[ring] = rng.uniform(350, 650)
        if level[z] >= 11:   # descending aorta from ~T4 down: left-anterior of the vertebral body
            ac = (cy[z] - rng.uniform(22, 30), cx[z] + rng.uniform(12, 22))
            sl[_ellipse((ny, nx), ac, (11, 11)) <= 1.0] = aorta_hu
    # vertebrae: cancellous bone with texture, cortical shell
    texture = ndimage.gaussian_filter(rng.normal(0, 1, arr.shape).astype(np.float32), 1.2)
    texture /= texture.std() + 1e-6
    cancellous = rng.uniform(120, 300)
    cortical = rng.uniform(450, 900)
    depth = ndimage.distance_transform_edt(spine)
    shell = rng.uniform(1.0, 2.0)
    bone = np.where(depth <= shell, cortical, cancellous + 35 * texture)
    ct[spine] = bone[spine]
    # discs and canal stay soft tissue; blur and noise
    ct = ndimage.gaussian_filter(ct, rng.uniform(0.5, 1.0))
    ct += rng.normal(0, rng.uniform(8, 25), ct.shape).astype(np.float32)
    ct = np.clip(ct, -1024, 3071).astype(np.int16)
    geo = dict(spacing=(1.0, 1.0, 1.0), origin=tuple(origin), direction=lab.direction)
    return Image(ct, **geo), Image(arr, **geo)


def cache_root() -> Path:
    return Path(os.environ.get("SPINESEG_CACHE") or Path.home() / ".cache" / "spineseg") / "synthetic-ct"


def synthetic_cases(root, variants: int = 3, seed: int = 0) -> list[tuple[str, Path, Path]]:
    """``(name, image, label)`` for ``variants`` synthetic CTs per label map under ``root`` (made once)."""
    root = Path(root)
    maps = sorted(p for p in root.glob("*.nii*") if "msk" in p.name or "seg" in p.name or "label" in p.name)
    if not maps:
        raise InputError(f"no label maps (*msk*.nii.gz, *seg*.nii.gz, *label*.nii.gz) in {root}")
    out = []
    for path in maps:
        digest = sha256_of(path)[:12]
        stem = path.name.split(".")[0].replace("_seg-vert_msk", "").replace("_dir-ax", "")
        for k in range(int(variants)):
            folder = cache_root() / f"{stem}-s{seed}-v{k}-{digest}-g{VERSION}"
            image, label = folder / "image.nii.gz", folder / "vertebrae.nii.gz"
            if not (image.is_file() and label.is_file()):
                folder.mkdir(parents=True, exist_ok=True)
                ct, lab = synthesize_ct(read_image(path), seed=seed * 1000 + k + int(digest[:6], 16) % 997)
                write_image(lab, label, force=True)
                write_image(ct, image, force=True)
            out.append((f"{stem}-v{k}", image, label))
    return out
