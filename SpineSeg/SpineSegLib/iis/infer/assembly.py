"""From a finished traversal to the output: label maps on the INPUT's grid and one record per vertebra.

What the paper fixes: CT vertebrae are refined by "removing voxels below 200 HU from the surface"
(Lessmann et al. 2019, 3.1; :func:`peel_dark_surface`). What the code chooses: each vertebra's
probabilities are interpolated linearly from the model grid onto the input grid and thresholded at
0.5, in traversal order, and a voxel belongs to the first vertebra that claims it
(:func:`assemble_output`); the traversal indices then become VerSe ids through the fitted label
sequence (:func:`compose_labels`; ``core/label_sequence.py``).

SPIDER variant (vertebra + disc + canal network): discs get ``100 + id`` of the vertebra just
above them (the VerSe / TPTBox convention, e.g. 124 = the L5/S1 disc; SPIDER's own files number
vertebrae 1-25 from the bottom, discs 201-225 and the canal 100), the spinal canal gets
:data:`CANAL_LABEL` (61, the TPTBox sub-region id). The combined map holds vertebrae first, then
discs and canal where no vertebra is; ``IISResult.discs`` / ``.canal`` hold them separately.

Console use::

    from SpineSegLib.iis.infer.assembly import assemble_output, peel_dark_surface
    assembled = assemble_output(model_grid, traversal.result, hu_threshold=200.0)
    assembled.instance_map            # input grid [k, j, i], traversal index per voxel (0 = none)
    result.write_table("vertebrae.tsv")   # result: an IISResult from segment_vertebrae
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from SpineSegLib.core.files import check_force, replaced_atomically
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import VERTEBRAE, name_of
from SpineSegLib.core.resample import resample_to_grid
from SpineSegLib.core.label_sequence import LabelFit
from SpineSegLib.iis.infer.patches import bbox_slices
from SpineSegLib.iis.infer.preprocess import ModelGrid
from SpineSegLib.iis.infer.traversal_records import TraversalResult
from SpineSegLib.iis.model.config import IISConfig

DISC_LABEL_OFFSET = 100       # disc below vertebra v: 100 + v
CANAL_LABEL = 61              # spinal canal (TPTBox sub-region id)
_SIX = ndimage.generate_binary_structure(3, 1)


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
        path = check_force(path, force)
        with replaced_atomically(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, TABLE_COLUMNS, delimiter="," if path.suffix.lower() == ".csv" else "\t")
                writer.writeheader()
                writer.writerows(self.table_rows())
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
    for inst in traversal.output_instances:
        slices, mask = probability_on_source(grid, inst.offset, inst.probability, source)
        if not mask.size:
            continue
        region = out[slices]
        region[mask & (region == 0)] = inst.index
    if hu_threshold is not None:
        _peel_vertebrae(out, traversal, np.asarray(source.array), tuple(reversed(source.spacing)),
                        hu_threshold, peel_depth_mm)
    disc_map = canal = None
    if traversal.disc_memory is not None:
        disc_map, canal = _discs_and_canal(model_grid, traversal, out)
    return AssembledOutput(out, disc_map, canal)


def _peel_vertebrae(out: np.ndarray, traversal: TraversalResult, hu: np.ndarray, spacing_kji,
                    hu_threshold: float, peel_depth_mm: float) -> None:
    """:func:`peel_dark_surface` on every output vertebra of ``out`` (in place)."""
    for inst in traversal.output_instances:
        own = out == inst.index
        if not own.any():
            continue
        box = bbox_slices(own, 1)
        kept = peel_dark_surface(own[box], hu[box], spacing_kji, hu_threshold, peel_depth_mm)
        region = out[box]
        region[own[box] & ~kept] = 0


def _discs_and_canal(model_grid: ModelGrid, traversal: TraversalResult, out: np.ndarray) -> tuple:
    """SPIDER: ``(disc_map, canal)`` on the input grid, where no vertebra of ``out`` is."""
    source, grid = model_grid.source, model_grid.image
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
    return disc_map, canal


# -- naming: traversal indices -> VerSe ids ---------------------------------------------------------
def compose_labels(assembled: AssembledOutput, ids: dict, image: Image) -> tuple:
    """``(labels, discs, canal)`` on ``image``'s grid: the instance map with the VerSe ``ids`` of the
    traversal indices (SPIDER: plus discs and canal where no vertebra is), and for SPIDER the disc map
    (100 + id of the vertebra above) and canal mask on their own (else None)."""
    lut = np.zeros(max(ids) + 1, dtype=np.uint8)
    for index, vid in ids.items():
        lut[index] = vid
    labels = lut[assembled.instance_map]
    discs_image = canal_image = None
    if assembled.disc_map is not None:
        disc_ids = np.where(assembled.disc_map > 0, DISC_LABEL_OFFSET + lut[assembled.disc_map], 0).astype(np.uint8)
        labels = np.where((labels == 0) & (disc_ids > 0), disc_ids, labels)
        labels = np.where((labels == 0) & assembled.canal, CANAL_LABEL, labels).astype(np.uint8)
        discs_image = image.with_array(disc_ids)
        canal_image = image.with_array((assembled.canal * CANAL_LABEL).astype(np.uint8))
    return image.with_array(labels.astype(np.uint8)), discs_image, canal_image


def instance_records(result: TraversalResult, instance_map: np.ndarray, ids: dict, model_grid: ModelGrid) -> list:
    """One :class:`InstanceRecord` per vertebra of the traversal (``ids``: traversal index -> VerSe id),
    measured on the input grid where it is in the output, else on the model grid; top to bottom."""
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
    records.sort(key=lambda r: VERTEBRAE[r.id].order if r.id in VERTEBRAE else r.id)
    return records
