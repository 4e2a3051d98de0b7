"""The classical, model-free spine segmentation of Revy et al. (chest CT, no training data).

Console use::

    from SpineSegLib.image import read_image, write_image
    from SpineSegLib.classical import ClassicalParams, segment_spine
    result = segment_spine(read_image("chest.nii.gz"), ClassicalParams())
    write_image(result.mask, "spine.nii.gz")
    result.save_intermediates("intermediates/")

Modules: ``params`` (all parameters, mm and HU, paper's or ours), ``validation`` (input checks),
``morphology`` (slice-by-slice helpers in mm), ``body`` (body mask), ``aorta`` (contrast and the
descending aorta), ``centerline`` (section 3.1), ``reconstruction`` and ``bounding_lines`` (3.2),
``parabola`` (3.3), ``finishing`` (body filling), ``pipeline`` (:func:`segment_spine`), ``result``
(:class:`ClassicalResult`). The quick-look picture is ``SpineSegLib.quicklook``.
"""

from .params import ClassicalParams
from .pipeline import segment_spine
from .result import ClassicalResult

__all__ = ["ClassicalParams", "ClassicalResult", "segment_spine"]
