"""Table nodes with typed columns, for metrics and per-vertebra measurements.

A table is made from a list of row dicts, a dict of columns or a dict of values; each column gets one vtk type
(``bit``, ``int``, ``double`` or ``string``) and a unit from its name's suffix (``_mm``, ``_mm3``, ``_ml``, ``_hu``,
``_deg``). Runs in 3D Slicer and under ``slicer-core``.

Console use::

    from SpineSegLib.slicer.tables import add_table, table_rows
    table = add_table(scene, [{"vertebra": "L1", "volume_ml": 41.2, "complete": True}], "Vertebrae")
    table_rows(table)                     # [{'vertebra': 'L1', 'volume_ml': 41.2, 'complete': True}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import vtk

from SpineSegLib.core.errors import InputError
from SpineSegLib.slicer.scene import place

UNIT_SUFFIXES = {"_mm3": "mm3", "_mm": "mm", "_ml": "mL", "_hu": "HU", "_deg": "deg"}


def add_table(scene, data, name: str = "Measurements", units: dict | None = None, descriptions: dict | None = None,
              next_to=None):
    """A table node from ``data``: a list of row dicts (e.g. one per vertebra), a dict of equal-length column lists,
    or a flat dict of scalars (one row). Columns keep their first-seen order and get a type each:
    all bools -> ``bit``, all integers -> ``int``, numbers -> ``double`` (missing = NaN), anything else ->
    ``string`` (missing = ""). Units come from ``units`` or the column suffix (``_mm``, ``_mm3``, ``_ml``, ``_hu``).
    """
    columns = _columns(data, name)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetUseColumnTitleAsColumnHeader(True)
    _fill_table(node, columns, units, descriptions)
    place(node, next_to)
    return node


def set_table(node, data, units: dict | None = None, descriptions: dict | None = None) -> None:
    """Replace the content of an existing table node with ``data`` (the forms :func:`add_table` takes)."""
    columns = _columns(data, node.GetName())
    was = node.StartModify()
    try:
        node.RemoveAllColumns()
        _fill_table(node, columns, units, descriptions)
    finally:
        node.EndModify(was)


def _fill_table(node, columns: dict, units, descriptions) -> None:
    for column, values in columns.items():
        node.AddColumn(_vtk_column(column, values))
        unit = (units or {}).get(column) or next((u for s, u in UNIT_SUFFIXES.items() if column.lower().endswith(s)),
                                                 None)
        if unit:
            node.SetColumnUnitLabel(column, unit)
        if descriptions and column in descriptions:
            node.SetColumnDescription(column, descriptions[column])


def _columns(data, name: str) -> dict:
    if isinstance(data, Mapping):
        values = list(data.values())
        if values and all(isinstance(v, (list, tuple, np.ndarray)) for v in values):
            lengths = {len(v) for v in values}
            if len(lengths) > 1:
                raise InputError(f"{name}: table columns of different lengths {sorted(lengths)}")
            return {str(k): list(v) for k, v in data.items()}
        rows = [data]
    else:
        rows = list(data)
    if not all(isinstance(r, Mapping) for r in rows):
        raise InputError(f"{name}: a table needs a list of dicts, a dict of columns or a dict of values")
    keys = list(dict.fromkeys(str(k) for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _vtk_column(column: str, values: list):
    present = [v for v in values if not _missing(v)]
    is_bool = lambda v: isinstance(v, (bool, np.bool_))  # noqa: E731
    is_int = lambda v: isinstance(v, (int, np.integer)) and not is_bool(v)  # noqa: E731
    is_number = lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not is_bool(v)  # noqa: E731
    if present and len(present) == len(values) and all(is_bool(v) for v in present):
        array = vtk.vtkBitArray()
        convert = lambda v: int(bool(v))  # noqa: E731
    elif present and len(present) == len(values) and all(is_int(v) for v in present) \
            and all(-2**31 <= int(v) < 2**31 for v in present):
        array = vtk.vtkIntArray()
        convert = int
    elif present and all(is_number(v) for v in present):
        array = vtk.vtkDoubleArray()
        convert = lambda v: float("nan") if _missing(v) else float(v)  # noqa: E731
    else:
        array = vtk.vtkStringArray()
        convert = lambda v: "" if _missing(v) else str(v)  # noqa: E731
    array.SetName(column)
    for value in values:
        array.InsertNextValue(convert(value))
    return array


def table_rows(node) -> list[dict]:
    """The rows of a table node as dicts with Python values (bit -> bool, integer types -> int, real -> float)."""
    table = node.GetTable()
    out = [{} for _ in range(table.GetNumberOfRows())]
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        name = array.GetName()
        for r in range(len(out)):
            value = array.GetValue(r)
            if isinstance(array, vtk.vtkBitArray):
                value = bool(value)
            elif isinstance(array, vtk.vtkStringArray):
                value = str(value)
            elif array.GetDataType() in (vtk.VTK_FLOAT, vtk.VTK_DOUBLE):
                value = float(value)
            else:
                value = int(value)
            out[r][name] = value
    return out
