"""The most likely anatomical labelling of the vertebrae a traversal found (Lessmann et al. 2019, 3.4).

The network regresses one number per vertebra on the scale of ``labels.Vertebra.order``
(C1 = 1 ... T12 = 19, L1 = 20 ... L5 = 24; the transitional T13 = 19.5, L6 = 24.5 and the
sacrum S1 = 25.5 sit between). The paper reads a regressed value as a probability spread over
the two nearest labels -- 22.8 is 80 % L4 (23) and 20 % L3 (22) -- and picks, among all
sequences of *consecutive* labels that fit the found vertebrae, the one with the highest mean
probability. Only complete vertebrae vote (all of them if none is complete); the others take the
label their position in the winning sequence gives them.

Sequences run along a *chain* of vertebrae from the skull down: the regular chain C1 ... L5, S1
(S1 for models that regress the sacrum; a model that never regresses past L5 only reaches S1
when the evidence points beyond L5). A regressed value is spread over the two chain members whose
orders bracket it (on the regular chain between integers this is exactly the paper's rule; S1 at
25.5 is 1.5 from L5). Values beyond the chain's ends count fully for the end member.

Transitional vertebrae (``allow_t13`` / ``allow_l6``): an extra chain with T13 between T12 and L1
(or L6 between L5 and S1) is scored in the same way, its windows that contain the transitional
vertebra are the candidates. Because a chain with one more member can always absorb a little
label noise, a transitional sequence is chosen only when all of the following hold (the rule is
deliberately strict: a wrong T13/L6 shifts every label below or above it):

1. it beats the best regular sequence by at least ``transitional_margin`` (0.10) in mean probability;
2. the transitional vertebra itself votes (is complete) and gives its label at least 0.5
   probability -- i.e. the network really regressed a value near 19.5 (T13) or 24.5 (L6).

With only regressed values near integers (a network trained on regular spines), rule 2 never
holds and the result is the paper's. At most one transitional vertebra per spine is considered.

When the label head gives no information (every voting value < 0.5: e.g. a SPIDER model whose
label head was not trained), the sequence is anchored instead: the lowest found vertebra is
called L5 and the others follow upward -- the SPIDER convention ("the most caudal vertebra,
usually L5, is 1"). ``LabelFit.anchored`` says so.

Console use::

    from SpineSegLib.core.label_sequence import fit_label_sequence
    fit = fit_label_sequence([24.1, 22.8, 22.1, 20.9], complete=[True, True, True, False], direction="up")
    fit.ids, fit.names, round(fit.score, 2)      # [24, 23, 22, 21], ['L5', 'L4', 'L3', 'L2'], 0.9
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from SpineSegLib.core.labels import VERTEBRAE, name_of

#: the regular chain from the skull down: C1 ... L5, S1
REGULAR_CHAIN = tuple(range(1, 25)) + (26,)
T13_CHAIN = tuple(range(1, 20)) + (28,) + tuple(range(20, 25)) + (26,)
L6_CHAIN = tuple(range(1, 25)) + (25, 26)
TRANSITIONAL = {"T13": (28, T13_CHAIN), "L6": (25, L6_CHAIN)}


def chain_probabilities(value: float, chain: Sequence[int]) -> np.ndarray:
    """Probability of each chain member for a regressed ``value`` (linear between neighbours)."""
    orders = np.array([VERTEBRAE[v].order for v in chain], dtype=float)
    p = np.zeros(len(chain))
    v = float(value)
    if not np.isfinite(v):
        return p
    if v <= orders[0]:
        p[0] = 1.0
    elif v >= orders[-1]:
        p[-1] = 1.0
    else:
        hi = int(np.searchsorted(orders, v, side="right"))
        lo = hi - 1
        w = (v - orders[lo]) / (orders[hi] - orders[lo])
        p[lo], p[hi] = 1.0 - w, w
    return p


@dataclass
class LabelFit:
    """The chosen labelling; lists are in the order of the vertebrae given (traversal order)."""

    ids: list                       # VerSe ids (SpineSegLib.core.labels)
    score: float                    # mean probability of the voting vertebrae under this labelling
    voters: list                    # which vertebrae voted
    transitional: Optional[str] = None   # None, "T13" or "L6"
    anchored: bool = False          # labels were uninformative: lowest vertebra taken as L5
    regular_score: float = float("nan")  # best regular sequence (for comparison)
    alternatives: list = field(default_factory=list)  # [(score, ids, transitional)] best first

    @property
    def names(self) -> list:
        return [name_of(v) for v in self.ids]


def _windows(values, voters, chain, must_include=None):
    """(score, start) of every window of len(values) consecutive chain members (top-down order)."""
    n = len(values)
    probs = np.array([chain_probabilities(v, chain) for v in values])     # [n, len(chain)]
    out = []
    for start in range(0, len(chain) - n + 1):
        members = range(start, start + n)
        if must_include is not None and must_include not in members:
            continue
        p = probs[np.arange(n), np.arange(start, start + n)]
        out.append((float(p[voters].mean()), start, p))
    return out


def fit_label_sequence(regressed: Sequence[float], complete: Sequence[bool], direction: str = "up",
                       allow_t13: bool = False, allow_l6: bool = False,
                       transitional_margin: float = 0.10) -> LabelFit:
    """Maximum-likelihood consecutive labelling (see the module docstring).

    ``regressed`` and ``complete`` are in traversal order; ``direction`` is the traversal's
    ("up": the first vertebra is the lowest).
    """
    n = len(regressed)
    if len(complete) != n:
        raise ValueError("regressed and complete must have the same length")
    if n == 0:
        return LabelFit([], float("nan"), [])
    if direction not in ("up", "down"):
        raise ValueError(f"unknown direction {direction!r}")
    # top-down order: the traversal's order reversed when it went up
    order = list(range(n))[::-1] if direction == "up" else list(range(n))
    values = [float(regressed[i]) for i in order]
    voters = np.array([bool(complete[i]) for i in order])
    if not voters.any():
        voters[:] = True

    voters_out = [bool(voters[order.index(i)]) for i in range(n)]

    def back(top_down_ids):
        ids = [0] * n
        for pos, i in enumerate(order):
            ids[i] = int(top_down_ids[pos])
        return ids

    informative = any(v >= 0.5 for v, vote in zip(values, voters) if vote)
    if not informative:
        return _anchored(n, back, voters_out)

    candidates = []   # (score, ids top-down, transitional)
    if n <= len(REGULAR_CHAIN):
        for score, start, _ in _windows(values, voters, REGULAR_CHAIN):
            candidates.append((score, list(REGULAR_CHAIN[start:start + n]), None))
    regular_best = max((c[0] for c in candidates), default=-1.0)

    for name, (tid, chain) in TRANSITIONAL.items():
        if not (allow_t13 if name == "T13" else allow_l6) or n > len(chain):
            continue
        t_index = chain.index(tid)
        for score, start, p in _windows(values, voters, chain, must_include=t_index):
            pos = t_index - start
            if not voters[pos] or p[pos] < 0.5 or score < regular_best + transitional_margin:
                continue
            candidates.append((score, list(chain[start:start + n]), name))

    if not candidates:  # more vertebrae than any chain holds
        return _anchored(n, back, voters_out)
    # best score; among equal scores the regular sequence, then the upper one
    candidates.sort(key=lambda c: (-c[0], c[2] is not None, [VERTEBRAE[v].order for v in c[1]]))
    best = candidates[0]
    return LabelFit(
        ids=back(best[1]), score=best[0], voters=voters_out, transitional=best[2],
        regular_score=regular_best,
        alternatives=[(round(c[0], 4), back(c[1]), c[2]) for c in candidates[:5]],
    )


def _anchored(n, back, voters) -> LabelFit:
    """The lowest vertebra is L5 and the others follow upward (ids below C1 are clipped to C1)."""
    top_down = [max(24 - (n - 1 - pos), 1) for pos in range(n)]
    return LabelFit(back(top_down), float("nan"), voters, anchored=True)
