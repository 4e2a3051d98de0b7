"""Cases on the model grid: :func:`prepare_case` reads a :class:`Case`, maps image AND labels onto the
model grid with ``preprocess.to_model_grid`` (exactly what inference sees) and returns a
:class:`PreparedCase` with one instance per vertebra, ordered from the top of the spine down; with
``cache_dir`` the arrays are kept on disk (``.npy``, memory-mapped when read back).

Vertebrae above or below the labelled ones that are visible but not labelled (MyoSegmenTUM's
T12, the thoracic vertebrae above the Zukic labels) would teach the network that a vertebra is
background. ``Case.crop_unlabelled = "above"`` sets the scan above the top labelled vertebra to
padding: above a plane fitted to that vertebra's upper surface, moved up by half the median disc
gap between the labelled vertebrae (2-10 mm), as Lessmann et al. cropped such scans by hand. The
top labelled vertebra stays complete. An unlabelled sacrum is left visible: it
is background for the network.

Completeness: a vertebra counts as complete in the scan when the dataset says so
(``Case.complete``) or, when unknown, when it does not touch the border of the field of view.

Console use::

    from SpineSegLib.iis.train.readers import read_dataset
    from SpineSegLib.iis.train.prepared import prepare_case
    from SpineSegLib.iis.model.config import IISConfig
    cases = read_dataset("myosegmentum", "../shared/data/mr/vertebral-bodies-myosegmentum")
    prepared = prepare_case(cases[0], IISConfig.default_mr(voxel_size_mm=(2, 2, 2), patch_size=(48, 48, 32)))
    prepared.instances.shape, [v.name for v in prepared.vertebrae]   # (112, 112, 38), ['L1', ..., 'L5']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.core.labels import name_of
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.train.readers import Case

CACHE_VERSION = 1


@dataclass
class VertebraInfo:
    """One labelled vertebra of a prepared case (instance ``index`` in ``PreparedCase.instances``)."""

    index: int              # 1 = top-most labelled vertebra of the scan
    key: int                # VerSe id, or a relative rank (growing downwards) when not identified
    identified: bool
    complete: bool          # completely inside the scan (before any patch cropping)
    voxels: int             # on the model grid
    bbox: tuple             # (z0, y0, x0, z1, y1, x1), half-open, model grid
    has_disc: bool = False  # a disc below it is labelled

    @property
    def name(self) -> str:
        return name_of(self.key) if self.identified else f"#{self.index}"


@dataclass
class PreparedCase:
    """A case on the model grid (canonical ``[z, y, x]``, ``config.voxel_size_mm``)."""

    case_id: str
    image: np.ndarray          # normalised intensities (float16 or float32)
    instances: np.ndarray      # uint8: 0 background, i = vertebrae[i - 1], top to bottom
    vertebrae: list            # VertebraInfo, index order
    discs: np.ndarray | None   # uint8: instance index of the vertebra above the disc, 0 none
    canal: np.ndarray | None   # bool
    voxel_size_mm: tuple
    modality: str

    @property
    def shape(self):
        return self.image.shape

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.voxel_size_mm))


def _touches_border(bbox, shape) -> bool:
    return any(b == 0 for b in bbox[:3]) or any(e >= s for e, s in zip(bbox[3:], shape))


def _column_extent(mask: np.ndarray, top: bool) -> np.ndarray:
    """Per (y, x) column the highest (``top``) or lowest z of ``mask``; NaN where the column is empty."""
    has = mask.any(axis=0)
    if top:
        z = mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)
    else:
        z = np.argmax(mask, axis=0)
    return np.where(has, z, np.nan).astype(float)


def _unlabelled_region(instances: np.ndarray, infos, voxel_z_mm: float, side: str) -> np.ndarray:
    """Voxels beyond the labelled vertebrae (module docstring): above a plane fitted to the upper
    surface of the top-most labelled vertebra (``side="above"``) -- or below the lower surface of
    the lowest -- moved out by half the median disc gap between labelled neighbours (2-10 mm)."""
    gaps = []
    for a, b in zip(infos, infos[1:]):          # a above b
        lower_of_a = _column_extent(instances == a.index, top=False)
        upper_of_b = _column_extent(instances == b.index, top=True)
        g = lower_of_a - upper_of_b - 1
        g = g[np.isfinite(g)]
        if g.size:
            gaps.append(float(np.median(g)))
    gap_mm = float(np.median(gaps)) * voxel_z_mm if gaps else 8.0
    margin = float(np.clip(gap_mm / 2.0, 2.0, 10.0)) / voxel_z_mm
    edge = infos[0] if side == "above" else infos[-1]
    surface = _column_extent(instances == edge.index, top=(side == "above"))
    yy, xx = np.nonzero(np.isfinite(surface))
    design = np.column_stack([np.ones(len(yy)), yy, xx])
    coef, *_ = np.linalg.lstsq(design, surface[yy, xx], rcond=None)
    gy, gx = np.mgrid[0:instances.shape[1], 0:instances.shape[2]]
    plane = coef[0] + coef[1] * gy + coef[2] * gx
    z = np.arange(instances.shape[0])[:, None, None]
    if side == "above":
        # never cut into the vertebra itself where the plane fit runs below its surface
        plane = np.fmax(plane, np.nan_to_num(surface, nan=-np.inf))
        return z > plane + margin
    plane = np.fmin(plane, np.nan_to_num(surface, nan=np.inf))
    return z < plane - margin


def prepare_case(case: Case, config: IISConfig, cache_dir=None, mmap: bool = True) -> PreparedCase:
    """Read ``case`` and map it onto ``config``'s model grid (cached under ``cache_dir`` if given)."""
    from SpineSegLib.iis.infer.preprocess import to_model_grid

    if case.image is None:
        raise InputError(f"{case.case_id}: the image file is missing")
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / _cache_key(case, config)
        if (cache_path / "meta.json").exists():
            return _load_cached(cache_path, mmap)

    image, label = _read_pair(case)
    grid = to_model_grid(image, config)
    lab = grid.labels(label).array.astype(np.int32)
    lmap = case.label_map(lab)
    shape = lab.shape

    for v, k in lmap.merged.items():
        lab[lab == v] = _value_of(lmap.vertebrae, k)
    keys = sorted(set(lmap.vertebrae.values()), key=lmap.order)
    present = {k for v, k in lmap.vertebrae.items() if np.any(lab == v)}
    keys = [k for k in keys if k in present]
    if len(keys) > 255:
        raise InputError(f"{case.case_id}: more than 255 vertebrae")
    index_of = {k: i + 1 for i, k in enumerate(keys)}
    lut = np.zeros(int(lab.max()) + 1 if lab.size else 1, np.uint8)
    for v, k in lmap.vertebrae.items():
        if k in index_of and v < len(lut):
            lut[v] = index_of[k]
    instances = lut[np.clip(lab, 0, len(lut) - 1)]

    discs = canal = None
    if config.variant == "spider":
        dlut = np.zeros_like(lut)
        for v, k in lmap.discs.items():
            if k in index_of and v < len(dlut):
                dlut[v] = index_of[k]
        discs = dlut[np.clip(lab, 0, len(dlut) - 1)]
        canal = np.isin(lab, list(lmap.canal)) if lmap.canal else np.zeros(shape, bool)

    infos = _vertebra_infos(instances, keys, lmap.identified, case.complete, discs)
    img = grid.image.array
    vz = config.voxel_size_mm[0]
    for side in ("above", "below"):
        if case.crop_unlabelled in (side, "both") and infos:
            outside = _unlabelled_region(instances, infos, vz, side)
            img[outside] = config.pad_value
            for a in (instances, discs, canal):
                if a is not None:
                    a[outside] = 0
    infos = _vertebra_infos(instances, keys, lmap.identified, case.complete, discs)

    prepared = PreparedCase(case.case_id, img.astype(np.float32), instances, infos, discs, canal,
                            tuple(config.voxel_size_mm), case.modality)
    if cache_path is not None:
        _save_cached(cache_path, prepared)
        return _load_cached(cache_path, mmap)
    return prepared


