"""The vertebra label table as files for 3D Slicer and other tools, generated from :mod:`SpineSegLib.core.labels`.

Three files, committed in ``SpineSegLib/resources/labels/`` (regenerate them, never edit them)::

    SpineSeg-vertebrae.ctbl       id, name, RGBA (0-255): Slicer's plain colour table, easy to read elsewhere
    SpineSeg-vertebrae.csv        the same plus the SNOMED CT codes per id: Slicer >= 5.8's colour table with
                                  terminology (what ``vtkMRMLColorTableStorageNode`` writes for a table made by
                                  ``SpineSegLib.slicer.colours.fill_colour_table``; the tests check it is the same)
    SpineSeg-vertebrae.term.json  a terminology context (dcmqi segment-context schema) for Slicer's terminology
                                  selector: one type per vertebra with its code, colour and ``3dSlicerLabel``

Plain text written from Python: no MRML is needed to make them.

Console use::

    from SpineSegLib.core.label_files import write_label_files, terminology_json
    write_label_files("out/labels", force=True)     # the three files; scripts/make_label_files.py does this
    terminology_json()["SegmentationCategoryTypeContextName"]   # 'Segmentation category and type - SpineSeg'
"""

from __future__ import annotations

import json
from pathlib import Path

from SpineSegLib.core.files import check_force, write_text_atomic
from SpineSegLib.core.labels import CATEGORY_CODE, VERTEBRAE, colour_table_rows

#: the terminology context of SpineSeg's segment codes (segment tags and the ``.term.json`` file)
TERMINOLOGY_CONTEXT = "Segmentation category and type - SpineSeg"
#: the anatomic-region context named in segment terminology strings
REGION_CONTEXT = "Anatomic codes - DICOM master list"
CTBL, CSV, TERM_JSON = "SpineSeg-vertebrae.ctbl", "SpineSeg-vertebrae.csv", "SpineSeg-vertebrae.term.json"
LABEL_FILES = (CTBL, CSV, TERM_JSON)

_CSV_COLUMNS = ("LabelValue", "Name", "Color_R", "Color_G", "Color_B", "Color_A",
                *(f"{part}_{field}" for part in ("Category", "Type", "TypeModifier", "Region", "RegionModifier")
                  for field in ("CodingScheme", "CodeValue", "CodeMeaning")))


def ctbl_text() -> str:
    """Slicer's ``.ctbl`` colour table: ``id name r g b a`` per line, 0 a transparent "Background"."""
    lines = ["# SpineSeg vertebra labels (VerSe / CTSpine1K ids), generated from SpineSegLib/core/labels.py",
             "0 Background 0 0 0 0",
             *[f"{label} {name} {r} {g} {b} 255" for label, name, r, g, b in colour_table_rows()]]
    return "\n".join(lines) + "\n"


def csv_text() -> str:
    """Slicer's ``.csv`` colour table with terminology, byte for byte as ``vtkMRMLColorTableStorageNode`` writes
    it: text quoted, numbers not; category and type codes per vertebra, the anatomic region for T13 and L6."""
    def quoted(*values) -> list[str]:
        return [f'"{v}"' for v in values]

    scheme, code, meaning = CATEGORY_CODE
    rows = [",".join(quoted(*_CSV_COLUMNS)), ",".join(["0", '"Background"', "0", "0", "0", "0", *quoted(*[""] * 15)])]
    for v in sorted(VERTEBRAE.values(), key=lambda v: v.label):
        region = ("SCT", *v.region_code) if v.region_code else ("", "", "")
        rows.append(",".join([str(v.label), f'"{v.name}"', *(str(c) for c in v.color_255), "255",
                              *quoted(scheme, code, meaning, "SCT", v.snomed_code, v.snomed_meaning, "", "", "",
                                      *region, "", "", "")]))
    return "\n".join(rows) + "\n"


def terminology_json() -> dict:
    """The SpineSeg vertebrae as a Slicer terminology context (``.term.json``, dcmqi segment-context schema):
    one type per vertebra with its SNOMED CT code, colour and ``3dSlicerLabel`` (the name, e.g. ``"L1"``).
    T13 and L6 share the type "Vertebra" and differ by anatomic region (see :mod:`SpineSegLib.core.labels`), so the
    context lists that type once, and the selector shows the anatomic region."""
    scheme, code, meaning = CATEGORY_CODE
    types, seen = [], set()
    for v in sorted(VERTEBRAE.values(), key=lambda v: v.order):
        if v.snomed_code in seen:
            continue
        seen.add(v.snomed_code)
        generic = v.region_code is not None
        types.append({"CodeMeaning": v.snomed_meaning, "CodingSchemeDesignator": "SCT", "CodeValue": v.snomed_code,
                      "SNOMEDCTConceptID": v.snomed_code, "3dSlicerLabel": "Vertebra" if generic else v.name,
                      "recommendedDisplayRGBValue": [200, 200, 200] if generic else list(v.color_255)})
    return {"SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
            "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
            "SegmentationCodes": {"Category": [{"CodeMeaning": meaning, "CodingSchemeDesignator": scheme,
                                                "CodeValue": code, "showAnatomy": True, "Type": types}]}}


def write_label_files(folder, force: bool = False) -> list[Path]:
    """Write :data:`LABEL_FILES` into ``folder`` (module docstring); refuses to overwrite unless ``force``.
    Nothing is written when one of them exists and ``force`` is false."""
    folder = Path(folder)
    texts = {CTBL: ctbl_text(), CSV: csv_text(), TERM_JSON: json.dumps(terminology_json(), indent=2) + "\n"}
    paths = [check_force(folder / name, force) for name in LABEL_FILES]
    return [write_text_atomic(path, texts[path.name]) for path in paths]
