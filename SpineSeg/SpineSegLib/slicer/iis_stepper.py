"""Stepping through the IIS traversal one network pass per click, in Slicer's own process.

:class:`IISStepper` runs :func:`~SpineSegLib.iis.infer.run.segment_vertebrae` on a worker thread that halts after
every network pass until the next click; between clicks the scene shows the patch, the current fragment, the
memory and the vertebrae found so far (:mod:`SpineSegLib.slicer.iis_display`). One click costs one forward pass
(milliseconds on a GPU, a fraction of a second to seconds on a CPU); the GUI waits for it with a timer, so it stays
responsive. "Run to end" lets the worker go on without halting; the result is imported exactly as after a
background run (:meth:`~SpineSegLib.slicer.iis_logic.IISLogic.import_iis_result`).

Console use (Slicer's Python console)::

    stepper = IISLogic(slicer.mrmlScene).stepper(getNode("MRHead"), "/path/to/mr-model.pt")
    step = stepper.step()                # one network pass; step.box is the patch (PatchBox)
    out = stepper.run_to_end()           # IISOutputs
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Optional

from SpineSegLib.core.errors import SpineSegError
from SpineSegLib.core.image import Image
from SpineSegLib.core.labels import name_of
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.slicer.iis_display import PatchDisplay, model_grid_of
from SpineSegLib.slicer.iis_results import IISOutputs

_END = object()
IDLE, WAITING, STEPPING, RUNNING, DONE, FAILED, CANCELLED = (
    "idle", "waiting", "stepping", "running", "done", "failed", "cancelled")


class IISStepper:
    """One IIS network pass per :meth:`step` (see the module docstring), shown in the scene.

    States: ``idle`` -> (``step``/``advance``) ``stepping`` (a pass is being computed) -> ``waiting`` (halted
    after a pass, the scene shows it) -> ... -> ``done`` (result imported: :attr:`outputs`) | ``failed`` |
    ``cancelled``. ``run_to_end`` (or ``advance(free=True)``) lets the worker go on without halting
    (``running``). The GUI calls :meth:`advance` then :meth:`poll` from a timer; scripts call :meth:`step`.
    """

    def __init__(self, logic, volume_node, image: Image, model_path, device: str = "auto",
                 keep_incomplete: bool = True, start_point_lps=None, threads: Optional[int] = None,
                 check_modality: bool = True):
        self.logic = logic
        self.volume_node = volume_node
        self.image = image
        self.model_path = str(model_path)
        self.options = dict(device=device, keep_incomplete=keep_incomplete, start_point_lps=start_point_lps,
                            threads=threads, check_modality=check_modality)
        self.state = IDLE
        self.message = ""
        self.fraction = 0.0
        self.steps: list = []                 # every TraversalStep shown, in order
        self.found: list[dict] = []           # accepted vertebrae so far
        self.outputs: Optional[IISOutputs] = None
        self.result = None
        self.error: Optional[BaseException] = None
        self.display = PatchDisplay(logic.scene, volume_node)
        self._queue: "queue.Queue" = queue.Queue()
        self._go = threading.Event()
        self._free = False
        self._thread: Optional[threading.Thread] = None
        self.progress = Progress(self._on_progress)

    # -- worker side ---------------------------------------------------------------------------------
    def _on_progress(self, name, fraction):
        if fraction == fraction:
            self.fraction = float(fraction)
        self.message = name

    def _on_step(self, step) -> None:
        self._queue.put(step)
        if not self._free:
            self._go.wait()
            self._go.clear()
        self.progress.check()

    def _work(self) -> None:
        from SpineSegLib.iis.infer.run import segment_vertebrae

        try:
            self.result = segment_vertebrae(self.image, self.model_path, steps_callback=self._on_step,
                                            progress=self.progress, **self.options)
        except BaseException as exc:  # handed to the GUI thread, which reports it
            self.error = exc
        finally:
            self._queue.put(_END)

    # -- GUI side --------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED, CANCELLED)

    def advance(self, free: bool = False) -> None:
        """Let the worker compute the next pass (``free``: all remaining passes without halting)."""
        if self.finished:
            return
        self._free = self._free or free
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="SpineSeg IIS stepping", daemon=True)
            self._thread.start()
        else:
            self._go.set()
        self.state = RUNNING if self._free else STEPPING

    def poll(self):
        """Show what the worker produced since the last call; returns the last new step (or None)."""
        last = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                self._finish()
                return last
            last = item
            self._show(item)
            if not self._free:
                self.state = WAITING
        return last

    def step(self, timeout: Optional[float] = None):
        """One network pass, shown in the scene: returns its ``TraversalStep`` (None when the run ended, then
        :attr:`outputs` or :attr:`error` say how)."""
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
            raise self.error if isinstance(self.error, SpineSegError) else SpineSegError(self.message)
        return self.outputs

    def cancel(self, wait_s: float = 30.0) -> None:
        """Stop the worker at its next pass and remove the temporary nodes."""
        if self.finished:
            return
        self.progress.cancel()
        self._go.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        self.poll()
        if not self.finished:
            self._end(CANCELLED, "cancelled")

    # -- internals ---------------------------------------------------------------------------------------------
    def _show(self, step) -> None:
        self.steps.append(step)
        if step.box is None:          # the final "done" step
            self.message = step.message or "traversal finished"
            return
        b = step.box
        self.display.show_box(b.centre_lps, b.size_mm, b.axes_lps)
        fragment = step.fragment_image() if step.fragment is not None and step.fragment.any() else None
        self.display.show_fragment(fragment, f"fragment (pass {step.index})")
        self.display.show_memory(step.memory.copy(), model_grid_of(b))
        if step.accepted is not None:
            a = step.accepted
            self.found.append({"traversal_index": a.index, "regressed_label": round(float(a.label), 2),
                               "nearest_name": name_of(int(min(max(round(a.label), 1), 24))),
                               "completeness": round(float(a.completeness), 4), "complete": bool(a.complete),
                               "volume_ml": round(a.volume_mm3 / 1000.0, 2), "moves": int(a.moves)})
            self.display.show_found(self.found)
        self.message = (f"pass {step.index}: {step.phase} ({step.event})"
                        + (f" - {step.message}" if step.message else ""))

    def _finish(self) -> None:
        if self._thread is not None:
            self._thread.join(5)
        if isinstance(self.error, Cancelled) or self.progress.cancelled:
            self._end(CANCELLED, "cancelled")
            return
        if self.error is not None:
            message = str(self.error) if isinstance(self.error, SpineSegError) else \
                f"{type(self.error).__name__}: {self.error}"
            self._end(FAILED, message)
            return
        self.display.remove()
        try:
            self.outputs = self.logic.import_iis_result(self.volume_node, self.image, self.result)
        except SpineSegError as exc:
            self.error = exc
            self._end(FAILED, str(exc))
            return
        self._end(DONE, "done")

    def _end(self, state: str, message: str) -> None:
        self.display.remove()
        self.state = state
        self.message = message
