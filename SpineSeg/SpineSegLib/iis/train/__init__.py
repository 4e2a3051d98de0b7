"""Training an IIS network from a recipe (``spineseg train RECIPE``), one concern per module:

- ``recipe``       -- the TOML recipe: [model], [data] (sources by kind, split patterns), [training], [output].
- ``conventions``  -- label conventions: how a dataset's label values map onto VerSe ids.
- ``discovery``    -- finding image / label pairs in dataset folders.
- ``readers``      -- the dataset readers (:func:`read_dataset`): cases listed, nothing read yet.
- ``synthetic_ct`` -- CT-like images painted around vertebra label maps (the ``synthetic-ct`` kind).
- ``prepared``     -- a case on the model grid (:func:`prepare_case`), cached on disk.
- ``cases``        -- the run's cases: gathered, split into train / validation / test, prepared.
- ``sampling``     -- training patches with their memory and targets.
- ``augment``      -- patch augmentation (noise, blur, elastic, crop, rotation, scale) and, off by default,
                      intensity domain randomisation (bias field, intensity curves, gamma, inversion, thick slices).
- ``losses``       -- the IIS loss, the false-positive weight schedule, surface weights.
- ``examples``     -- examples and batches as a pure function of (seed, iteration, index).
- ``validation``   -- the fixed validation patches and their figures.
- ``run_folder``   -- logs, the resume state, snapshots and the choice of the final weights.
- ``curves``       -- ``curves.png`` of a run.
- ``loop``         -- :func:`train`: setup, one training step, the iterations.

Console use::

    from SpineSegLib.iis.train.loop import train
    from SpineSegLib.iis.train.recipe import load_train_config
    train(load_train_config("mr-vertebral-bodies-small"))
"""
