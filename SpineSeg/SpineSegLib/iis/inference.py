"""Vertebra segmentation and labelling with a trained IIS network: the whole pipeline in one call.

``segment_vertebrae`` checks the input (modality, size), loads the model, brings the scan onto the
model grid, runs the traversal (``traversal.py``), maps every accepted vertebra's probabilities
back onto the INPUT's grid (linear interpolation, then 0.5; the first vertebra to claim a voxel
keeps it), refines CT vertebrae (surface voxels below 200 HU are peeled, see
:func:`peel_dark_surface`), and names the vertebrae with the maximum-likelihood label sequence
(``labelling.py``). Output ids are those of ``SpineSegLib.labels`` (VerSe ids).

SPIDER variant (vertebra + disc + canal network): discs get ``100 + id`` of the vertebra just
above them (the VerSe / TPTBox convention, e.g. 124 = the L5/S1 disc; SPIDER's own files number
vertebrae 1-25 from the bottom, discs 201-225 and the canal 100), the spinal canal gets
:data:`CANAL_LABEL` (61, the TPTBox sub-region id). The combined map holds vertebrae first, then
discs and canal where no vertebra is; ``IISResult.discs`` / ``.canal`` hold them separately.

Input checks: an image shorter than 20 mm along an axis is refused (smaller than one patch is
fine: patches are padded); CT vs MR is guessed from the intensities (:func:`guess_modality`) and a
model of the other modality is refused unless ``check_modality=False``. A weights file whose
metadata says ``"label_head_trained": false`` (e.g. trained on SPIDER without anatomical labels)
makes the traversal ignore the regressed label, and the label sequence anchors at L5.

Console use::

    from SpineSegLib.image import read_image, write_image
    from SpineSegLib.iis.inference import segment_vertebrae
    result = segment_vertebrae(read_image("ct.nii.gz"), "Resources/Models/iis-ct.pt", device="auto")
    write_image(result.labels, "vertebrae.nii.gz")
    for v in result.instances:
        print(v.id, v.name, v.complete, round(v.volume_ml, 1))
    result.write_table("vertebrae.tsv")
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from scipy import ndimage

from ..errors import InputError, NoSpineFoundError, OutputExistsError, SpineSegError
from ..image import Image, resample_to_grid
from ..labels import name_of
from ..progress import Cancelled, Progress
from .config import IISConfig
from .labelling import LabelFit, fit_label_sequence
from .preprocess import ModelGrid, to_model_grid
from .traversal import IISTraversal, TraversalOptions, TraversalResult, TraversalStep

log = logging.getLogger(__name__)

MIN_EXTENT_MM = 20.0          # smaller than about one vertebra along an axis: refused
DISC_LABEL_OFFSET = 100       # disc below vertebra v: 100 + v
CANAL_LABEL = 61              # spinal canal (TPTBox sub-region id)
_SIX = ndimage.generate_binary_structure(3, 1)


# -- input checks -----------------------------------------------------------------------------
def guess_modality(image: Image) -> tuple[str, str]:
    """``("ct" | "mr", reason)`` from the intensities alone.

    CT holds Hounsfield units: air at -1000, fat around -100, values within -3100 ... 32767. MR
    magnitude images are never negative. CT when the values lie in the HU range and either at
    least 5 % of the voxels are air (-1100 to -850 HU) or at least 2 % are at or below -80 HU
    with a spread of at least 300 between the 0.5th and 99.5th percentiles (a crop inside the
    body: fat, soft tissue, bone; z-scored MR, also negative, spans only a few units).
    """
    a = np.asarray(image.array)
    if a.size > 4_000_000:  # a regular subsample is plenty for these fractions
        step = int(math.ceil((a.size / 4_000_000) ** (1 / 3)))
        a = a[::step, ::step, ::step]
    a = a.astype(np.float32, copy=False)
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


def check_extent(image: Image, min_mm: float = MIN_EXTENT_MM) -> None:
    """Refuse a volume shorter than ``min_mm`` (about one vertebra) along any axis."""
    extent = np.asarray(image.size) * np.asarray(image.spacing)
    if (extent < min_mm).any():
        dims = " x ".join(f"{e:.1f}" for e in extent)
        vox = " x ".join(str(s) for s in image.size)
        raise InputError(f"the image is {dims} mm ({vox} voxels): too small for vertebra segmentation, which "
                         f"needs at least {min_mm:.0f} mm (about one vertebra) along every axis")


def start_point_from_centerline(points_lps, direction: str = "up") -> tuple:
    """The centerline point where the traversal should begin: the lowest (``up``) or highest (``down``)."""
    pts = np.asarray(points_lps, dtype=float).reshape(-1, 3)
    if not len(pts):
        raise InputError("the centerline has no points")
    row = int(np.argmin(pts[:, 2]) if direction == "up" else np.argmax(pts[:, 2]))
    return tuple(float(v) for v in pts[row])


def centerline_start_point(image: Image, direction: str = "up") -> tuple:
    """Start point from the classical pipeline's spine centerline (CT; Revy et al.): its lowest
    point for an upward traversal, its highest for a downward one."""
    from ..classical import segment_spine

    result = segment_spine(image)
    return start_point_from_centerline(result.centerline_curve_lps, direction)


# -- results -----------------------------------------------------------------------------------
@dataclass
class InstanceRecord:
    """One vertebra of the result (also those kept only in the traversal's memory)."""

    id: int                      # VerSe id after the label sequence
    name: str
    traversal_index: int         # 1-based order in which the traversal found it
    regressed_label: float
    completeness: float          # probability of complete visibility
    complete: bool
    in_output: bool              # in IISResult.labels (complete, or kept with keep_incomplete)
    volume_ml: float
    centre_lps: tuple            # centroid, LPS mm
    bbox_ijk: Optional[tuple]    # (i0, j0, k0, i1, j1, k1) inclusive, on the input grid (None: memory only)
    moves: int
    averaged: bool

    def row(self) -> dict:
        return {
            "id": self.id, "name": self.name, "complete": int(self.complete),
            "completeness": f"{self.completeness:.3f}", "regressed_label": f"{self.regressed_label:.2f}",
            "volume_ml": f"{self.volume_ml:.2f}", "in_output": int(self.in_output),
            "centre_x_lps": f"{self.centre_lps[0]:.1f}", "centre_y_lps": f"{self.centre_lps[1]:.1f}",
            "centre_z_lps": f"{self.centre_lps[2]:.1f}", "traversal_index": self.traversal_index,
        }


TABLE_COLUMNS = ("id", "name", "complete", "completeness", "regressed_label", "volume_ml", "in_output",
                 "centre_x_lps", "centre_y_lps", "centre_z_lps", "traversal_index")


@dataclass
class IISResult:
    labels: Image                 # instance label map on the input grid (VerSe ids; SPIDER: + discs, canal)
    instances: list               # InstanceRecord, top to bottom
    steps: list                   # the traversal log: TraversalStep.to_dict() per step
    timings: dict                 # seconds: preprocess, traversal, network, assemble, total
    label_fit: LabelFit
    config: IISConfig
    device: str                   # what ran the network, e.g. "cpu bf16"
    stop_reason: str
    network_passes: int
    warnings: list = field(default_factory=list)
    discs: Optional[Image] = None  # SPIDER: disc map (100 + id of the vertebra above)
    canal: Optional[Image] = None  # SPIDER: canal mask (CANAL_LABEL)

    @property
    def output_instances(self) -> list:
        return [r for r in self.instances if r.in_output]

    def table_rows(self) -> list[dict]:
        return [r.row() for r in self.instances]

    def write_table(self, path, force: bool = False) -> Path:
        """Per-vertebra table; ``.csv`` gives commas, anything else tabs."""
        path = Path(path)
        if path.exists() and not force:
            raise OutputExistsError(f"{path} exists; pass --force (force=True) to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, TABLE_COLUMNS, delimiter="," if path.suffix.lower() == ".csv" else "\t")
            writer.writeheader()
            writer.writerows(self.table_rows())
        tmp.replace(path)
        return path


# -- mapping the traversal's result onto the input grid --------------------------------------------
def _crop_image(grid: Image, offset_zyx, array: np.ndarray) -> Image:
    """``array`` placed at ``offset_zyx`` of ``grid`` as an Image with its own geometry."""
    ijk = [offset_zyx[2], offset_zyx[1], offset_zyx[0]]
    return Image(array, grid.spacing, grid.index_to_lps(ijk), grid.direction)


def probability_on_source(grid: Image, offset_zyx, probability: np.ndarray, source: Image,
                          threshold: float = 0.5) -> tuple[tuple, np.ndarray]:
    """Map a probability crop of the model grid onto ``source``: ``(source slices [k, j, i], mask)``."""
    crop = _crop_image(grid, offset_zyx, probability.astype(np.float32))
    shape = np.asarray(probability.shape)
    corners_zyx = np.array([[z, y, x] for z in (-0.5, shape[0] - 0.5) for y in (-0.5, shape[1] - 0.5)
                            for x in (-0.5, shape[2] - 0.5)]) + np.asarray(offset_zyx)
    lps = grid.index_to_lps(corners_zyx[:, ::-1])
    ijk = source.lps_to_index(lps)
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int), np.asarray(source.size) - 1)
    if (hi < lo).any():
        return tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), dtype=bool)
    size_kji = tuple(int(h - l + 1) for l, h in zip(lo[::-1], hi[::-1]))
    ref = Image(np.zeros(size_kji, dtype=np.uint8), source.spacing, source.index_to_lps(lo), source.direction)
    mapped = resample_to_grid(crop, ref, label=False, default=0.0)
    slices = tuple(slice(int(l), int(h) + 1) for l, h in zip(lo[::-1], hi[::-1]))
    return slices, mapped.array >= threshold


