"""The knobs of the IIS traversal (``traversal.py``), with the defaults of the paper and the reference code.

The module docstring of ``traversal.py`` says what each threshold means and which the paper fixes.

Console use::

    from SpineSegLib.iis.infer.traversal_options import TraversalOptions
    TraversalOptions(direction="down", max_instances=10)
    TraversalOptions.from_config(config, keep_incomplete=True)   # config: the model's IISConfig
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from SpineSegLib.core.errors import InputError


@dataclass
class TraversalOptions:
    """Knobs of the traversal; defaults follow the paper and the public reference code."""

    direction: str = "up"                       # "up": the search starts at the bottom
    min_fragment_mm3: float = 1000.0            # v_min: new prediction a search hit needs
    follow_min_mm3: Optional[float] = None      # next / followed fragment; default v_min / 2
    min_component_mm3: Optional[float] = None   # smaller connected pieces are dropped; default v_min / 2
    probability_threshold: float = 0.5
    completeness_threshold: float = 0.5
    max_shift_voxels: int = 2                   # delta_max (max norm, voxels of the model grid)
    max_moves: int = 10
    max_instances: int = 25
    start_min_label: Optional[float] = 0.75     # regressed label a first hit needs (None: off)
    accept_min_label: Optional[float] = 0.75    # below: false positive, traversal ends (None: off)
    keep_incomplete: bool = False               # incomplete vertebrae also go to the output (flagged)
    start_lps: Optional[tuple] = None           # physical start point, LPS mm
    start_voxel: Optional[tuple] = None         # or a model-grid voxel [z, y, x]
    search_step: Optional[tuple] = None         # [z, y, x] voxels; default half the patch
    fallback_columns: Optional[int] = 1         # see traversal.py's docstring; None = whole levels
    max_steps: int = 2000                       # safety net against endless loops

    def __post_init__(self):
        if self.direction not in ("up", "down"):
            raise InputError(f"unknown traversal direction {self.direction!r} (use 'up' or 'down')")

    @property
    def follow_mm3(self) -> float:
        return self.min_fragment_mm3 / 2 if self.follow_min_mm3 is None else float(self.follow_min_mm3)

    @property
    def component_mm3(self) -> float:
        return self.min_fragment_mm3 / 2 if self.min_component_mm3 is None else float(self.min_component_mm3)

    @classmethod
    def from_config(cls, config, **overrides) -> "TraversalOptions":
        """Options for a model's :class:`~SpineSegLib.iis.model.config.IISConfig` (direction, v_min).

        The SPIDER variant's label head is not used (van der Graaf et al. 2.2.4: SPIDER has no
        anatomical labels), so its traversal does not gate on the regressed label.
        """
        base = dict(direction=config.direction, min_fragment_mm3=config.min_fragment_mm3)
        if config.variant == "spider":
            base.update(start_min_label=None, accept_min_label=None)
        defaults = {f.name: f.default for f in fields(cls)}
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise InputError(f"unknown traversal option(s): {', '.join(sorted(unknown))}")
        # None means "not given" for options that cannot be None, and "off" for those that can
        base.update({k: v for k, v in overrides.items() if v is not None or defaults[k] is None
                     or k in ("start_min_label", "accept_min_label", "fallback_columns")})
        return cls(**base)
