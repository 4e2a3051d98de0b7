"""SpineSegLib: the backend of the SpineSeg 3D Slicer extension.

Needs no Slicer and no Qt. Submodules:

- ``image``      -- the :class:`Image` type, reading (NIfTI, NRRD, MHA, DICOM folders) and writing.
- ``orientation``-- exact, invertible reorientation to the canonical LPS array layout.
- ``labels``     -- the one vertebra label table (VerSe / CTSpine1K ids, names, colours, SNOMED CT codes).
- ``metrics``    -- IoU, Dice, HD95 and ASSD in millimetres.
- ``classical``  -- the model-free pipeline of Revy et al.
- ``cli``        -- the ``spineseg`` command line.

Console use::

    from SpineSegLib import image, classical
    ct = image.read_image("chest.nii.gz")
    result = classical.segment_spine(ct)
    image.write_image(result.mask, "spine.nii.gz")
"""

__version__ = "0.1.0"