def peel_dark_surface(mask: np.ndarray, hu: np.ndarray, spacing_kji, threshold: float = 200.0,
                      depth_mm: float = 2.0) -> np.ndarray:
    """CT refinement (Lessmann et al. 3.1: "removing voxels below 200 HU from the surface").

    The *surface* is the set of mask voxels with a 6-neighbour outside the mask. Removed are the
    voxels below ``threshold`` HU that are connected (6-neighbourhood, through voxels below the
    threshold) to a dark surface voxel and lie at most ``depth_mm`` from the surface: soft tissue
    and disc the network added around the bone goes, the cortex (above 200 HU) stops the peeling,
    and the depth bound keeps a gap in a thin cortex from hollowing out dark cancellous bone.
    """
    if not mask.any():
        return mask
    surface = mask & ~ndimage.binary_erosion(mask, _SIX, border_value=1)
    dark = mask & (hu < threshold)
    if not (surface & dark).any():
        return mask
    depth = ndimage.distance_transform_edt(~surface, sampling=spacing_kji)
    candidates = dark & (depth <= depth_mm)
    pieces, _ = ndimage.label(candidates, _SIX)
    seeds = np.unique(pieces[surface & candidates])
    seeds = seeds[seeds > 0]
    return mask & ~np.isin(pieces, seeds)


