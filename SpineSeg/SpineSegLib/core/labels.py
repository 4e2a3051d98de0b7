"""The one vertebra label table of SpineSeg (VerSe / CTSpine1K ids).

Every part of SpineSeg -- the CLI, the IIS label regression, Slicer segments, exports, metrics
tables -- names, colours and codes vertebrae from :data:`VERTEBRAE`:

====  ======  ==========================  =====================
id    name    anatomy                     SNOMED CT
====  ======  ==========================  =====================
1-7   C1-C7   cervical vertebrae          14806007 ... 87391001
8-19  T1-T12  thoracic vertebrae          64864005 ... 23215003
20-24 L1-L5   lumbar vertebrae            66794005 ... 49668003
25    L6      transitional lumbar (L6)    51282000 (vertebra), region 122496007 (lumbar spine)
26    S1      sacrum                      54735007 (sacrum)
28    T13     transitional thoracic (T13) 51282000 (vertebra), region 122495006 (thoracic spine)
====  ======  ==========================  =====================

Colours are this project's own: neighbouring vertebrae differ clearly in lightness and hue, and
each region keeps its own hue family (cervical blue-violet, thoracic green-yellow, lumbar
orange-red), so a shifted label is visible at a glance. The codes are SNOMED CT type codes in the
category ``SCT 123037004 Anatomical Structure``, as the DICOM master list and Slicer's
terminologies use them. SNOMED CT has no concept for a 13th thoracic or a 6th lumbar vertebra, so
these two are coded as the type "Vertebra" with the anatomic region "Thoracic spine" or "Lumbar
spine" (the DICOM way of coding a vertebra of a region), which keeps every entry distinct.

Console use::

    from SpineSegLib.core.labels import VERTEBRAE, by_name, name_of
    VERTEBRAE[20].name, VERTEBRAE[20].color   # ('L1', (0.91, 0.58, 0.2))
    by_name("T12").label                       # 19
    name_of(28)                                # 'T13'
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_CODE = ("SCT", "123037004", "Anatomical Structure")
CODING_SCHEME = "SCT"


@dataclass(frozen=True)
class Vertebra:
    label: int                       # VerSe / CTSpine1K id
    name: str                        # C1 ... L5, L6, S1, T13
    region: str                      # cervical / thoracic / lumbar / sacral
    snomed_code: str                 # SNOMED CT code of the type
    snomed_meaning: str              # its code meaning
    color: tuple[float, float, float]  # RGB in [0, 1]
    region_code: tuple[str, str] | None = None  # SNOMED CT anatomic region (code, meaning), T13 / L6 only

    @property
    def color_255(self) -> tuple[int, int, int]:
        return tuple(int(round(c * 255)) for c in self.color)

    @property
    def order(self) -> float:
        """Position along the spine from the skull down (T13 between T12 and L1, L6 between L5 and S1)."""
        return {28: 19.5, 25: 24.5, 26: 25.5}.get(self.label, float(self.label))


def _rows():
    c = [("14806007", "C1 vertebra"), ("39976000", "C2 vertebra"), ("113205007", "C3 vertebra"),
         ("5329002", "C4 vertebra"), ("36978003", "C5 vertebra"), ("36054005", "C6 vertebra"),
         ("87391001", "C7 vertebra")]
    t = [("64864005", "T1 vertebra"), ("53733008", "T2 vertebra"), ("1626008", "T3 vertebra"),
         ("73071006", "T4 vertebra"), ("56401006", "T5 vertebra"), ("45296009", "T6 vertebra"),
         ("62487009", "T7 vertebra"), ("11068009", "T8 vertebra"), ("82687006", "T9 vertebra"),
         ("7610001", "T10 vertebra"), ("12989004", "T11 vertebra"), ("23215003", "T12 vertebra")]
    lum = [("66794005", "L1 vertebra"), ("14293000", "L2 vertebra"), ("36470004", "L3 vertebra"),
           ("11994002", "L4 vertebra"), ("49668003", "L5 vertebra")]
    # RGB colours, written out so that they never change between releases.
    c_col = [(0.40, 0.45, 0.95), (0.70, 0.78, 1.00), (0.30, 0.62, 0.90), (0.62, 0.55, 0.98),
             (0.25, 0.40, 0.80), (0.65, 0.85, 0.98), (0.48, 0.35, 0.85)]
    t_col = [(0.20, 0.70, 0.40), (0.75, 0.90, 0.45), (0.10, 0.55, 0.55), (0.60, 0.85, 0.70),
             (0.35, 0.60, 0.15), (0.90, 0.90, 0.40), (0.15, 0.75, 0.70), (0.55, 0.75, 0.25),
             (0.30, 0.50, 0.35), (0.85, 0.80, 0.25), (0.40, 0.85, 0.55), (0.65, 0.65, 0.10)]
    l_col = [(0.91, 0.58, 0.20), (0.95, 0.80, 0.55), (0.80, 0.30, 0.20), (1.00, 0.65, 0.50),
             (0.70, 0.45, 0.10)]
    rows = []
    for i, ((code, meaning), col) in enumerate(zip(c, c_col)):
        rows.append(Vertebra(1 + i, f"C{i + 1}", "cervical", code, meaning, col))
    for i, ((code, meaning), col) in enumerate(zip(t, t_col)):
        rows.append(Vertebra(8 + i, f"T{i + 1}", "thoracic", code, meaning, col))
    for i, ((code, meaning), col) in enumerate(zip(lum, l_col)):
        rows.append(Vertebra(20 + i, f"L{i + 1}", "lumbar", code, meaning, col))
    rows.append(Vertebra(25, "L6", "lumbar", "51282000", "Vertebra", (0.95, 0.45, 0.65), ("122496007", "Lumbar spine")))
    rows.append(Vertebra(26, "S1", "sacral", "54735007", "Sacrum", (0.85, 0.75, 0.60)))
    rows.append(Vertebra(28, "T13", "thoracic", "51282000", "Vertebra", (0.45, 0.95, 0.85), ("122495006", "Thoracic spine")))
    return rows


VERTEBRAE: dict[int, Vertebra] = {v.label: v for v in _rows()}
_BY_NAME = {v.name.upper(): v for v in VERTEBRAE.values()}
_BY_NAME["SACRUM"] = VERTEBRAE[26]

#: ids of the regular sequence C1 ... L5 (what the IIS label head regresses)
REGULAR_IDS = tuple(range(1, 25))


def by_name(name: str) -> Vertebra:
    """The vertebra called ``name`` (``'L1'``, ``'t12'``, ``'sacrum'``)."""
    try:
        return _BY_NAME[name.strip().upper()]
    except KeyError:
        raise KeyError(f"unknown vertebra name {name!r}; known: {', '.join(v.name for v in VERTEBRAE.values())}") from None


def name_of(label: int) -> str:
    """Name of a label id; ids outside the table are called ``'label <id>'``."""
    v = VERTEBRAE.get(int(label))
    return v.name if v else f"label {int(label)}"


def next_label(label: int, steps: int = 1, allow_t13: bool = False, allow_l6: bool = False) -> int:
    """The id ``steps`` vertebrae further down the spine (negative: up), following the anatomical
    order C1..T12, [T13], L1..L5, [L6], S1. Raises ValueError past either end."""
    sequence = [*range(1, 20), *([28] if allow_t13 else []), *range(20, 25), *([25] if allow_l6 else []), 26]
    idx = sequence.index(int(label)) + steps
    if not 0 <= idx < len(sequence):
        raise ValueError(f"no vertebra {steps:+d} from {name_of(label)}")
    return sequence[idx]


def colour_table_rows():
    """``(id, name, r, g, b)`` rows, 0-255, for colour-table files (Slicer ``.ctbl``, ITK-SNAP)."""
    return [(v.label, v.name, *v.color_255) for v in sorted(VERTEBRAE.values(), key=lambda v: v.label)]
