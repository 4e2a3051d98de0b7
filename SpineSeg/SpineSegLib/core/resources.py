"""Files shipped inside the package -- bundled models, label tables, training recipes, samples --
and the data roots that training recipes name by kind.

The files live in ``SpineSegLib/resources/<kind>/`` and are found through :mod:`importlib.resources`,
so the same lookup works in a source checkout, an installed wheel and a 3D Slicer extension (where
SpineSegLib is installed beside the module files).

Datasets are never shipped: a recipe names each source by kind with a path inside a data root
(``path = "mr/vertebral-bodies-zukic"``); the root comes from ``--data KIND=PATH`` (a source's own
root) or the environment variable ``SPINESEG_DATA`` (a folder laid out like ``shared/data``).

Console use::

    from SpineSegLib.core.resources import resource_dir, find_resource
    resource_dir("models")                         # .../SpineSegLib/resources/models
    find_resource("recipes", "mr-vertebral-bodies")  # the bundled recipe, by name or by path
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from SpineSegLib.core.errors import InputError

KINDS = ("models", "labels", "recipes", "samples")
SUFFIXES = {"models": ".pt", "recipes": ".toml"}
DATA_ENV = "SPINESEG_DATA"


def resource_dir(kind: str) -> Path:
    """The folder of bundled ``kind`` files (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r} (use {', '.join(KINDS)})")
    return Path(str(resources.files("SpineSegLib").joinpath("resources", kind)))


def bundled(kind: str) -> list[Path]:
    """The bundled files (or sample folders) of ``kind``, sorted by name."""
    folder = resource_dir(kind)
    if not folder.is_dir():
        return []
    suffix = SUFFIXES.get(kind)
    return sorted(p for p in folder.iterdir() if (suffix is None or p.name.endswith(suffix))
                  and not p.name.startswith((".", "_")) and p.name != "README.md")


def find_resource(kind: str, name) -> Path:
    """``name`` as a path when it exists, else the bundled ``kind`` file of that name (suffix optional)."""
    path = Path(os.path.expanduser(str(name)))
    if path.exists():
        return path
    suffix = SUFFIXES.get(kind, "")
    for candidate in (resource_dir(kind) / path.name, resource_dir(kind) / f"{path.name}{suffix}"):
        if candidate.exists():
            return candidate
    names = ", ".join(p.name[: -len(suffix)] if suffix else p.name for p in bundled(kind)) or "none"
    raise InputError(f"{name}: no such file, and no bundled {kind[:-1]} of that name (bundled: {names})")


def data_root() -> Path | None:
    """The data root from ``SPINESEG_DATA``, or None when it is not set."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def source_root(kind: str, path: str | None, overrides: dict | None = None) -> Path:
    """Where a recipe's ``kind`` source lives: ``overrides[kind]`` (from ``--data KIND=PATH``), else
    ``$SPINESEG_DATA/<path>``. Raises :class:`InputError` naming both ways when neither is given."""
    if overrides and kind in overrides:
        return Path(overrides[kind]).expanduser().resolve()
    root = data_root()
    if root is None or not path:
        where = f"to a data folder that holds {path}" if path else "(this source names no path inside it)"
        raise InputError(f"dataset {kind!r}: pass --data {kind}=PATH, or set {DATA_ENV} {where}")
    return root / path
