"""Anatomical names for model-free vertebra segments from the ribs, by maximum likelihood.

The anchors (``classical.ribs``):

- **T12**: the lowest rib-bearing segment, when a whole segment without ribs lies below it (otherwise
  the lowest rib in view may belong to any thoracic vertebra). T12's rib articulates with T12 alone, so
  this anchor is exact where the ribs are found (measured: right on LIDC-IDRI-0001 and the abdominal
  TotalSegmentator example).
- **T1** (weaker): the highest rib-bearing segment, when a whole segment without ribs lies above it. Upper rib
  heads sit on the disc between two vertebrae, so this anchor is often one level off; it is used only
  when T12 is not in view.
- **Rib count** (T13 / eleven ribs): with whole rib-free vertebrae above and below, rib-bearing segments
  spanning 13 make the lowest one T13, spanning 11 make the names uncertain.
- **Lumbar count** (L6): with the lowest rib and the pelvis in view, six rib-free vertebrae between them
  make the lowest one L6; four (or more than six) make the names uncertain.

Every anchor turns into one "regressed" value per segment on the ``core.labels`` order scale (C1 = 1,
T12 = 19, L1 = 20, ...: the anchor's order plus or minus the segments between), and
``core.label_sequence.fit_label_sequence`` -- the maximum-likelihood consecutive labelling that also
names the IIS network's vertebrae -- picks the labels (allowing T13 when the rib count says so). With no
anchor, the segments are still labelled (the lowest one in view called L5, the IIS convention) but the
result says the names are uncertain: nothing in view tells which vertebrae these are.

- **S1**: a tall, large bone beside the lowest segments only (an ilium, ``classical.ribs``), with at
  least three complete rib-free vertebrae right above it: the lowest segment (the sacrum has no disc
  below it) is S1 -- the iliac crest also reaches L5, so the highest segment beside the ilium is not. With T12 in
  view as well, the two must agree (five lumbar vertebrae between them; six make an L6). (A test of the
  bone fraction beside each segment could not tell the iliac wings from contrast-filled kidneys and the
  lowest ribs on the shared scans.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from SpineSegLib.core.label_sequence import fit_label_sequence
from SpineSegLib.core.labels import VERTEBRAE, by_name

T12_ORDER, T1_ORDER = by_name("T12").order, by_name("T1").order
T13_ORDER, L5_ORDER, L6_ORDER, S1_ORDER = by_name("T13").order, by_name("L5").order, by_name("L6").order, \
    by_name("S1").order
PELVIS_GAP = 3


@dataclass
class Naming:
    ids: list[int]                     # VerSe id per segment, bottom to top
    certain: bool
    note: str
    evidence: list[list[str]] = field(default_factory=list)   # per segment


def name_segments(ribs: list[tuple[bool, bool]], complete: list[bool], ilium: list[bool] | None = None) -> Naming:
    """Names for ``len(ribs)`` segments, bottom to top; ``ribs[i] = (left, right)``; ``ilium[i]``: a large
    bone beside the lowest segments only touches segment ``i`` (``classical.ribs``)."""
    n = len(ribs)
    bearing = [i for i, (left, right) in enumerate(ribs) if left or right]
    evidence = [[_rib_text(*r)] for r in ribs]
    pelvis = _pelvis_group(ilium or [False] * n, bearing, complete)
    if pelvis:
        bearing = [i for i in bearing if i > pelvis[-1]]
        for i in pelvis:
            evidence[i][0] = "an ilium beside it, below complete rib-free vertebrae"
    anchor = _anchor(bearing, pelvis, complete, evidence)
    if anchor is None:
        return _by_convention(n, bearing, complete, evidence)
    name, at = anchor
    if name == "S1":
        values = [S1_ORDER + (at - i) if i <= at else L5_ORDER - (i - at - 1) for i in range(n)]
    else:
        values = [(T12_ORDER if name == "T12" else T1_ORDER) + (at - i) for i in range(n)]
    problems = []
    allow_t13 = False
    whole_above = any(complete[i] for i in range(bearing[-1] + 1, n)) if bearing else False
    if name == "T12" and whole_above:
        span = bearing[-1] - bearing[0] + 1
        if span == 13:
            values = [T12_ORDER + (at - i) if i < at else T13_ORDER if i == at else T12_ORDER - (i - at - 1)
                      for i in range(n)]
            allow_t13 = True
            evidence[at].append("rib-bearing vertebrae span 13 segments: the lowest is T13")
        elif span == 11:
            problems.append("rib-bearing vertebrae span only 11 segments (eleven ribs, or a missed rib)")
    lumbar = at - pelvis[0] - 1 if name == "T12" and pelvis else None
    if lumbar == 6:      # a sixth rib-free vertebra above the sacrum: L6, then S1
        values = [v if i >= at - 5 else L6_ORDER if i == at - 6 else S1_ORDER + (at - 7 - i)
                  for i, v in enumerate(values)]
        evidence[at - 6].append("six rib-free vertebrae between the lowest rib (T12) and the pelvis: L6")
    elif lumbar is not None and lumbar != 5:
        problems.append(f"the ribs (T12) and the pelvis (S1) disagree: {lumbar} vertebrae between them, 5 expected")
    fit = fit_label_sequence(values, complete, direction="up", allow_t13=allow_t13, allow_l6=lumbar == 6)
    if lumbar == 6 and fit.transitional != "L6":
        problems.append("six rib-free vertebrae above the pelvis, but the L6 sequence did not fit")
    return Naming(fit.ids, name != "T1" and not problems, _note(name, fit.ids[at], lumbar, problems), evidence)


def _anchor(bearing, pelvis, complete, evidence) -> tuple[str, int] | None:
    """The anchor that names the segments: T12 (lowest rib), S1 (pelvis) or T1 (first rib), or None."""
    n = len(complete)
    if bearing and any(complete[i] for i in range(bearing[0])):
        evidence[bearing[0]].append("lowest rib-bearing vertebra with a whole rib-free one below it: T12")
        return "T12", bearing[0]
    if pelvis:
        evidence[pelvis[0]].append("the lowest segment, beside the ilium, with no disc below it: S1")
        return "S1", pelvis[0]
    if bearing and any(complete[i] for i in range(bearing[-1] + 1, n)):
        evidence[bearing[-1]].append("highest rib-bearing vertebra with a whole rib-free one above it: T1 "
                                     "(can be one level off)")
        return "T1", bearing[-1]
    return None


def _by_convention(n, bearing, complete, evidence) -> Naming:
    """No anchor: ribs on every vertebra make them thoracic (the lowest called T12), no ribs lumbar (L5)."""
    thoracic = bool(bearing)
    values = [T12_ORDER - i for i in range(n)] if thoracic else [0.0] * n
    fit = fit_label_sequence(values, complete, direction="up")
    why = ("only one vertebra in view (no disc level found), nothing to count from" if n == 1 else
           "ribs on every whole vertebra in view (neither the first nor the last rib-bearing vertebra is proven "
           "in view)" if bearing else "no ribs and no other anatomical anchor in view")
    guess = "T12" if thoracic else "L5"
    return Naming(fit.ids, False, f"names uncertain: {why}; the lowest vertebra was called {guess} by convention",
                  evidence)


def _note(name: str, anchor_id: int, lumbar, problems: list[str]) -> str:
    if problems:
        return f"names uncertain: {'; '.join(problems)}; named from the {'ribs' if name != 'S1' else 'pelvis'}"
    if name == "T12":
        note = f"named from the ribs: the lowest rib-bearing vertebra is {VERTEBRAE[anchor_id].name}"
        if lumbar == 5:
            note += " and the pelvis agrees (S1)"
        elif lumbar == 6:
            note += ", with six lumbar vertebrae above the pelvis (L6)"
        return note
    if name == "S1":
        return "named from the pelvis: the lowest segment, beside the iliac bones, is S1; the lowest rib is not in view"
    return "names less certain: named from the first rib (T1); the lowest rib is not in view"


def _pelvis_group(ilium: list[bool], bearing: list[int], complete: list[bool]) -> list[int]:
    """The lowest segments beside an ilium, when at least ``PELVIS_GAP`` complete vertebrae without ribs
    lie right above them (in a crop whose vertebrae are all cut, nothing is called pelvis)."""
    run = []
    for i, beside in enumerate(ilium):
        if not beside:
            break
        run.append(i)
    if not run:
        return []
    above = range(run[-1] + 1, min(run[-1] + 1 + PELVIS_GAP, len(ilium)))
    clear = len(above) == PELVIS_GAP and all(complete[i] and i not in bearing for i in above)
    return run if clear else []


def _rib_text(left: bool, right: bool) -> str:
    if left and right:
        return "ribs on both sides"
    if left or right:
        return f"rib on the {'left' if left else 'right'} side only"
    return "no rib"
