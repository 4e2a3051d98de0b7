"""SpineSegLib: the backend of the SpineSeg 3D Slicer extension -- needs no Slicer and no Qt.

Packages, by lifecycle (lower layers never import higher ones; ARCHITECTURE.md has the map):

- ``core``        -- the image type and its I/O, orientation, resampling, the label table, files written
  atomically, progress/cancel, splits, the package's bundled resources.
- ``classical``   -- the model-free spine segmentation of Revy et al., one step per module.
- ``evaluation``  -- binary and per-vertebra metrics, vertebra measurements, reports, quick-look PNGs.
- ``iis``         -- iterative instance segmentation (Lessmann et al.): ``model`` (network, weights,
  catalogue), ``infer`` (traversal, labelling, running a model on a scan), ``train`` (readers,
  sampling, augmentation, losses, recipes, the training loop).
- ``annotation``  -- datasets built by correcting predictions: versions, status, fine-tuning, export.
- ``cli``         -- the ``spineseg`` command line (every entry point).
- ``slicer``      -- the only code that touches MRML: scene import/export and the modules' logic.
- ``resources``   -- package data: bundled models with their cards, label tables, training recipes, samples.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.classical import segment_spine
    result = segment_spine(read_image("chest.nii.gz"))
    write_image(result.mask, "spine.nii.gz")
"""

__version__ = "0.1.0"
