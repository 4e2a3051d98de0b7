"""Iterative instance segmentation of vertebrae (Lessmann et al. 2019; SPIDER MR variant).

- ``config``     -- :class:`IISConfig`: everything a weights file says about itself.
- ``model``      -- the constant-width 3-D U-Net with segmentation, label and completeness heads.
- ``checkpoint`` -- saving / loading self-describing weights files (SHA-256 checked).
- ``preprocess`` -- the model grid (canonical LPS, model voxel size) and intensity normalisation.
- ``traversal``  -- the traversal as a step generator (search, follow, converge, memory).
- ``labelling``  -- the maximum-likelihood label sequence (optional T13 / L6).
- ``predictor``  -- device choice, precision, GPU out-of-memory fallback.
- ``inference``  -- :func:`segment_vertebrae` and the steppable :class:`IISRun`.
- ``oracle``     -- a perfect "network" answering from a reference label map (tests, benchmarks).
- ``datasets``, ``sampling``, ``losses``, ``augment``, ``train_config``, ``training`` -- training.
- ``model_catalog``, ``runtime_estimate`` -- bundled models and run-time estimates for the GUI.

Importing this package does not import torch; ``model``, ``checkpoint``, ``predictor`` and
``inference`` do.
"""