def _bbox_slices(mask: np.ndarray, margin: int, shape) -> tuple:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + 1 + margin, n)) for i, n in zip(idx, shape))


@dataclass
class AssembledOutput:
    instance_map: np.ndarray      # input grid [k, j, i], int16 traversal index (0 = none)
    disc_map: Optional[np.ndarray]  # input grid, int16 traversal index of the vertebra above
    canal: Optional[np.ndarray]     # input grid, bool


def assemble_output(model_grid: ModelGrid, traversal: TraversalResult, hu_threshold: Optional[float] = None,
                    peel_depth_mm: float = 2.0) -> AssembledOutput:
    """Map the output instances (and SPIDER discs / canal) of a traversal onto the input grid.

    Probabilities are interpolated linearly onto the input grid and thresholded at 0.5, in
    traversal order; a voxel belongs to the first vertebra that claims it. With ``hu_threshold``
    (CT) each vertebra's dark surface is peeled (:func:`peel_dark_surface`).
    """
    source, grid = model_grid.source, model_grid.image
    out = np.zeros(source.shape, dtype=np.int16)
    spacing_kji = tuple(reversed(source.spacing))
    hu = np.asarray(source.array) if hu_threshold is not None else None
    for inst in traversal.output_instances:
        slices, mask = probability_on_source(grid, inst.offset, inst.probability, source)
        if not mask.size:
            continue
        region = out[slices]
        region[mask & (region == 0)] = inst.index
    if hu is not None:
        for inst in traversal.output_instances:
            own = out == inst.index
            if not own.any():
                continue
            box = _bbox_slices(own, 1, out.shape)
            kept = peel_dark_surface(own[box], hu[box], spacing_kji, hu_threshold, peel_depth_mm)
            region = out[box]
            region[own[box] & ~kept] = 0
    disc_map = canal = None
    if traversal.disc_memory is not None:
        disc_map = np.zeros(source.shape, dtype=np.int16)
        for inst in traversal.instances:
            if inst.disc_probability is None:
                continue
            slices, mask = probability_on_source(grid, inst.disc_offset, inst.disc_probability, source)
            if mask.size:
                region = disc_map[slices]
                region[mask & (region == 0) & (out[slices] == 0)] = inst.index
        if traversal.canal is not None and traversal.canal.any():
            canal = model_grid.to_source(traversal.canal.astype(np.float32), label=False).array >= 0.5
            canal &= (out == 0) & (disc_map == 0)
        else:
            canal = np.zeros(source.shape, dtype=bool)
    return AssembledOutput(out, disc_map, canal)


