"""The bottom layer: what every other package builds on, importing nothing else of SpineSegLib.

- ``errors``      -- :class:`SpineSegError` and its kinds; the CLI prints them as one line.
- ``files``       -- the one atomic write (:func:`replaced_atomically`), the one ``--force`` check
  (:func:`check_force`), checksums.
- ``image``       -- the :class:`Image` type (array + LPS geometry), reading and writing.
- ``orientation`` -- exact, invertible reorientation to the canonical LPS array layout.
- ``resample``    -- resampling onto another grid (exact for permuted/flipped axes).
- ``labels``      -- the one vertebra label table (VerSe ids, names, colours, SNOMED CT codes).
- ``progress``    -- :class:`Progress` with cancel, and the console progress printer.
- ``splits``      -- the one split vocabulary (train / validation / test) and seeded splits.
- ``resources``   -- bundled files (models, labels, recipes, samples) and dataset roots (``SPINESEG_DATA``).
"""
