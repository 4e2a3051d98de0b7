"""The dependency check agrees with what the supported 3D Slicer releases ship: on Slicer 5.10 or 5.12 nothing that
comes with Slicer is reported missing (and so nothing of Slicer's is ever reinstalled); on an older Slicer (5.6
ships SimpleITK 2.2.1) SimpleITK is reported and refused, never installed."""

from __future__ import annotations

import re

import pytest
from conftest import REPO
from test_slicer_api import OLDEST

from SpineSegLib.slicer import dependencies


def _as_if_installed(monkeypatch, versions: dict) -> None:
    """Make :func:`dependencies.installed_version` answer as a Slicer with these package versions would."""
    real = dependencies.installed_version
    monkeypatch.setattr(dependencies, "installed_version",
                        lambda r: versions.get(r.pip_name, real(r)))


def test_the_oldest_supported_slicer_is_the_one_the_api_check_and_readme_use():
    assert dependencies.OLDEST_SLICER == OLDEST.rsplit(".", 1)[0] == "5.10"
    assert f"{dependencies.OLDEST_SLICER} or newer" in (REPO / "README.md").read_text(encoding="utf-8")
    assert min(dependencies.SLICER_SHIPS, key=lambda v: tuple(map(int, v.split(".")))) == OLDEST


@pytest.mark.parametrize("release", sorted(dependencies.SLICER_SHIPS))
def test_what_slicer_ships_satisfies_the_requirements(release, monkeypatch):
    shipped = dependencies.SLICER_SHIPS[release]
    bundled = [r for r in dependencies.CLASSICAL + dependencies.IIS if r.comes_with_slicer]
    assert {r.pip_name for r in bundled} == set(shipped), "every package Slicer ships is marked comes_with_slicer"
    for r in bundled:
        assert dependencies.version_at_least(shipped[r.pip_name], r.minimum), (
            f"Slicer {release} ships {r.pip_name} {shipped[r.pip_name]}, the check demands {r.minimum}")
    _as_if_installed(monkeypatch, shipped)
    missing = dependencies.check(dependencies.CLASSICAL + dependencies.IIS)
    assert not [m for m in missing if m.requirement.comes_with_slicer]


def test_an_older_slicer_is_told_to_update_and_its_simpleitk_is_never_reinstalled(monkeypatch):
    _as_if_installed(monkeypatch, {"SimpleITK": "2.2.1", "numpy": "1.26.4", "scipy": "1.11.4"})   # Slicer 5.6
    missing = dependencies.check(dependencies.CLASSICAL)
    assert [m.requirement.pip_name for m in missing] == ["SimpleITK"]
    plan = dependencies.install_plan(missing)
    assert plan.pip == [] and plan.torch is None
    text = dependencies.describe(plan)
    assert "SimpleITK 2.2.1 is older than the 2.3" in text and "5.10 or newer" in text


def test_packages_slicer_ships_are_never_in_a_pip_install():
    M = dependencies.Missing
    everything = [M(r, None) for r in dict.fromkeys(dependencies.CLASSICAL + dependencies.IIS)]
    plan = dependencies.install_plan(everything)
    installed = {re.split(r"[<>=]", spec)[0] for spec in plan.pip}
    assert installed == {"scikit-image", "scikit-learn"}
    assert {m.requirement.pip_name for m, _ in plan.refused} == {"SimpleITK", "numpy", "scipy"}
