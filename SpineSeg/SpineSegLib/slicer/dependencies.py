"""Which Python packages SpineSeg needs inside 3D Slicer, and which of them are missing.

Qt-free and import-free: a requirement is checked through its installed distribution's metadata
(``importlib.metadata``), never by importing it, so checking is instant and loads nothing heavy.
The Slicer modules call :func:`check` on first use (Apply / Run), ask the user, and install what
:func:`install_plan` says -- nothing is installed at import or module start.

Rules (what users of other extensions complained about):

* SimpleITK, numpy and scipy come with Slicer and are never installed or upgraded by SpineSeg; a missing
  or too old one is reported (reinstall / update Slicer). Their minimums are versions that the oldest
  supported Slicer (:data:`OLDEST_SLICER`) ships (:data:`SLICER_SHIPS`), so on a supported Slicer they are
  never missing.
* torch is installed through the PyTorch extension (``PyTorchUtils``, which picks the CUDA or CPU
  build that fits the machine) when it is present, else with pip after the user agreed; an
  installed torch that is too old is never replaced behind the user's back (the user is told to
  update it through the PyTorch extension).
* everything else (scikit-image, scikit-learn) is installed with pip after asking.

Console use (also in Slicer's Python console)::

    from SpineSegLib.slicer import dependencies
    missing = dependencies.check(dependencies.IIS)
    plan = dependencies.install_plan(missing)
    print(dependencies.describe(plan))      # what would be installed, and why
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Requirement:
    """One package: the name it is imported by, the name pip installs, the lowest version that works."""

    import_name: str
    pip_name: str
    minimum: str | None
    purpose: str
    comes_with_slicer: bool = False     # never installed by SpineSeg (SimpleITK, numpy)
    via_pytorch: bool = False           # installed through the PyTorch extension when it is there

    @property
    def pip_spec(self) -> str:
        return f"{self.pip_name}>={self.minimum}" if self.minimum else self.pip_name


#: the oldest 3D Slicer release SpineSeg supports (the README says so; Testing/test_slicer_api.py checks the MRML calls)
OLDEST_SLICER = "5.10"
#: the versions of the Python packages that 3D Slicer releases ship, read from Slicer's SuperBuild at each tag
#: (SuperBuild/External_SimpleITK.cmake: GIT_TAG "slicer-v2.5.2" at v5.10.0; External_python-SimpleITK.cmake,
#: External_python-numpy.cmake, External_python-scipy.cmake: the pinned "name==version" requirements).
#: For comparison, Slicer 5.6 ships SimpleITK 2.2.1.
SLICER_SHIPS = {
    "5.10.0": {"SimpleITK": "2.5.2", "numpy": "2.0.2", "scipy": "1.13.1"},
    "5.12.3": {"SimpleITK": "2.5.5", "numpy": "2.4.6", "scipy": "1.17.1"},
}

NUMPY = Requirement("numpy", "numpy", "1.24", "arrays", comes_with_slicer=True)
SIMPLEITK = Requirement("SimpleITK", "SimpleITK", "2.3", "image resampling and I/O", comes_with_slicer=True)
SCIPY = Requirement("scipy", "scipy", "1.10", "morphology, distance transforms, interpolation",
                    comes_with_slicer=True)
SKIMAGE = Requirement("skimage", "scikit-image", "0.21", "morphology and region measurements")
SKLEARN = Requirement("sklearn", "scikit-learn", "1.3", "robust (RANSAC) centerline fit, weighted kappa")
TORCH = Requirement("torch", "torch", "2.1", "the IIS network", via_pytorch=True)

#: what the classical pipeline (module SpineSeg) needs
CLASSICAL = (NUMPY, SIMPLEITK, SCIPY, SKIMAGE, SKLEARN)
#: what IIS (module SpineSegIIS) needs, in Slicer's process and in the child process it starts
IIS = (NUMPY, SIMPLEITK, SCIPY, SKLEARN, TORCH)


@dataclass(frozen=True)
class Missing:
    requirement: Requirement
    installed: str | None          # the installed version, None when absent

    @property
    def reason(self) -> str:
        r = self.requirement
        if self.installed is None:
            return f"{r.pip_name} is not installed"
        return f"{r.pip_name} {self.installed} is older than the {r.minimum} SpineSeg needs"


@dataclass
class InstallPlan:
    """What to do about the missing packages (see the module docstring)."""

    pip: list[str] = field(default_factory=list)            # pip specs to install after asking
    torch: Missing | None = None                              # torch to install (absent, not outdated)
    refused: list[tuple[Missing, str]] = field(default_factory=list)  # (what, what the user must do)

    @property
    def empty(self) -> bool:
        return not self.pip and self.torch is None and not self.refused


def _version_key(version: str) -> tuple:
    """A sortable key for a version string: numeric release parts first ('2.13.0+cpu' -> (2, 13, 0))."""
    try:
        from packaging.version import Version

        return (0, Version(version))
    except Exception:  # packaging missing or a non-PEP 440 version
        parts = re.findall(r"\d+", version.split("+")[0])
        return (1, tuple(int(p) for p in parts[:4]))


def version_at_least(installed: str, minimum: str) -> bool:
    a, b = _version_key(installed), _version_key(minimum)
    if a[0] != b[0]:   # one parsed by packaging, the other not: compare release numbers
        a = (1, tuple(int(p) for p in re.findall(r"\d+", installed.split("+")[0])[:4]))
        b = (1, tuple(int(p) for p in re.findall(r"\d+", minimum)[:4]))
    return a >= b


def installed_version(requirement: Requirement) -> str | None:
    """The installed version of ``requirement`` (metadata of its distribution), None when it cannot be
    imported. A module importable without distribution metadata (e.g. a package Slicer builds itself)
    counts as installed, version "unknown"."""
    try:
        return importlib.metadata.version(requirement.pip_name)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        spec = importlib.util.find_spec(requirement.import_name)
    except (ImportError, ValueError):
        spec = None
    return "unknown" if spec is not None else None


def check(requirements=IIS) -> list[Missing]:
    """The requirements that are not installed or too old, in the given order."""
    missing = []
    for r in requirements:
        version = installed_version(r)
        if version is None:
            missing.append(Missing(r, None))
        elif r.minimum and version != "unknown" and not version_at_least(version, r.minimum):
            missing.append(Missing(r, version))
    return missing


def install_plan(missing: list[Missing]) -> InstallPlan:
    """Split missing packages into pip installs, a torch install and what SpineSeg must not touch."""
    plan = InstallPlan()
    for m in missing:
        r = m.requirement
        if r.comes_with_slicer:
            plan.refused.append((m, f"{r.pip_name} comes with 3D Slicer and is not installed by SpineSeg; "
                                    f"reinstall or update 3D Slicer (SpineSeg needs {OLDEST_SLICER} or newer)"))
        elif r.via_pytorch:
            if m.installed is None:
                plan.torch = m
            else:
                plan.refused.append((m, f"update {r.pip_name} yourself (module PyTorch Utils of the PyTorch "
                                        "extension: uninstall, then install a newer version); SpineSeg does not "
                                        "replace an installed torch"))
        else:
            plan.pip.append(r.pip_spec)
    return plan


def describe(plan: InstallPlan) -> str:
    """A message for the confirmation dialog: what will be installed, and what the user must do."""
    lines = []
    if plan.pip:
        lines.append("SpineSeg needs these Python packages, which will be downloaded and installed now: "
                     + ", ".join(plan.pip) + ".")
    if plan.torch is not None:
        lines.append(f"PyTorch (torch>={plan.torch.requirement.minimum}) is needed for the IIS network; it will be "
                     "installed through the PyTorch extension when it is present (the right CUDA or CPU build "
                     "for this computer), else with pip. This can download a few GB and take several minutes.")
    for m, advice in plan.refused:
        lines.append(f"{m.reason}: {advice}.")
    return "\n\n".join(lines)
