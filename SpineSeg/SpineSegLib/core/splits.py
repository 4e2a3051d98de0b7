"""The one split vocabulary: every case is in ``train``, ``validation`` or ``test``.

Training recipes, datasets and the evaluation scripts all use these three names. ``test`` cases
are never seen while training or choosing a model (older recipes and run folders call them
``held_out``; :func:`split_name` accepts that spelling).

Console use::

    from SpineSegLib.core.splits import parse_fractions, split_names
    split_names(["a", "b", "c", "d"], parse_fractions("0.5,0.25,0.25"), seed=0)
"""

from __future__ import annotations

import hashlib

from SpineSegLib.core.errors import InputError

SPLITS = ("train", "validation", "test")
_ALIASES = {"held_out": "test", "held-out": "test", "val": "validation"}


def split_name(name: str) -> str:
    """``name`` as one of :data:`SPLITS` (accepts the older ``held_out``)."""
    name = _ALIASES.get(str(name), str(name))
    if name not in SPLITS:
        raise InputError(f"unknown split {name!r} (use {', '.join(SPLITS)})")
    return name


def parse_fractions(text) -> tuple[float, float, float]:
    """``"0.7,0.15,0.15"`` (or a 3-sequence) -> train / validation / test fractions summing to 1."""
    if isinstance(text, (tuple, list)):
        parts = [float(v) for v in text]
    else:
        try:
            parts = [float(v) for v in str(text).split(",")]
        except ValueError:
            raise InputError(f"--split {text}: give three fractions, e.g. 0.7,0.15,0.15") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise InputError(f"--split {text}: give three non-negative fractions for train, validation and test")
    total = sum(parts)
    return tuple(p / total for p in parts)


def split_names(names: list[str], fractions, seed: int = 0) -> dict[str, str]:
    """``{name: split}`` with exact counts: validation and test rounded, at least one training case
    while the train fraction is above zero; the order is a seeded permutation."""
    n = len(names)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    while n_val + n_test >= n and n > 0 and fractions[0] > 0:
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        elif n_val > 0:
            n_val -= 1
        else:
            break
    import numpy as np     # here, not at the top: the command line's parser imports SPLITS and must start fast

    order = np.random.default_rng(seed).permutation(n)
    split = {}
    for rank, idx in enumerate(order):
        split[names[idx]] = "validation" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return {k: split[k] for k in names}


def hashed_split(name: str, fractions, seed: int = 0) -> str:
    """The split of a case added later: a stable function of ``(seed, name)``."""
    u = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < fractions[0] else "validation" if u < fractions[0] + fractions[1] else "test"
