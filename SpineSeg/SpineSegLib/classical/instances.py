"""What :func:`SpineSegLib.classical.vertebrae.label_vertebrae` returns: one labelled vertebra per
instance (VerSe ids on the input grid), its name with the evidence behind it, and the disc levels.

All positions are physical LPS millimetres, as in :mod:`SpineSegLib.classical.result`.

Console use::

    result = label_vertebrae(ct)
    result.labels                       # Image of VerSe ids (uint8) on the input's grid
    [(v.name, v.complete) for v in result.vertebrae]
    result.names_certain, result.naming_note
    result.to_json_dict()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from SpineSegLib.core.image import Image


@dataclass
class VertebraInstance:
    """One vertebra found: its VerSe id and name, completeness and the evidence behind the name."""

    label: int                      # VerSe id (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 S1, 28 T13)
    name: str
    complete: bool                  # False when the field of view cuts it or no disc bounds it above and below
    centroid_lps: tuple             # (x, y, z) mm
    voxels: int
    evidence: list[str] = field(default_factory=list)   # e.g. "rib on both sides", "lowest rib-bearing: T12"
    rib_left: bool = False
    rib_right: bool = False

    def to_json_dict(self) -> dict:
        return {
            "label": int(self.label), "name": self.name, "complete": bool(self.complete),
            "centroid_lps": [round(float(v), 2) for v in self.centroid_lps], "voxels": int(self.voxels),
            "ribs": {"left": bool(self.rib_left), "right": bool(self.rib_right)},
            "evidence": list(self.evidence),
        }


@dataclass
class VertebraeResult:
    """The vertebrae of one CT: the label map, the instances top to bottom and how they were named."""

    labels: Image                   # VerSe ids, uint8, exactly the input's grid
    vertebrae: list[VertebraInstance]
    names_certain: bool             # False without a trusted anchor (the lowest rib, the pelvis) or when they disagree
    naming_note: str                # one line: which anchors named the vertebrae, or why the names are uncertain
    discs_lps: np.ndarray           # (K, 3) centres of the disc levels found, top to bottom
    disc_normals_lps: np.ndarray    # (K, 3) unit normals of the cut surfaces there (pointing superior)
    spine: object = None            # the ClassicalResult the vertebrae were cut from
    timings: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        return {
            "coordinates": "LPS millimetres (x -> patient left, y -> posterior, z -> superior)",
            "names_certain": bool(self.names_certain),
            "naming_note": self.naming_note,
            "vertebrae": [v.to_json_dict() for v in self.vertebrae],
            "discs": [{"centre_lps": np.round(c, 2).tolist(), "normal_lps": np.round(n, 4).tolist()}
                      for c, n in zip(np.asarray(self.discs_lps), np.asarray(self.disc_normals_lps))],
            "timings_s": {k: round(float(v), 4) for k, v in self.timings.items()},
        }