# -- the model -----------------------------------------------------------------------------------
def _load(model, expected_modality: Optional[str], expected_sha256: Optional[str] = None):
    from .checkpoint import load_model

    if isinstance(model, (str, Path)):
        net, config, metadata = load_model(model, expected_modality=expected_modality, device="cpu",
                                           expected_sha256=expected_sha256)
        return net, config, metadata
    if isinstance(model, tuple) and len(model) == 2:
        net, config = model
    elif hasattr(model, "config"):
        net, config = model, model.config
    else:
        raise InputError("model must be a weights file path, an IISNet, or a (model, IISConfig) pair")
    if expected_modality is not None and config.modality != expected_modality:
        raise InputError(f"this is a {config.modality.upper()} model, but the input is "
                         f"{expected_modality.upper()}; choose a {expected_modality.upper()} model")
    return net, config, {}


def build_predictor(net, config, device="auto", precision="auto", notify=None):
    """The traversal's ``predict``: a TorchPredictor, on CUDA wrapped to fall back to the CPU."""
    from .predictor import FallbackPredictor, TorchPredictor, resolve_device

    dev = resolve_device(device)
    primary = TorchPredictor(net, config, dev, precision)
    if dev.type != "cuda":
        return primary
    cpu_precision = precision if precision in ("auto", "fp32", "bf16") else "auto"
    return FallbackPredictor(primary, lambda: TorchPredictor(net, config, "cpu", cpu_precision), notify)


