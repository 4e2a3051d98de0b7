"""The cases of a training run: listed from the recipe's ``[[data.sources]]``, split into train /
validation / test (the ``core.splits`` names) by the recipe's ``[data]`` patterns, and put on the
model grid.

Console use::

    from SpineSegLib.iis.train.recipe import load_train_config
    from SpineSegLib.iis.train.cases import gather_cases, split_cases
    cfg = load_train_config("mr-vertebral-bodies-small")
    {name: len(cases) for name, cases in split_cases(gather_cases(cfg), cfg).items()}
    # {'train': 35, 'validation': 6, 'test': 9}
"""

from __future__ import annotations

import fnmatch
import time

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.splits import SPLITS
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.train.prepared import prepare_case
from SpineSegLib.iis.train.readers import Case, read_dataset
from SpineSegLib.iis.train.recipe import TrainConfig


def gather_cases(cfg: TrainConfig) -> list[Case]:
    """Every case of the recipe's sources (ids unique, modality that of the model)."""
    cases = []
    for source in cfg.data.sources:
        cases.extend(read_dataset(source.kind, source.folder(), **source.options))
    ids = [c.case_id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"case ids occur twice: {', '.join(dupes[:5])} (two sources list the same cases?)")
    for c in cases:
        if c.modality != cfg.model.modality:
            raise InputError(f"{c.case_id} is {c.modality.upper()} but the model is for {cfg.model.modality.upper()}")
    return cases


def _matches(case_id: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(case_id, p) for p in patterns)


def split_cases(cases: list[Case], cfg: TrainConfig) -> dict:
    """``{"train": [...], "validation": [...], "test": [...]}`` (lists of Case).

    ``test`` cases are those named in ``[data] test``; ``validation`` those named in ``[data]
    validation`` or, when it is empty, a seeded random ``validation_fraction`` of the cases not
    named in ``train``; ``train`` the rest (those named in ``train``, when it is given).
    """
    d = cfg.data
    for name, patterns in zip(SPLITS, (d.train, d.validation, d.test)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(c.case_id, p) for c in cases):
                raise InputError(f"[data] {name}: {p!r} matches no case (ids look like {cases[0].case_id!r})")
    test = [c for c in cases if _matches(c.case_id, d.test)]
    rest = [c for c in cases if c not in test]
    if d.validation:
        val = [c for c in rest if _matches(c.case_id, d.validation)]
    else:
        # a random fraction of the cases not named in `train` (at least one case stays for training)
        pool = [c for c in rest if not (d.train and _matches(c.case_id, d.train))]
        n_val = min(int(round(d.validation_fraction * len(rest))), len(pool) - (0 if d.train else 1))
        order = np.random.default_rng(d.split_seed).permutation(len(pool))
        val = [pool[i] for i in sorted(order[:max(n_val, 0)])]
    train = [c for c in rest if c not in val and (not d.train or _matches(c.case_id, d.train))]
    if d.max_train_cases and len(train) > d.max_train_cases:
        rng = np.random.default_rng(d.split_seed + 1)
        keep = sorted(rng.permutation(len(train))[: d.max_train_cases])
        train = [train[i] for i in keep]
    if not train:
        raise InputError("no training cases left after the validation / test split")
    return dict(zip(SPLITS, (train, val, test)))


def prepare_cases(cases, config: IISConfig, cache_dir, log=print) -> list:
    """``prepare_case`` for each case; cases without a labelled vertebra on the model grid are skipped."""
    out = []
    t = time.time()
    for c in cases:
        p = prepare_case(c, config, cache_dir)
        if not p.vertebrae:
            log(f"  {c.case_id}: no labelled vertebra on the model grid; skipped")
            continue
        out.append(p)
    log(f"  {len(out)} cases on the model grid in {time.time() - t:.1f} s")
    return out
