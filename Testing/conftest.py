"""Shared fixtures: paths to the real scans in ../shared/data (next to the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPINESEG_DATA", REPO.parent / "shared" / "data"))
# Recipes name their datasets by kind; the library finds the data root through SPINESEG_DATA (also in the
# child processes the tests start).
os.environ.setdefault("SPINESEG_DATA", str(DATA))


def data_path(*parts) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data missing: {path} (the tests need ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return data_path()


@pytest.fixture(scope="session")
def lidc_dir() -> Path:
    return data_path("ct", "lidc-idri-0001")