# -- the pipeline --------------------------------------------------------------------------------
class IISRun:
    """One segmentation, prepared and steppable: what :func:`segment_vertebrae` does, in pieces.

    The constructor checks the input, loads the model, resamples the scan and sets up the
    traversal (the arguments are those of :func:`segment_vertebrae`); :meth:`steps` runs the
    traversal one network pass at a time (a Slicer panel can show each step's patch box and
    fragment, and pause between them); :meth:`finish` runs what is left and returns the
    :class:`IISResult`.

    Console use::

        run = IISRun(ct, "iis-ct.pt", device="cpu")
        for step in run.steps():
            print(step.index, step.phase, step.event, step.box and step.box.centre_lps)
        result = run.finish()
    """

    def __init__(self, image: Image, model, device: str = "auto", direction: Optional[str] = None,
                 keep_incomplete: bool = False, start_point_lps=None, progress: Optional[Progress] = None, *,
                 check_modality: bool = True, allow_t13: bool = False, allow_l6: bool = False,
                 precision: str = "auto", threads: Optional[int] = None, expected_sha256: Optional[str] = None,
                 predict: Optional[Callable] = None, traversal_options: Optional[dict] = None):
        import torch

        from .predictor import available_cores

        self.started = time.perf_counter()
        self.image = image
        self.progress = progress = progress or Progress()
        self.warnings: list[str] = []
        self.allow_t13, self.allow_l6 = allow_t13, allow_l6
        self.start_point_lps = start_point_lps

        progress.step("checking the input", 0.0)
        check_extent(image)
        modality = reason = None
        if check_modality:
            modality, reason = guess_modality(image)
        try:
            net, config, metadata = _load(model, modality, expected_sha256)
        except InputError as exc:
            if modality is not None and "model, but the input is" in str(exc):
                raise InputError(f"{exc} (the input looks like {modality.upper()}: {reason}; if it is not, turn "
                                 "the modality check off: --no-modality-check / check_modality=False)") from None
            raise
        self.config = config
        direction = direction or config.direction
        if direction not in ("up", "down"):
            raise InputError(f"unknown traversal direction {direction!r} (use 'up' or 'down')")
        if direction != config.direction:
            raise InputError(f"this model was trained to traverse the spine {config.direction}wards; "
                             f"direction {direction!r} needs a model trained for it")
        self.direction = direction

        torch.set_num_threads(int(threads) if threads else available_cores())
        if isinstance(start_point_lps, str):
            if start_point_lps != "centerline":
                raise InputError(f"unknown start point {start_point_lps!r} (give LPS millimetres or 'centerline')")
            if config.modality != "ct":
                raise InputError("a start point from the classical centerline needs a CT; give one in LPS mm")
            progress.step("start point from the classical centerline", 0.01)
            try:
                start_point_lps = centerline_start_point(image, direction)
            except Cancelled:
                raise
            except SpineSegError as exc:   # no spine, or a scan the classical pipeline cannot take (a crop)
                start_point_lps = None
                self.warn(f"no start point from the classical centerline ({exc}); searching instead")
            self.start_point_lps = start_point_lps

        progress.step("resampling to the model grid", 0.02)
        t0 = time.perf_counter()
        self.model_grid = to_model_grid(image, config)
        self.timings = {"preprocess": time.perf_counter() - t0, "traversal": 0.0, "network": 0.0}

        if predict is None:
            predict = build_predictor(net, config, device, precision, notify=self.warn)
        self.predict = predict

        overrides = {}
        if metadata.get("label_head_trained") is False:   # e.g. trained on SPIDER without anatomical labels
            overrides.update(start_min_label=None, accept_min_label=None)
        overrides.update(traversal_options or {})
        overrides.update(keep_incomplete=keep_incomplete, start_lps=start_point_lps, direction=direction)
        self.traversal = IISTraversal(self.model_grid.image, self._timed_predict,
                                      TraversalOptions.from_config(config, **overrides),
                                      patch_size=config.patch_size, pad_value=config.pad_value,
                                      memory_channels=config.memory_channels)
        self._steps = None
        self._result: Optional[IISResult] = None

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)
        self.progress.step(f"warning: {message}", float("nan"))

    @property
    def device(self) -> str:
        describe = getattr(self.predict, "describe", None)
        return describe() if describe else "custom predictor"

    def _timed_predict(self, image_patch, memory_patch):
        t = time.perf_counter()
        try:
            return self.predict(image_patch, memory_patch)
        finally:
            self.timings["network"] += time.perf_counter() - t

    def steps(self):
        """The traversal's steps (:class:`~SpineSegLib.iis.traversal.TraversalStep`), with progress
        and cancellation; calling it again continues where the last call stopped."""
        if self._steps is None:
            self._steps = self._drive()
        return self._steps

    def _drive(self):
        self.progress.step("traversal", 0.05)
        inner = self.traversal.steps()
        while True:
            t0 = time.perf_counter()          # only the traversal's own time, not the caller's pauses
            step = next(inner, None)
            self.timings["traversal"] += time.perf_counter() - t0
            if step is None:
                return
            yield step
            fraction = 0.05 + 0.85 * step.progress
            if step.phase == "converged" and step.accepted is not None:
                self.progress.step(f"traversal: {step.message}", fraction)
            elif step.phase != "done":
                self.progress.step("traversal", fraction)

    def finish(self) -> IISResult:
        """Run the rest of the traversal, map and label the vertebrae: the :class:`IISResult`."""
        if self._result is not None:
            return self._result
        for _ in self.steps():
            pass
        result = self.traversal.result
        config, image = self.config, self.image
        if not result.instances:
            raise NoSpineFoundError(
                f"no vertebra found: the {config.modality.upper()} model searched {result.steps} patches "
                f"({result.stop_reason}) without finding one; is the spine in the field of view"
                + (", and is the start point on a vertebra?" if self.start_point_lps is not None else "?"))

        self.progress.step("mapping the vertebrae onto the input grid", 0.9)
        t0 = time.perf_counter()
        hu_threshold = config.hu_surface_threshold if config.modality == "ct" else None
        assembled = assemble_output(self.model_grid, result, hu_threshold)
        fit = fit_label_sequence([i.label for i in result.instances], [i.complete for i in result.instances],
                                 direction=self.direction, allow_t13=self.allow_t13, allow_l6=self.allow_l6)
        if fit.anchored:
            self.warn("the label head gave no usable labels; vertebrae are numbered upward from L5 (SPIDER convention)")
        ids = dict(zip([i.index for i in result.instances], fit.ids))
        lut = np.zeros(max(ids) + 1, dtype=np.uint8)
        for index, vid in ids.items():
            lut[index] = vid
        labels = lut[assembled.instance_map]
        records = _records(result, assembled.instance_map, ids, self.model_grid)
        discs_image = canal_image = None
        if assembled.disc_map is not None:
            disc_ids = np.where(assembled.disc_map > 0, DISC_LABEL_OFFSET + lut[assembled.disc_map], 0).astype(np.uint8)
            labels = np.where((labels == 0) & (disc_ids > 0), disc_ids, labels)
            labels = np.where((labels == 0) & assembled.canal, CANAL_LABEL, labels).astype(np.uint8)
            discs_image = image.with_array(disc_ids)
            canal_image = image.with_array((assembled.canal * CANAL_LABEL).astype(np.uint8))
        for r in records:
            if r.in_output and r.volume_ml == 0:
                self.warn(f"vertebra {r.name} vanished when mapped onto the input grid")
        if not any(r.in_output for r in records):
            self.warn(f"all {len(records)} vertebrae found are incomplete; none is in the output "
                      "(keep_incomplete=True / --keep-incomplete keeps them, flagged)")
        self.timings["assemble"] = time.perf_counter() - t0
        self.timings["total"] = time.perf_counter() - self.started
        self.progress.done()
        self._result = IISResult(
            labels=image.with_array(labels.astype(np.uint8)), instances=records, steps=result.log,
            timings=dict(self.timings), label_fit=fit, config=config, device=self.device,
            stop_reason=result.stop_reason, network_passes=result.steps, warnings=self.warnings,
            discs=discs_image, canal=canal_image,
        )
        return self._result


