"""What an IIS weights file says about itself (stored inside every checkpoint).

No torch import here: the Slicer module and the CLI read configurations without loading torch.

Console use::

    from SpineSegLib.iis.model.config import IISConfig
    config = IISConfig.default_mr(width=32, patch_size=(96, 96, 96))
    IISConfig.from_dict(config.to_dict()) == config      # what a checkpoint stores and reads back
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from SpineSegLib.core.errors import InputError

MODALITIES = ("ct", "mr")
VARIANTS = ("vertebrae", "spider")   # spider: vertebra + disc + spinal-canal outputs, vertebra + disc memory


@dataclass
class IISConfig:
    """Architecture, sampling and intensity handling of one IIS model.

    ``patch_size`` and ``voxel_size_mm`` are in numpy ``[z, y, x]`` order of the canonical LPS
    array (z superior, y posterior, x left; see ``SpineSegLib.core.orientation``).
    """

    modality: str = "ct"
    variant: str = "vertebrae"
    width: int = 64                      # feature maps of every U-Net layer (constant width)
    levels: int = 4                      # resolution levels; levels - 1 poolings
    head_width: int = 48                 # feature maps of the label and completeness paths
    patch_size: tuple = (128, 128, 128)
    voxel_size_mm: tuple = (1.0, 1.0, 1.0)
    # intensity normalisation; "ct": clip HU to [low, high] then divide by `scale`;
    # "mr": clip to the [low, high] percentiles of the whole scan and map linearly onto [-1, 1]
    intensity: dict = field(default_factory=lambda: {"kind": "ct", "low": -1000.0, "high": 3096.0, "scale": 1000.0})
    pad_value: float = -1.0              # normalised value outside the image
    direction: str = "up"                # traversal direction the network was trained for
    min_fragment_mm3: float = 1000.0     # v_min of the traversal
    hu_surface_threshold: float | None = 200.0  # CT post-processing; None for MR
    description: str = ""
    # InstanceNorm on the last conv of the label / completeness heads. With it, the global average
    # that follows only sees a normalised, content-blind distribution (the label head cannot learn;
    # measured in training). Weights saved before this field existed have it: from_dict() sets it
    # True when the key is missing.
    head_final_norm: bool = False
    # The label / completeness heads average their last features over a head_grid^3 grid of the
    # patch before the dense layer: 1 = global average (position-blind); 2 keeps a coarse layout
    # (which part of the patch holds what), which completeness -- is the target cut by the patch
    # border? -- needs. Any patch shape works either way.
    head_grid: int = 1

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self.voxel_size_mm = tuple(float(v) for v in self.voxel_size_mm)
        if self.modality not in MODALITIES:
            raise InputError(f"unknown modality {self.modality!r} (use one of {MODALITIES})")
        if self.variant not in VARIANTS:
            raise InputError(f"unknown model variant {self.variant!r} (use one of {VARIANTS})")
        if self.direction not in ("up", "down"):
            raise InputError(f"unknown traversal direction {self.direction!r}")
        if int(self.head_grid) < 1:
            raise InputError("head_grid must be at least 1")
        self.head_grid = int(self.head_grid)
        factor = 2 ** (self.levels - 1)
        if len(self.patch_size) != 3 or any(p % factor for p in self.patch_size):
            raise InputError(f"patch size {self.patch_size} must have 3 sides divisible by {factor}")

    @property
    def memory_channels(self) -> int:
        return 2 if self.variant == "spider" else 1

    @property
    def in_channels(self) -> int:
        return 1 + self.memory_channels

    @property
    def out_channels(self) -> int:
        """Segmentation maps: the vertebra (and, for SPIDER, the disc and the spinal canal)."""
        return 3 if self.variant == "spider" else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["voxel_size_mm"] = list(self.voxel_size_mm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "IISConfig":
        known = {f.name for f in fields(cls)}
        d = dict(d)
        d.setdefault("head_final_norm", True)      # files written before the field existed
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def default_mr(cls, **kw) -> "IISConfig":
        base = dict(modality="mr", intensity={"kind": "mr", "low": 5.0, "high": 95.0}, pad_value=-1.0,
                    hu_surface_threshold=None)
        base.update(kw)
        return cls(**base)