def _read_pair(case: Case) -> tuple[Image, Image]:
    """The case's image and integer label map, on the same grid (header rounding forgiven)."""
    image = read_image(case.image)
    label = read_image(case.label)
    if image.shape != label.shape:
        raise InputError(f"{case.case_id}: label grid {label.shape[::-1]} does not match the image grid {image.shape[::-1]} "
                         f"({case.label.name} vs {case.image.name})")
    if not image.same_grid(label, tol=1e-3):
        if (np.allclose(image.spacing, label.spacing, rtol=1e-3) and np.allclose(image.direction, label.direction, atol=1e-3)
                and np.allclose(image.origin, label.origin, atol=0.5 * min(image.spacing))):
            label = image.with_array(label.array)     # header rounding differences only
        else:
            raise InputError(f"{case.case_id}: label and image grids differ (spacing {label.spacing} vs {image.spacing}, "
                             f"origin {label.origin} vs {image.origin})")
    if not np.issubdtype(label.array.dtype, np.integer):
        rounded = np.rint(label.array)
        if not np.allclose(rounded, label.array):
            raise InputError(f"{case.case_id}: the label map holds non-integer values")
        label = label.with_array(rounded.astype(np.int32))
    return image, label


def _value_of(vertebrae: dict, key) -> int:
    for v, k in vertebrae.items():
        if k == key:
            return v
    return 0