def segment_vertebrae(image: Image, model, device: str = "auto", direction: Optional[str] = None,
                      keep_incomplete: bool = False, start_point_lps=None, progress: Optional[Progress] = None,
                      steps_callback: Optional[Callable[[TraversalStep], None]] = None, **options) -> IISResult:
    """Segment and label the vertebrae of ``image`` with an IIS model.

    ``model``: weights file path, an ``IISNet`` or ``(model, IISConfig)``. ``device``: auto | cpu
    | cuda (auto: CUDA when available; a GPU out-of-memory error moves the run to the CPU).
    ``direction``: up | down, default the model's own (a different one is refused: a network
    only knows the direction it was trained for). ``start_point_lps``: a point on the first
    vertebra in traversal direction (e.g. :func:`start_point_from_centerline`), skips the
    search; ``"centerline"`` takes it from the classical pipeline's centerline (CT only; a few
    seconds to half a minute; worth it when the field of view reaches far beyond the spine --
    if the classical pipeline cannot give one, the traversal searches as usual).
    ``steps_callback(step)`` sees every traversal step. Keyword ``options`` (see :class:`IISRun`):
    ``check_modality=False`` accepts an image whose intensities look like the other modality;
    ``allow_t13`` / ``allow_l6`` consider transitional vertebrae in the label sequence;
    ``precision`` auto | fp32 | bf16 | fp16; ``threads`` (default: all available cores);
    ``expected_sha256`` of the weights file; ``predict`` replaces the network (tests, oracles);
    ``traversal_options`` overrides :class:`TraversalOptions` fields.

    Raises ``InputError`` (bad input / model), ``NoSpineFoundError`` (no vertebra found),
    ``Cancelled`` (through ``progress``).
    """
    run = IISRun(image, model, device, direction, keep_incomplete, start_point_lps, progress, **options)
    for step in run.steps():
        if steps_callback is not None:
            steps_callback(step)
    return run.finish()


