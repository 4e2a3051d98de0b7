"""Colour table nodes and terminology strings of the SpineSeg vertebra table (:mod:`SpineSegLib.core.labels`).

A colour table node made by :func:`fill_colour_table` has index = VerSe id, the vertebra's name, colour and
SNOMED CT codes (Slicer >= 5.8 tables carry terminology); Slicer's own export of segments with it gives SpineSeg's
ids. The same table as files (``.ctbl``, ``.csv``, ``.term.json``) is written by
:mod:`SpineSegLib.core.label_files`.

Console use (Slicer's Python console, or ``slicer-core``)::

    from SpineSegLib.slicer.colours import terminology_entry, vertebra_colour_table
    table = vertebra_colour_table(slicer.mrmlScene)       # the scene's table, created on first use
    table.GetColorName(20)                                # 'L1'
    terminology_entry(20)                                 # the TerminologyEntry tag of an L1 segment
"""

from __future__ import annotations

from SpineSegLib.core.label_files import REGION_CONTEXT, TERMINOLOGY_CONTEXT
from SpineSegLib.core.labels import CATEGORY_CODE, VERTEBRAE

COLOUR_TABLE_NAME = "SpineSeg vertebrae"
COLOUR_TABLE_ROLE = "SpineSeg.ColourTable"   # node attribute marking the scene's SpineSeg colour table


def terminology_entry(label: int) -> str:
    """Slicer's terminology string (the ``TerminologyEntry`` segment tag) of a vertebra id of the label table."""
    v = VERTEBRAE[int(label)]
    scheme, code, meaning = CATEGORY_CODE
    region = f"SCT^{v.region_code[0]}^{v.region_code[1]}" if v.region_code else "^^"
    return (f"{TERMINOLOGY_CONTEXT}~{scheme}^{code}^{meaning}~SCT^{v.snomed_code}^{v.snomed_meaning}~^^~"
            f"{REGION_CONTEXT}~{region}~^^")


def fill_colour_table(node, extra: dict | None = None):
    """Make ``node`` (a ``vtkMRMLColorTableNode``) the SpineSeg vertebra table: index = VerSe id, name, colour and
    terminology from :mod:`SpineSegLib.core.labels`; 0 is a transparent "Background". ``extra`` adds ``{id: name}``
    entries (grey, no terminology) for ids outside the table."""
    extra = {int(k): v for k, v in (extra or {}).items() if int(k) not in VERTEBRAE and int(k) > 0}
    size = max([max(VERTEBRAE) + 1, *[k + 1 for k in extra]])
    node.SetTypeToUser()
    node.SetNumberOfColors(size)
    node.GetLookupTable().SetRange(0, size - 1)
    node.SetColor(0, "Background", 0.0, 0.0, 0.0, 0.0)
    scheme, code, meaning = CATEGORY_CODE
    for v in VERTEBRAE.values():
        node.SetColor(v.label, v.name, *(c / 255.0 for c in v.color_255), 1.0)   # 8-bit, as in the files
        region = ("SCT", *v.region_code) if v.region_code else ("", "", "")
        node.SetTerminology(v.label, scheme, code, meaning, "SCT", v.snomed_code, v.snomed_meaning, "", "", "", *region)
    for label, name in extra.items():
        node.SetColor(label, name, 0.6, 0.6, 0.6, 1.0)
    return node


def find_vertebra_colour_table(scene):
    """The scene's SpineSeg vertebra colour table node (found by its attribute), None when there is none yet."""
    nodes = scene.GetNodesByClass("vtkMRMLColorTableNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetAttribute(COLOUR_TABLE_ROLE) == "vertebrae":
            return node
    return None


def vertebra_colour_table(scene):
    """The scene's SpineSeg vertebra colour table node (created on first use, found again by its attribute).

    For display and for users' own exports in the GUI;
    :func:`~SpineSegLib.slicer.segmentations.segmentation_to_labelmap` builds its own copy from
    :mod:`SpineSegLib.core.labels` each time, so edits to this node never change exported ids.
    """
    node = find_vertebra_colour_table(scene)
    if node is not None:
        return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOUR_TABLE_NAME)
    node.SetAttribute(COLOUR_TABLE_ROLE, "vertebrae")
    return fill_colour_table(node)
