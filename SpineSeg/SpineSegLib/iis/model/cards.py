"""Model cards: the ``.json`` or ``.md`` file beside a weights file (``NAME.json`` / ``NAME.md`` for ``NAME.pt``).

* ``.json``: any of ``name``, ``summary``, ``description``, ``modality`` (ct | mr), ``variant``,
  ``config`` (the :class:`~SpineSegLib.iis.model.config.IISConfig` fields), ``per_pass_seconds`` (``{"cpu":
  1.2, "cuda": 0.03}``, measured), ``sha256``, ``license``, ``citation``, ``training_data``, ``metrics``;
* ``.md``: the first ``# heading`` is the name, the first paragraph after it the summary; an optional
  front matter block (``---`` lines around ``key: value`` lines) gives the same keys as the JSON card.

Reading a card needs no torch: the catalogue (``catalog.py``) lists models from their cards, and
``checkpoint.py`` checks a weights file against the SHA-256 its JSON card records.

Console use::

    from SpineSegLib.iis.model.cards import card_of, card_sha256, read_card
    card = read_card(card_of("mr-vertebral-bodies.pt"))     # the .json card, else the .md one
    card["name"], card.get("summary"), card_sha256("mr-vertebral-bodies.pt")
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from SpineSegLib.core.errors import InputError


def _front_matter(text: str) -> tuple[dict, str]:
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        return {}, text
    values = {}
    for line in text[3:end].splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            value = value.strip().strip('"').strip("'")
            try:
                values[key.strip()] = json.loads(value)
            except ValueError:
                values[key.strip()] = value
    return values, text[end + 4:]


def read_card(path) -> dict:
    """A model card (``.json`` or ``.md``) as a dict (``name``/``summary`` filled in for Markdown)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{path}: not a valid JSON model card ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a JSON model card must hold an object")
        return data
    data, body = _front_matter(text)
    heading = re.search(r"^#\s+(.+)$", body, re.MULTILINE)
    if heading and "name" not in data:
        data["name"] = heading.group(1).strip()
    rest = body[heading.end():] if heading else body
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", rest) if p.strip() and not p.strip().startswith("#")]
    if paragraphs and "summary" not in data:
        data["summary"] = " ".join(paragraphs[0].split())
    return data


def card_of(weights) -> Optional[Path]:
    """The card beside a weights file: ``NAME.json``, else ``NAME.md``, else None."""
    weights = Path(weights)
    for suffix in (".json", ".md"):
        candidate = weights.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def card_sha256(path) -> Optional[str]:
    """The SHA-256 that the JSON model card beside a weights file (``NAME.json`` for ``NAME.pt``) records."""
    card = Path(path).with_suffix(".json")
    value = read_card(card).get("sha256") if card.is_file() else None
    return str(value).lower() if value else None