def _records(result: TraversalResult, instance_map: np.ndarray, ids: dict, model_grid: ModelGrid) -> list:
    source, grid = model_grid.source, model_grid.image
    counts = np.bincount(instance_map.ravel(), minlength=len(result.instances) + 1)
    objects = ndimage.find_objects(instance_map)
    records = []
    for inst in result.instances:
        vid = ids[inst.index]
        box = objects[inst.index - 1] if inst.in_output and inst.index - 1 < len(objects) else None
        if box is not None:
            own = instance_map[box] == inst.index
            com = np.array(ndimage.center_of_mass(own)) + [s.start for s in box]
            centre = source.index_to_lps(com[::-1])
            volume = counts[inst.index] * source.voxel_volume_mm3 / 1000.0
            bbox = (box[2].start, box[1].start, box[0].start, box[2].stop - 1, box[1].stop - 1, box[0].stop - 1)
        else:
            centre = grid.index_to_lps(inst.centroid_voxel()[::-1])
            volume = inst.volume_mm3 / 1000.0 if not inst.in_output else 0.0
            bbox = None
        records.append(InstanceRecord(
            id=int(vid), name=name_of(vid), traversal_index=inst.index, regressed_label=float(inst.label),
            completeness=float(inst.completeness), complete=bool(inst.complete), in_output=bool(inst.in_output),
            volume_ml=float(volume), centre_lps=tuple(float(v) for v in centre),
            bbox_ijk=None if bbox is None else tuple(int(v) for v in bbox),
            moves=int(inst.moves), averaged=bool(inst.averaged)))
    from ..labels import VERTEBRAE
    records.sort(key=lambda r: VERTEBRAE[r.id].order if r.id in VERTEBRAE else r.id)
    return records