def _vertebra_infos(instances, keys, identified, complete_flags, discs) -> list[VertebraInfo]:
    objects = ndimage.find_objects(instances, max_label=len(keys))
    counts = np.bincount(instances.ravel(), minlength=len(keys) + 1)
    disc_counts = np.bincount(discs.ravel(), minlength=len(keys) + 1) if discs is not None else None
    infos = []
    for i, key in enumerate(keys, start=1):
        sl = objects[i - 1]
        if sl is None:
            continue
        bbox = tuple(s.start for s in sl) + tuple(s.stop for s in sl)
        complete = not _touches_border(bbox, instances.shape)
        if complete_flags is not None and key in complete_flags:
            complete = complete and bool(complete_flags[key])
        infos.append(VertebraInfo(i, key, identified, complete, int(counts[i]), bbox,
                                  bool(disc_counts is not None and disc_counts[i] > 0)))
    return infos


def _cache_key(case: Case, config: IISConfig) -> str:
    def stamp(p):
        st = os.stat(p)
        return [str(Path(p).resolve()), st.st_size, int(st.st_mtime)]

    payload = json.dumps([CACHE_VERSION, stamp(case.image), stamp(case.label), case.convention, case.crop_unlabelled,
                          case.complete, list(config.voxel_size_mm), config.intensity, config.pad_value, config.variant],
                         sort_keys=True, default=str)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", case.case_id)[-60:]
    return f"{safe}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


def _save_cached(path: Path, prepared: PreparedCase) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "image.npy", prepared.image.astype(np.float16))
    np.save(tmp / "instances.npy", prepared.instances)
    if prepared.discs is not None:
        np.save(tmp / "discs.npy", prepared.discs)
        np.save(tmp / "canal.npy", prepared.canal)
    meta = {"case_id": prepared.case_id, "vertebrae": [asdict(v) for v in prepared.vertebrae],
            "voxel_size_mm": list(prepared.voxel_size_mm), "modality": prepared.modality}
    (tmp / "meta.json").write_text(json.dumps(meta))
    if path.exists():       # another process finished first
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, path)   # a folder: renamed whole, so a reader never sees a half-written entry


def _load_cached(path: Path, mmap: bool) -> PreparedCase:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    mode = "r" if mmap else None
    discs = np.load(path / "discs.npy", mmap_mode=mode) if (path / "discs.npy").exists() else None
    canal = np.load(path / "canal.npy", mmap_mode=mode) if (path / "canal.npy").exists() else None
    infos = [VertebraInfo(**{**v, "bbox": tuple(v["bbox"])}) for v in meta["vertebrae"]]
    return PreparedCase(meta["case_id"], np.load(path / "image.npy", mmap_mode=mode),
                        np.load(path / "instances.npy", mmap_mode=mode), infos, discs, canal,
                        tuple(meta["voxel_size_mm"]), meta["modality"])
