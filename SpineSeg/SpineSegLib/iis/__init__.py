"""Iterative instance segmentation of vertebrae (Lessmann et al. 2019; SPIDER MR variant).

- ``config``    -- :class:`IISConfig`: everything a weights file says about itself.
- ``model``     -- the constant-width 3-D U-Net with segmentation, label and completeness heads.
- ``checkpoint``-- saving / loading self-describing weights files.

Importing this package does not import torch; ``model`` and ``checkpoint`` do.
"""
