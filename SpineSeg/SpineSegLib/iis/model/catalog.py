"""The IIS models a user can pick: weights files (``*.pt``) with a model card beside them.

Bundled models live in ``SpineSegLib/resources/models`` (:func:`models_folders` finds it in
an installed extension and in a source checkout); a user may pick any other weights file. A model card
has the weights file's name with ``.json`` or ``.md`` instead of ``.pt`` (``cards.py`` reads it).

Reading the catalogue needs no torch; the configuration comes from the card, else (when torch is
installed) from the weights file itself.

Console use::

    from SpineSegLib.iis.model.catalog import list_models, resolve_model
    for m in list_models():
        print(m.name, m.modality, m.path, m.summary)
    resolve_model("mr-vertebral-bodies")     # a bundled model by name, or any path to a .pt file
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.resources import resource_dir
from SpineSegLib.iis.model.cards import card_of, read_card
from SpineSegLib.iis.model.config import IISConfig


def models_folders() -> list[Path]:
    """Folders that hold bundled models: ``SpineSegLib/resources/models`` (package data, the same in a
    checkout, a wheel and the Slicer extension)."""
    folder = resource_dir("models")
    return [folder] if folder.is_dir() else []


@dataclass
class ModelInfo:
    path: Path
    name: str
    summary: str = ""
    card_path: Optional[Path] = None
    card: dict = field(default_factory=dict)
    config: Optional[IISConfig] = None
    bundled: bool = False

    @property
    def modality(self) -> Optional[str]:
        if self.config is not None:
            return self.config.modality
        value = self.card.get("modality")
        return str(value).lower() if value else None

    @property
    def experimental(self) -> bool:
        """The card marks the model experimental (listed last, never preselected)."""
        return bool(self.card.get("experimental"))

    @property
    def per_pass_seconds(self) -> dict:
        values = self.card.get("per_pass_seconds") or {}
        return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6 if self.path.exists() else 0.0

    def label(self) -> str:
        """What a model selector shows."""
        tags = ([self.modality.upper()] if self.modality else []) + (["experimental"] if self.experimental else [])
        return f"{self.name} [{', '.join(tags)}]" if tags else self.name

    def details(self) -> str:
        """A few lines for the GUI: summary, architecture, source."""
        lines = [self.summary] if self.summary else []
        if self.config is not None:
            c = self.config
            patch = " x ".join(str(p) for p in c.patch_size)
            voxel = " x ".join(f"{v:g}" for v in c.voxel_size_mm)
            lines.append(f"{c.modality.upper()} {c.variant}, width {c.width}, {c.levels} levels, patch {patch} voxels "
                         f"of {voxel} mm, traverses {c.direction}wards")
        lines.append(("bundled: " if self.bundled else "file: ") + str(self.path))
        return "\n".join(lines)


def _config_from_weights(path: Path) -> Optional[IISConfig]:
    if importlib.util.find_spec("torch") is None:
        return None
    from SpineSegLib.iis.model.checkpoint import read_checkpoint

    return IISConfig.from_dict(read_checkpoint(path)["config"])


def describe_model(path, bundled: bool = False, read_weights: bool = True) -> ModelInfo:
    """A :class:`ModelInfo` for a weights file (its card when there is one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model weights not found: {path}")
    card_path = card_of(path)
    card = read_card(card_path) if card_path else {}
    config = None
    if isinstance(card.get("config"), dict):
        config = IISConfig.from_dict(card["config"])
    elif read_weights:
        config = _config_from_weights(path)
    summary = str(card.get("summary") or card.get("description") or (config.description if config else "") or "")
    return ModelInfo(path=path, name=str(card.get("name") or path.stem), summary=summary, card_path=card_path,
                     card=card, config=config, bundled=bundled)


def list_models(folders=None, read_weights: bool = False) -> list[ModelInfo]:
    """Every ``*.pt`` in ``folders`` (default: :func:`models_folders`), sorted by name with experimental
    models last; a model whose card cannot be read is still listed, with the problem as its summary."""
    out, seen = [], set()
    for folder in (folders if folders is not None else models_folders()):
        for path in sorted(Path(folder).glob("*.pt")):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                out.append(describe_model(path, bundled=folders is None, read_weights=read_weights))
            except InputError as exc:
                out.append(ModelInfo(path=path, name=path.stem, summary=f"(model card unreadable: {exc})",
                                     bundled=folders is None))
    return sorted(out, key=lambda m: (m.experimental, m.name.lower()))


def resolve_model(name_or_path) -> Path:
    """A weights file from a path, or from the name of a bundled model (``mr-vertebral-bodies``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in ("", ".pt") and len(path.parts) == 1:
        for folder in models_folders():
            candidate = folder / f"{path.stem}.pt"
            if candidate.is_file():
                return candidate
    bundled = ", ".join(sorted(p.stem for f in models_folders() for p in f.glob("*.pt"))) or "none found"
    raise InputError(f"model weights not found: {name_or_path} (neither a file nor a bundled model; bundled: {bundled})")
