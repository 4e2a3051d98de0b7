"""Iterative instance segmentation of vertebrae (Lessmann et al. 2019; SPIDER MR variant), by lifecycle.

``iis.model`` -- what a model is (layer 1):

- ``config``     -- :class:`IISConfig`: everything a weights file says about itself.
- ``network``    -- the constant-width 3-D U-Net with segmentation, label and completeness heads.
- ``checkpoint`` -- saving / loading self-describing weights files (SHA-256 checked against the card).
- ``cards``      -- reading model cards (``NAME.json`` / ``NAME.md`` beside ``NAME.pt``).
- ``catalog``    -- the bundled models (``SpineSegLib/resources/models``) and :func:`resolve_model`.
- ``device``     -- ``auto`` / ``cpu`` / ``cuda`` resolution and the CPU facts (cores, bf16).

``iis.infer`` -- running a model on a scan (layer 2):

- ``run``        -- :func:`segment_vertebrae` and the steppable :class:`IISRun`: the whole pipeline.
- ``checks``     -- input checks (size, CT vs MR) and start points from a centerline.
- ``preprocess`` -- the model grid (canonical LPS, model voxel size) and intensity normalisation.
- ``predictor``  -- the network as the traversal's ``predict``: precision, GPU out-of-memory fallback.
- ``traversal``  -- the traversal as a step generator (search, follow, converge, memory), with
  ``traversal_options`` (its knobs), ``patches`` (patch boxes), ``search_order`` (where it searches)
  and ``traversal_records`` (steps, accepted vertebrae, the result).
- ``assembly``   -- the result on the input grid: label maps, HU surface peeling, per-vertebra records.
- ``labelling``  -- the maximum-likelihood label sequence (optional T13 / L6).
- ``oracle``     -- a perfect "network" answering from a reference label map (tests, benchmarks).
- ``runtime_estimate`` -- run-time estimates for the GUI and the device probe (``spineseg speed``).

``iis.train`` -- training a model from a recipe (layer 3): datasets, sampling, augmentation, losses,
the training loop (``spineseg train``).

Importing this package does not import torch; ``network``, ``checkpoint``, ``device``, ``predictor``
and the training loop do (``run`` only when a run starts).

Console use::

    from SpineSegLib.core.image import read_image
    from SpineSegLib.iis.infer.run import segment_vertebrae
    from SpineSegLib.iis.model.catalog import resolve_model
    result = segment_vertebrae(read_image("mr.nii.gz"), resolve_model("mr-vertebral-bodies"))
"""
