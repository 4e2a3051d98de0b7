"""Stepping through the IIS traversal one network pass per click -- in the same engine child as a Run.

:class:`IISStepper` starts ``spineseg engine iis --interactive`` (:meth:`~SpineSegLib.slicer.iis_logic.IISLogic.
engine_task`): the child halts after every network pass until the next click sends ``next``; "Run to end" sends
``finish`` (no more halts). Each pass arrives as a step event (:class:`~SpineSegLib.core.events.StepEvent`): the
scene shows the patch, the current fragment, the memory and the vertebrae found so far
(:mod:`SpineSegLib.slicer.iis_display`). The GUI polls from a timer, so it stays responsive; Cancel kills the child
at once and removes the temporary nodes. The result is imported exactly as after a Run.

Console use (Slicer's Python console)::

    stepper = IISLogic(slicer.mrmlScene).stepper(getNode("MRHead"), "/path/to/mr-model.pt")
    step = stepper.step()                # one network pass; step.box is the patch
    out = stepper.run_to_end()           # IISOutputs
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.events import FINISH, NEXT
from SpineSegLib.core.image import read_image
from SpineSegLib.core.labels import name_of
from SpineSegLib.slicer.iis_display import PatchDisplay, model_grid_of
from SpineSegLib.slicer.iis_results import IISOutputs

IDLE, WAITING, STEPPING, RUNNING, DONE, FAILED, CANCELLED = (
    "idle", "waiting", "stepping", "running", "done", "failed", "cancelled")


class IISStepper:
    """One IIS network pass per :meth:`step` (see the module docstring), shown in the scene.

    States: ``idle`` -> (``step``/``advance``) ``stepping`` (a pass is being computed) -> ``waiting`` (halted
    after a pass, the scene shows it) -> ... -> ``done`` (result imported: :attr:`outputs`) | ``failed`` |
    ``cancelled``. ``run_to_end`` (or ``advance(free=True)``) lets the child go on without halting
    (``running``). The GUI calls :meth:`advance` then :meth:`poll` from a timer; scripts call :meth:`step`.
    """

    def __init__(self, logic, volume_node, model_path, **options):
        self.logic = logic
        self.volume_node = volume_node
        self.model_path = str(model_path)
        self.options = options
        self.state = IDLE
        self.message = ""
        self.fraction = 0.0
        self.steps: list = []                 # every StepEvent shown, in order
        self.found: list[dict] = []           # accepted vertebrae so far
        self.outputs: Optional[IISOutputs] = None
        self.error: Optional[str] = None
        self.display = PatchDisplay(logic.scene, volume_node)
        self.task = None
        self._new: list = []
        self._free = False
        self._memory_path = None

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED, CANCELLED)

    def _on_progress(self, fraction, phase):
        if fraction == fraction:
            self.fraction = max(self.fraction, float(fraction))

    def _on_step(self, step) -> None:
        self._show(step)        # at once: the child's arrays go with its work folder when it ends
        self._new.append(step)

    def _finish(self, task, event) -> IISOutputs:
        self.display.remove()
        return self.logic.import_event(self.volume_node, task.image, event, task.notes)

    def advance(self, free: bool = False) -> None:
        """Let the child compute the next pass (``free``: all remaining passes without halting)."""
        if self.finished:
            return
        self._free = self._free or free
        if self.task is None:
            self.task = self.logic.engine_task(self.volume_node, self.model_path, interactive=True,
                                               finish=self._finish, on_step=self._on_step,
                                               on_progress=self._on_progress, **self.options).start()
            if free:
                self.task.send(FINISH)
        else:
            self.task.send(FINISH if free else NEXT)
        self.state = RUNNING if self._free else STEPPING

    def poll(self):
        """Show what the child produced since the last call; returns the last new step (or None)."""
        if self.task is None or self.finished:
            return None
        self.task.poll()
        last = None
        for step in self._new:
            last = step
            if not self._free and step.box is not None:
                self.state = WAITING
        self._new.clear()
        if self.task.finished:
            self._end_with_task()
        return last

    def step(self, timeout: Optional[float] = None):
        """One network pass, shown in the scene: returns its :class:`~SpineSegLib.core.events.StepEvent` (None
        when the run ended, then :attr:`outputs` or :attr:`error` say how)."""
        if self.finished:
            return None
        self.advance()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = self.poll()
            if step is not None or self.finished:
                return step
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no network pass finished within {timeout} s")
            time.sleep(0.01)

    def run_to_end(self, timeout: Optional[float] = None) -> IISOutputs:
        """Let the traversal finish without halting, import the result and return it."""
        self.advance(free=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the traversal did not finish within {timeout} s")
            time.sleep(0.02)
        if self.state != DONE:
            raise SpineSegError(self.message)
        return self.outputs

    def cancel(self, wait_s: float = 0.0) -> None:
        """Kill the child at once and remove the temporary nodes (``wait_s``: kept for callers; unused)."""
        if self.finished:
            return
        if self.task is not None:
            self.task.cancel()
        self._end(CANCELLED, "cancelled")

    # -- internals ---------------------------------------------------------------------------------------------
    def _show(self, step) -> None:
        self.steps.append(step)
        if step.box is None:          # the final "done" step
            self.message = step.message or "traversal finished"
            return
        b = step.box
        self.display.show_box(b.centre_lps, b.size_mm, b.axes_lps)
        fragment = read_image(step.fragment_path) if step.fragment_path else None
        self.display.show_fragment(fragment, f"fragment (pass {step.index})")
        if step.memory_path and step.memory_path != self._memory_path:
            self._memory_path = step.memory_path
            self.display.show_memory(np.load(step.memory_path), model_grid_of(b))
        if step.accepted is not None:
            a = step.accepted
            self.found.append({"traversal_index": a["index"], "regressed_label": round(float(a["label"]), 2),
                               "nearest_name": name_of(int(min(max(round(a["label"]), 1), 24))),
                               "completeness": round(float(a["completeness"]), 4), "complete": bool(a["complete"]),
                               "volume_ml": round(a["volume_mm3"] / 1000.0, 2), "moves": int(a["moves"])})
            self.display.show_found(self.found)
        self.message = (f"pass {step.index}: {step.phase} ({step.event})"
                        + (f" - {step.message}" if step.message else ""))

    def _end_with_task(self) -> None:
        task = self.task
        if task.state == "done":
            self.outputs = task.result
            self._end(DONE, "done")
        elif task.state == "cancelled":
            self._end(CANCELLED, "cancelled")
        else:
            self.error = task.message
            self._end(FAILED, task.message)

    def _end(self, state: str, message: str) -> None:
        self.display.remove()
        self.state = state
        self.message = message
