"""The bottom layer: what every other package builds on, importing nothing else of SpineSegLib.

- ``errors``      -- :class:`SpineSegError` and its kinds; the CLI prints them as one line.
- ``files``       -- the one atomic write (:func:`replaced_atomically`: a failed or short write -- a full disk
  that the writing library did not report included -- becomes one :class:`WriteError` and leaves the old file
  as it was), the one ``--force`` check (:func:`check_force`, which also refuses unwritable folders up front),
  checksums.
- ``image``       -- the :class:`Image` type (array + LPS geometry), reading and writing.
- ``file_layout`` -- where the voxel data of a NIfTI / NRRD / MetaImage file are and how many bytes to expect.
- ``integrity``   -- truncated or corrupt files refused (sizes, gzip end markers and checksums, NaN/Inf).
- ``dicom``       -- DICOM folders: which series to read, missing / duplicate / uneven slices, gantry tilt.
- ``modality``    -- CT or MR from the intensities, and CTs stored without their rescale or windowed to 0-255.
- ``notes``       -- :class:`InputNote` warnings ("read the largest CT series ...") and their one-line printing.
- ``orientation`` -- exact, invertible reorientation to the canonical LPS array layout.
- ``resample``    -- resampling onto another grid (exact for permuted/flipped axes).
- ``grids``       -- the one rule for two grids: same, exactly mappable, resampled when the fields of view
  overlap substantially (with a note), else refused naming the overlap.
- ``labels``      -- the one vertebra label table (VerSe ids, names, colours, SNOMED CT codes).
- ``progress``    -- :class:`Progress` with cancel, and the console progress printer.
- ``splits``      -- the one split vocabulary (train / validation / test) and seeded splits.
- ``resources``   -- bundled files (models, labels, recipes, samples) and dataset roots (``SPINESEG_DATA``).
"""
