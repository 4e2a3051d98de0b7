"""The choices the module panels make for the user, kept Qt-free so that they are tested under ``slicer-core``:
which bundled model to preselect for an input, how a model path is shown, which slice view the classical
panel's slice markups follow, and where the IIS start point lies.

The panels (:mod:`SpineSegLib.slicer.classical_widget`, :mod:`SpineSegLib.slicer.iis_widget`) call these; nothing
here imports Qt, torch or the pipelines.

Console use::

    from SpineSegLib.slicer.widget_choices import default_model_index, input_modality
    from SpineSegLib.iis.model.catalog import list_models
    models = list_models()
    models[default_model_index(models, input_modality(getNode("CTChest")))].name    # a CT model
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from SpineSegLib.slicer.volumes import ras_to_lps

PREFERRED_SLICE_VIEWS = ("Red",)


def input_modality(volume_node) -> Optional[str]:
    """``"ct"`` or ``"mr"`` for a scalar volume node, from its intensities
    (:func:`~SpineSegLib.iis.infer.checks.guess_modality`); None when there is no usable volume."""
    from SpineSegLib.core.errors import SpineSegError
    from SpineSegLib.iis.infer.checks import guess_modality
    from SpineSegLib.slicer.common import check_volume_node

    if volume_node is None:
        return None
    try:
        image = check_volume_node(volume_node)
    except SpineSegError:
        return None
    return guess_modality(image)[0]


def default_model_index(models: Sequence, modality: Optional[str]) -> Optional[int]:
    """The index of the model to preselect among ``models`` (:class:`~SpineSegLib.iis.model.catalog.ModelInfo`)
    for an input of ``modality``: a model of that modality (a released one before an experimental one), else the
    first released model, else the first; None when there is no model."""
    if not models:
        return None
    ranked = sorted(range(len(models)), key=lambda i: (models[i].modality != modality or modality is None,
                                                       models[i].experimental, i))
    best = ranked[0]
    if modality is not None and models[best].modality == modality:
        return best
    return next((i for i, m in enumerate(models) if not m.experimental), 0)


def model_path_text(path) -> str:
    """A model path as the panel shows it: empty when no model is chosen (``pathlib.Path()`` is ``"."``)."""
    text = "" if path is None else str(path)
    return "" if text in ("", ".") else text


def model_path_value(text: str) -> Path:
    """The parameter value for a path the user typed (``Path()`` for none)."""
    return Path(text) if text and text.strip() else Path()


def slice_view_to_follow(view_names: Sequence[str], preferred: Sequence[str] = PREFERRED_SLICE_VIEWS) -> Optional[str]:
    """The slice view the slice markups follow: a preferred one when the layout shows it, else the layout's
    first slice view, else None (a layout without slice views: nothing follows)."""
    names = [n for n in view_names if n]
    return next((n for n in preferred if n in names), names[0] if names else None)


def slice_node_named(scene, layout_name: str):
    """The slice node of the view ``layout_name`` in ``scene`` (None when there is none)."""
    if not layout_name:
        return None
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        if node.GetLayoutName() == layout_name:
            return node
    return None


def start_point_lps(point_list) -> Optional[tuple]:
    """The first control point of a markups point list in LPS mm (the IIS start point), None when there is none."""
    if point_list is None or point_list.GetNumberOfControlPoints() == 0:
        return None
    ras = [0.0, 0.0, 0.0]
    point_list.GetNthControlPointPositionWorld(0, ras)
    return tuple(float(v) for v in ras_to_lps(ras))
