"""Self-describing IIS weights files.

A checkpoint is a ``torch.save`` dictionary holding only plain data (loaded with
``weights_only=True``)::

    {"format": "spineseg-iis", "format_version": 1,
     "config": IISConfig.to_dict(), "state_dict": ..., "metadata": {...}}

``metadata`` carries free information (training data, iterations, metrics, the label convention).
Training checkpoints add ``optimizer``/``iteration``/``rng`` entries for resuming.

Console use::

    from SpineSegLib.iis.model.catalog import resolve_model
    from SpineSegLib.iis.model.checkpoint import load_model
    net, config, meta = load_model(resolve_model("mr-vertebral-bodies"), expected_modality="mr")
"""

from __future__ import annotations

from pathlib import Path

import torch

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.files import replaced_atomically, sha256_of
from SpineSegLib.iis.model.cards import card_sha256
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.model.network import IISNet

FORMAT = "spineseg-iis"
FORMAT_VERSION = 1


def save_checkpoint(path, model: IISNet, metadata: dict | None = None, **extra) -> Path:
    """Write ``model`` (and ``extra`` entries such as optimizer state) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
        **extra,
    }
    with replaced_atomically(path, ".pt") as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path, expected_sha256: str | None = None) -> dict:
    """Load the raw checkpoint dictionary, with clear errors for missing or foreign files.

    The file is checked against ``expected_sha256``, else against the SHA-256 of its model card
    (``NAME.json`` beside ``NAME.pt``, as for the bundled models), when there is one.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model weights not found: {path}")
    expected_sha256 = expected_sha256 or card_sha256(path)
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise InputError(f"{path}: SHA-256 {actual[:12]}... does not match the expected {expected_sha256[:12]}... "
                             "(corrupted or replaced weights file)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for foreign files
        raise InputError(f"{path}: not a SpineSeg IIS weights file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a SpineSeg IIS weights file")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path}: written by a newer SpineSeg (format {data['format_version']}); please update")
    return data


def load_model(path, expected_modality: str | None = None, device="cpu", expected_sha256: str | None = None):
    """Load a weights file: returns ``(model in eval mode, IISConfig, metadata)``.

    ``expected_modality`` ('ct' or 'mr') rejects a model trained for the other modality.
    """
    data = read_checkpoint(path, expected_sha256)
    config = IISConfig.from_dict(data["config"])
    if expected_modality is not None and config.modality != expected_modality:
        raise InputError(f"{path}: this is a {config.modality.upper()} model, but the input is "
                         f"{expected_modality.upper()}; choose a {expected_modality.upper()} model")
    model = IISNet(config)
    model.load_state_dict(data["state_dict"])
    model.to(device).eval()
    return model, config, data.get("metadata", {})
