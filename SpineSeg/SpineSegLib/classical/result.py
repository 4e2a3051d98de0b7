"""What :func:`segment_spine` returns: the spine mask on the input grid and every intermediate.

All positions are physical **LPS** millimetres (x to the patient's left, y posterior, z superior),
the coordinates of :class:`SpineSegLib.core.image.Image`; Slicer shows RAS (negate x and y).

Console use::

    result = segment_spine(ct)
    result.mask                      # Image, uint8, exactly the input's grid
    result.contrast                  # True when contrast-enhanced blood was found
    result.centerline_points_lps     # (N, 3) per-slice maxima of the localization map
    result.slices[10].h1             # (2, 3) LPS segment of line H1 on that slice (a BoundingLines)
    result.parabolas[0].dp_points    # (Q, 3) LPS DP points of a slice (a SliceParabola)
    result.save_intermediates("out/")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineSegLib.core.files import check_force, write_text_atomic
from SpineSegLib.core.image import Image, write_image
from SpineSegLib.classical.geometry import BoundingLines, SliceParabola
from SpineSegLib.classical.params import ClassicalParams

MASK_FILES = {"mask": "spine_mask.nii.gz", "bone_mask": "bone_mask.nii.gz", "aorta_mask": "aorta_mask.nii.gz"}
JSON_FILE = "intermediates.json"


@dataclass
class ClassicalResult:
    """The result of the classical pipeline (all geometry in LPS mm; masks on the input grid)."""

    mask: Image                                   # the spine, uint8 0/1
    bone_mask: Image                              # I_thresh: CT >= bone threshold inside the body, uint8
    aorta_mask: Image                             # the descending aorta found (empty without contrast), uint8
    contrast: bool                                # contrast-enhanced blood found
    aorta_median_hu: float                        # median HU inside the aorta mask (NaN without contrast)
    aorta_length_mm: float                        # superior-inferior extent of the aorta found
    centerline_points_lps: np.ndarray             # (N, 3) per-slice maxima of the localization map M
    centerline_inliers: np.ndarray                # (N,) RANSAC inliers among them
    centerline_curve_lps: np.ndarray              # (M, 3) the fitted quadratic, one point per spine slice
    centerline_centres_lps: np.ndarray            # (M, 3) centres used as seeds (inlier maxima or the curve)
    slices: list[BoundingLines] = field(default_factory=list)
    """The bounding lines H1-H3, V1-V6 of each axial slice that has them (LPS segments)."""
    parabolas: list[SliceParabola] = field(default_factory=list)
    """The chosen parabola and the DP points of each slice with a parabola fit (LPS)."""
    timings: dict = field(default_factory=dict)   # seconds per step
    params: ClassicalParams = field(default_factory=ClassicalParams)

    # -- export ----------------------------------------------------------------------------
    def to_json_dict(self) -> dict:
        def pts(a):
            return np.round(np.asarray(a, float), 3).tolist()

        def plain(value):
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, np.ndarray):
                return pts(value)
            if isinstance(value, (float, np.floating)):
                return round(float(value), 3)
            if isinstance(value, np.integer):
                return int(value)
            return value

        return {
            "coordinates": "LPS millimetres (x -> patient left, y -> posterior, z -> superior)",
            "contrast": bool(self.contrast),
            "aorta_median_hu": None if not np.isfinite(self.aorta_median_hu) else float(self.aorta_median_hu),
            "aorta_length_mm": float(self.aorta_length_mm),
            "centerline": {
                "points": pts(self.centerline_points_lps),
                "inliers": [bool(v) for v in self.centerline_inliers],
                "fitted_curve": pts(self.centerline_curve_lps),
                "centres": pts(self.centerline_centres_lps),
            },
            "slices": plain([s.to_json_dict() for s in self.slices]),
            "parabolas": plain([p.to_json_dict() for p in self.parabolas]),
            "timings_s": {k: round(float(v), 4) for k, v in self.timings.items()},
            "params": self.params.to_dict(),
        }

    @staticmethod
    def intermediate_paths(directory) -> list[Path]:
        """The files :meth:`save_intermediates` writes into ``directory``."""
        directory = Path(directory)
        return [directory / name for name in MASK_FILES.values()] + [directory / JSON_FILE]

    @classmethod
    def check_intermediates(cls, directory, force: bool = False) -> list[Path]:
        """The files :meth:`save_intermediates` writes; ``OutputExistsError`` when one exists and
        ``force`` is false."""
        return [check_force(path, force) for path in cls.intermediate_paths(directory)]

    def save_intermediates(self, directory, force: bool = False) -> list[Path]:
        """Write the masks (.nii.gz, on the input grid) and the geometry (intermediates.json, LPS mm)
        into ``directory``; nothing is written when one of the files exists and ``force`` is false."""
        paths = self.check_intermediates(directory, force)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for attr, name in MASK_FILES.items():
            write_image(getattr(self, attr), directory / name, force=True)
        write_text_atomic(directory / JSON_FILE, json.dumps(self.to_json_dict(), indent=1))
        return paths
