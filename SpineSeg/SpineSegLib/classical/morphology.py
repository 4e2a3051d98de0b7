"""Slice-by-slice (2-D) morphology on canonical ``[z, y, x]`` volumes, with sizes in millimetres.

The classical pipeline works on axial slices, as Revy et al. do; these helpers build 2-D
structuring elements inside 3-D arrays (no links across slices), so one scipy call treats every
slice at once.

Console use::

    from SpineSegLib.classical.morphology import disk_mm, per_slice, fill_small_holes
    closed = ndimage.binary_closing(mask, structure=per_slice(disk_mm(2.0, (0.7, 0.7))))
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# per-slice (2-D) connectivity inside a 3-D array: no links across slices
SLICE_CONNECTIVITY_4 = np.zeros((3, 3, 3), bool)
SLICE_CONNECTIVITY_4[1] = ndimage.generate_binary_structure(2, 1)
SLICE_CONNECTIVITY_8 = np.zeros((3, 3, 3), bool)
SLICE_CONNECTIVITY_8[1] = True


def disk(radius_px_y: float, radius_px_x: float | None = None) -> np.ndarray:
    """A filled ellipse with the given pixel radii (a disk in mm when they follow the spacing)."""
    radius_px_x = radius_px_y if radius_px_x is None else radius_px_x
    ry, rx = max(int(np.floor(radius_px_y)), 0), max(int(np.floor(radius_px_x)), 0)
    y, x = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    return (y / max(radius_px_y, 1e-6)) ** 2 + (x / max(radius_px_x, 1e-6)) ** 2 <= 1.0 + 1e-9


def disk_mm(radius_mm: float, spacing_yx) -> np.ndarray:
    """A 2-D disk of ``radius_mm`` on a grid of ``spacing_yx`` (mm); at least the centre pixel."""
    return disk(radius_mm / float(spacing_yx[0]), radius_mm / float(spacing_yx[1]))


def per_slice(footprint_2d: np.ndarray) -> np.ndarray:
    """A 3-D structuring element that acts on each axial slice alone."""
    return np.asarray(footprint_2d, bool)[None]


def fill_small_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill, slice by slice, the holes of ``mask`` of at most ``max_area_px`` pixels (4-connected
    background; holes touching the array border are never filled)."""
    background, count = ndimage.label(~mask, structure=SLICE_CONNECTIVITY_4)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(background.ravel())
    small = sizes <= max_area_px
    small[0] = False
    border = np.unique(np.concatenate([background[:, 0, :].ravel(), background[:, -1, :].ravel(),
                                       background[:, :, 0].ravel(), background[:, :, -1].ravel()]))
    small[border] = False
    return mask | small[background]


def block_any(mask: np.ndarray, factor_y: int, factor_x: int) -> np.ndarray:
    """Downsample a [z, y, x] mask in-plane by whole blocks: a coarse voxel is set when any voxel of
    its block is (edge blocks are padded with False)."""
    if factor_y == 1 and factor_x == 1:
        return mask.copy()
    nz, ny, nx = mask.shape
    out = np.zeros((nz, -(-ny // factor_y), -(-nx // factor_x)), bool)
    for dy in range(factor_y):
        for dx in range(factor_x):
            part = mask[:, dy::factor_y, dx::factor_x]
            out[:, :part.shape[1], :part.shape[2]] |= part
    return out


def keep_components_hit(mask: np.ndarray, seed: np.ndarray, structure=SLICE_CONNECTIVITY_8) -> np.ndarray:
    """Morphological reconstruction by dilation of ``seed`` inside ``mask`` (the connected components
    of ``mask`` that ``seed`` touches), per slice with the default structure."""
    labels, count = ndimage.label(mask, structure=structure)
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[seed & mask])] = True
    keep[0] = False
    return keep[labels]


def block_mean(array: np.ndarray, factor_y: int, factor_x: int) -> np.ndarray:
    """Downsample a [z, y, x] array in-plane by averaging whole blocks (float32; edge blocks are
    padded by repeating the edge)."""
    if factor_y == 1 and factor_x == 1:
        return array.astype(np.float32)
    nz, ny, nx = array.shape
    py, px = -ny % factor_y, -nx % factor_x
    if py or px:
        array = np.pad(array, ((0, 0), (0, py), (0, px)), mode="edge")
    nz, ny, nx = array.shape
    return array.reshape(nz, ny // factor_y, factor_y, nx // factor_x, factor_x).mean(axis=(2, 4), dtype=np.float32)


def gather_windows(array: np.ndarray, centres: np.ndarray, before, after, fill):
    """Stack, for every slice z, the window ``centres[z] - before ... centres[z] + after`` (pixels,
    (y, x)) of ``array`` (values outside the array are ``fill``); returns the (nz, wy, wx) stack and
    each window's first pixel (nz, 2)."""
    nz, ny, nx = array.shape
    (by, bx), (ay, ax) = before, after
    first = np.round(centres).astype(int) - np.array([by, bx])
    rows = first[:, 0, None] + np.arange(by + ay + 1)[None, :]
    cols = first[:, 1, None] + np.arange(bx + ax + 1)[None, :]
    inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :]
    stack = array[np.arange(nz)[:, None, None], np.clip(rows, 0, ny - 1)[:, :, None], np.clip(cols, 0, nx - 1)[:, None, :]]
    return np.where(inside, stack, fill), first
