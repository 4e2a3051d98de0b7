"""The classical, model-free spine segmentation of Revy et al. (chest CT, no training data).

Console use::

    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.classical import ClassicalParams, segment_spine
    result = segment_spine(read_image("chest.nii.gz"), ClassicalParams())
    write_image(result.mask, "spine.nii.gz")
    result.save_intermediates("intermediates/")

Modules: ``params`` (all parameters, mm and HU, paper's or ours), ``validation`` (input checks),
``morphology`` (slice-by-slice helpers in mm), ``body`` (body mask), ``aorta`` (contrast and the
descending aorta), ``centerline`` (section 3.1), ``reconstruction`` and ``bounding_lines`` (3.2),
``parabola`` (3.3), ``finishing`` (body filling), ``geometry`` (the lines and parabolas as named
types), ``pipeline`` (:func:`segment_spine`), ``result`` (:class:`ClassicalResult`). The quick-look
picture is ``SpineSegLib.evaluation.quicklook``.

The three names below are loaded on first use (PEP 562), so that importing a light module such as
``SpineSegLib.classical.params`` does not import the pipeline and what it needs (scipy,
scikit-image). Modules of this package import each other by module path, never through this face.
"""

__all__ = ["ClassicalParams", "ClassicalResult", "segment_spine"]


def __getattr__(name: str):
    if name == "ClassicalParams":
        from SpineSegLib.classical.params import ClassicalParams as value
    elif name == "ClassicalResult":
        from SpineSegLib.classical.result import ClassicalResult as value
    elif name == "segment_spine":
        from SpineSegLib.classical.pipeline import segment_spine as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
