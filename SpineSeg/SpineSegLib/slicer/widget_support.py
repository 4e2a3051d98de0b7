"""What every SpineSeg panel needs from the 3D Slicer application beyond its widgets: installing missing Python
packages on first use (after asking), and reloading SpineSegLib when the developer clicks Reload.

Runs only inside Slicer (``slicer.util`` dialogs, ``slicer.packaging``); the requirement check itself is the
Qt-free :mod:`SpineSegLib.slicer.dependencies`.

Console use (Slicer's Python console)::

    from SpineSegLib.slicer import dependencies
    from SpineSegLib.slicer.widget_support import ensure_dependencies, reload_lib
    ensure_dependencies(dependencies.IIS, "SpineSeg IIS")    # asks, then installs what is missing
    reload_lib()                                            # after editing SpineSegLib's source
"""

from __future__ import annotations

import importlib
import logging
import sys

import slicer
from slicer.i18n import tr as _

from SpineSegLib.slicer import dependencies


def ensure_dependencies(requirements, requester: str) -> bool:
    """Check ``requirements`` (see :mod:`SpineSegLib.slicer.dependencies`), ask the user, install what is missing.

    pip packages go through ``slicer.packaging.pip_ensure`` (Slicer >= 5.11) or ``slicer.util.pip_install``;
    torch through the PyTorch extension's ``PyTorchUtils`` when it is installed; SimpleITK and an installed
    torch are never replaced. Returns True when everything is there afterwards."""
    missing = dependencies.check(requirements)
    if not missing:
        return True
    plan = dependencies.install_plan(missing)
    message = dependencies.describe(plan)
    if not plan.pip and plan.torch is None:
        slicer.util.errorDisplay(message, windowTitle=_("{requester}: missing Python packages").format(
            requester=requester))
        return False
    if not slicer.util.confirmOkCancelDisplay(message + "\n\n" + _("Install now?"),
                                              windowTitle=_("{requester}: install Python packages").format(
                                                  requester=requester)):
        return False
    with slicer.util.WaitCursor():
        if plan.pip:
            _pip_install(plan.pip, requester)
        if plan.torch is not None and not _install_torch(plan.torch.requirement.minimum, requester):
            return False
    importlib.invalidate_caches()
    still = dependencies.check(requirements)
    if still:
        slicer.util.errorDisplay(_("Still missing after the installation: {missing}.\nRestarting 3D Slicer may "
                                   "help.").format(missing="; ".join(m.reason for m in still)),
                                 windowTitle=requester)
        return False
    return True


def _pip_install(packages: list, requester: str) -> None:
    try:
        import slicer.packaging as packaging
        pip_ensure = packaging.pip_ensure
    except (ImportError, AttributeError):
        pip_ensure = None
    if pip_ensure is not None:
        pip_ensure(packages, prompt_install=False, requester=requester)
    else:
        slicer.util.pip_install(" ".join(packages))   # a string: older Slicer versions split it


def _install_torch(minimum: str, requester: str) -> bool:
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        PyTorchUtils = None
    if PyTorchUtils is None:
        slicer.util.pip_install(f"torch>={minimum}")
        return True
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                          torchVersionRequirement=f">={minimum}")
    if torch is None:
        slicer.util.errorDisplay(_("PyTorch was not installed."), windowTitle=requester)
        return False
    return True


def reload_lib() -> None:
    """Reload the SpineSegLib submodules already imported (Slicer's Reload only reloads the module file), the
    ones imported last first, so that a module is reloaded after those it imports."""
    names = [name for name in list(sys.modules) if name == "SpineSegLib" or name.startswith("SpineSegLib.")]
    for name in reversed(names):
        module = sys.modules.get(name)
        if module is not None:
            try:
                importlib.reload(module)
            except Exception:  # a module that fails to reload is reported, the others still reload
                logging.exception("SpineSeg: could not reload %s", name)
