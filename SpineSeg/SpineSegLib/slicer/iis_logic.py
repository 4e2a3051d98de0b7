"""IIS vertebra segmentation of a volume node, run or stepped in a child process. Qt-free (the module
``SpineSegIIS.py`` adds only widgets); runs in 3D Slicer and under ``slicer-core``.

**Run** (:meth:`IISLogic.start` / :meth:`IISLogic.segment`) and **Step** (:meth:`IISLogic.stepper`) go through the
same engine child (``PythonSlicer -m SpineSegLib engine iis ...``, :mod:`SpineSegLib.slicer.engine`): the volume is
written once, the child reads it once, checks the modality, and writes JSON-lines events (progress, a step per
network pass with its patch box, notes, the result with typed vertebra records); Step halts it after each pass
(:mod:`SpineSegLib.slicer.iis_stepper`). The GUI polls it from a timer (progress bar, the current patch as an ROI
box, :mod:`SpineSegLib.slicer.iis_display`); Cancel kills the child's process tree at once. The result's label map
is imported once, in one scene transaction (:mod:`SpineSegLib.slicer.iis_results`). A failed or cancelled run adds
no node. No torch in Slicer's process.

**Estimate** (:meth:`IISLogic.estimate`, :meth:`IISLogic.start_probe`): the run time from the model card, this
machine's measured seconds per pass, or a device probe in a child process.

Console use (Slicer's Python console)::

    from SpineSegLib.slicer.iis_logic import IISLogic
    logic = IISLogic(slicer.mrmlScene)
    out = logic.segment(getNode("MRHead"), "/path/to/mr-model.pt", device="auto")   # waits
    out.segmentation, out.table          # the segmentation node and the per-vertebra table node

    stepper = logic.stepper(getNode("MRHead"), "/path/to/mr-model.pt")
    step = stepper.step()                # one network pass: a StepEvent; step.box is the patch
    out = stepper.run_to_end()
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.events import EngineRequest
from SpineSegLib.core.image import Image, read_image
from SpineSegLib.slicer import iis_results
from SpineSegLib.slicer import process as background
from SpineSegLib.slicer import vertebra_evaluation
from SpineSegLib.slicer.common import check_volume_node
from SpineSegLib.slicer.engine import EngineTask
from SpineSegLib.slicer.iis_display import PatchDisplay
from SpineSegLib.slicer.iis_results import IISOutputs
from SpineSegLib.slicer.iis_stepper import IISStepper


class IISLogic:
    """IIS segmentation of volume nodes in a scene (module docstring: console use).

    ``python``: the interpreter for the child process (default: ``PythonSlicer`` in Slicer, else this one);
    ``cache_path``: a JSON file remembering measured seconds per network pass (run-time estimates).
    """

    def __init__(self, scene=None, python: Optional[str] = None, cache_path=None):
        import slicer

        self.scene = scene if scene is not None else slicer.mrmlScene
        self.python = python
        self.cache_path = Path(cache_path) if cache_path else Path(tempfile.gettempdir()) / "spineseg-pass-times.json"

    # -- checks ---------------------------------------------------------------------------------------------
    def check_input(self, volume_node) -> Image:
        """The input volume as an Image, or an InputError naming the problem (see ``common.check_volume_node``)."""
        from SpineSegLib.iis.infer.checks import check_extent

        image = check_volume_node(volume_node, min_slices=2)
        check_extent(image)
        return image

    def check_model(self, model_path, read_weights: bool = True):
        """The :class:`~SpineSegLib.iis.model.catalog.ModelInfo` of a weights file; InputError when none is chosen
        or the file is missing. ``read_weights=False`` never loads the weights file (no torch import): the card must
        say what it knows. Whether the model fits the input's modality is the engine child's check (its error
        event is the message)."""
        from SpineSegLib.iis.model.catalog import describe_model, resolve_model

        if not model_path:
            raise InputError("no model selected: choose a bundled model or a weights file (.pt)")
        return describe_model(resolve_model(model_path), read_weights=read_weights)     # a path or a bundled name

    def models(self):
        """Bundled models (``SpineSegLib/resources/models``) with their cards."""
        from SpineSegLib.iis.model.catalog import list_models

        return list_models(read_weights=False)

    # -- run-time estimate ----------------------------------------------------------------------------------
    def estimate(self, volume_node, model_path, probe: Optional[dict] = None):
        """A :class:`~SpineSegLib.iis.infer.runtime_estimate.Estimate` for this volume and model: measured seconds per
        pass (``probe`` or this machine's cache), else the model card's, else a guess from the arithmetic."""
        from SpineSegLib.iis.infer.runtime_estimate import PassTimeCache, estimate, extent_of

        from SpineSegLib.iis.model.config import IISConfig

        info = self.check_model(model_path, read_weights=False)     # the GUI calls this: no torch import here
        config = info.config
        if config is None and probe and probe.get("model") == str(model_path) and probe.get("config"):
            config = IISConfig.from_dict(probe["config"])
        if config is None:
            raise InputError(f"the card of model {info.name!r} does not give its configuration; measure its speed "
                             "to read it from the weights file")
        image = check_volume_node(volume_node)
        measured = dict(PassTimeCache(self.cache_path).get(model_path))
        if probe:
            measured.update(probe.get("per_pass_seconds") or {})
        return estimate(config, extent_of(image), measured, info.per_pass_seconds,
                        cpu_cores=(probe or {}).get("cpu_cores"), bf16=bool((probe or {}).get("cpu_bf16")))

    def start_probe(self, model_path=None, devices=("auto",), **callbacks) -> background.BackgroundProcess:
        """Start the device probe (torch, GPUs, timed passes) in a child process; its result is
        ``task.result`` (a dict) once done, measured pass times are cached for :meth:`estimate`."""
        from SpineSegLib.iis.infer.runtime_estimate import PassTimeCache

        args = ["-m", "SpineSegLib", "speed", "--events"]
        if model_path:
            args += ["--model", str(model_path)]
        for d in devices:
            args += ["--device", d]

        def finish(task):
            if task.report is None or task.report.name != "probe":
                raise SpineSegError("the device probe gave no result: " + "; ".join(task.output[-3:]))
            info = task.report.data
            if model_path and info.get("per_pass_seconds"):
                PassTimeCache(self.cache_path).put(model_path, info["per_pass_seconds"])
            return info

        command = [self.python or background.python_executable(), *args]
        return background.BackgroundProcess(command, finish=finish, name="SpineSeg device probe", **callbacks).start()

    # -- the engine child (Run and Step) ---------------------------------------------------------------------
    def engine_task(self, volume_node, model_path, device: str = "auto", keep_incomplete: bool = True,
                    start_point_lps=None, threads: Optional[int] = None, check_modality: bool = True,
                    interactive: bool = False, show_steps: bool = True, finish=None, **callbacks) -> EngineTask:
        """The (not yet started) :class:`~SpineSegLib.slicer.engine.EngineTask` of one IIS run: the input checked
        here, the modality in the child only (its error event is the message)."""
        image = self._check_request(volume_node, model_path, device)
        model = str(model_path) if not Path(str(model_path)).exists() else str(Path(model_path).resolve())

        def request(work):
            return EngineRequest("iis", work / "input.nii", work, model=model, device=device,
                                 keep_incomplete=keep_incomplete, start_point_lps=start_point_lps, threads=threads,
                                 check_modality=check_modality, interactive=interactive, show_steps=show_steps)

        return EngineTask(image, request, python=self.python, threads=threads, finish=finish, name="SpineSeg IIS",
                          **callbacks)

    def _check_request(self, volume_node, model_path, device: str) -> Image:
        """The input as an Image, after the checks that need no torch (the modality is the child's)."""
        image = self.check_input(volume_node)
        self.check_model(model_path, read_weights=False)
        if device not in ("auto", "cpu", "cuda"):
            raise InputError(f"unknown device {device!r} (use auto, cpu or cuda)")
        return image

    def start(self, volume_node, model_path, device: str = "auto", keep_incomplete: bool = True,
              start_point_lps=None, threads: Optional[int] = None, check_modality: bool = True,
              show_patches: bool = True, name: Optional[str] = None,
              on_progress: Optional[Callable[[float, str], None]] = None,
              on_state: Optional[Callable[[str], None]] = None,
              on_line: Optional[Callable[[str], None]] = None) -> EngineTask:
        """Check the input and start the engine child (``spineseg engine iis``) without halting.

        Returns the :class:`~SpineSegLib.slicer.engine.EngineTask`; drive it with ``poll()`` (GUI timer) or
        ``wait()``. Once done, ``task.result`` is an :class:`IISOutputs`. With ``show_patches`` the patch the
        child is working on is shown as an ROI box while it runs (removed at the end).
        """
        display = PatchDisplay(self.scene, volume_node) if show_patches else None

        def on_step(event):
            if event.box is not None:
                display.show_box(event.box.centre_lps, event.box.size_mm, event.box.axes_lps)

        def finish(task, event):
            if display is not None:
                display.remove()
            return self.import_event(volume_node, task.image, event, task.notes, name)

        def state_changed(state):
            if state in (background.FAILED, background.CANCELLED) and display is not None:
                display.remove()
            if on_state is not None:
                on_state(state)

        task = self.engine_task(volume_node, model_path, device, keep_incomplete, start_point_lps, threads,
                                check_modality, show_steps=show_patches, finish=finish, on_progress=on_progress,
                                on_step=on_step if show_patches else None, on_state=state_changed, on_line=on_line)
        return task.start()

    def import_event(self, volume_node, image: Image, event, notes=(), name: Optional[str] = None) -> IISOutputs:
        """Import the engine's result event: its label map read once, its typed vertebra records."""
        records = [asdict(v) for v in event.vertebrae]
        info = dict(event.info, labels=event.labels_path)
        out = self.import_result(volume_node, image, read_image(event.labels_path), records,
                                 event.info.get("modality") or "ct", name=name, info=info)
        out.warnings = list(event.warnings) + [n for n in notes if n not in event.warnings]
        return out

    def segment(self, volume_node, model_path, device: str = "auto", timeout: Optional[float] = None,
                **options) -> IISOutputs:
        """Run and wait (scripts, the console): returns :class:`IISOutputs`; raises the child's error as
        :class:`~SpineSegLib.slicer.process.BackgroundError`."""
        return self.start(volume_node, model_path, device, **options).result_when_done(timeout)

    # -- importing and evaluating (iis_results) ------------------------------------------------------------
    def import_result(self, volume_node, image: Image, labels: Image, records: list[dict], modality: str,
                      name: Optional[str] = None, info: Optional[dict] = None) -> IISOutputs:
        """:func:`~SpineSegLib.slicer.iis_results.import_result` into this logic's scene."""
        return iis_results.import_result(self.scene, volume_node, image, labels, records, modality, name, info)

    def evaluate(self, segmentation_node, reference_node, volume_node, name: Optional[str] = None):
        """:func:`~SpineSegLib.slicer.vertebra_evaluation.evaluate` in this logic's scene: ``(table node, CaseResult)``."""
        return vertebra_evaluation.evaluate(self.scene, segmentation_node, reference_node, volume_node, name)

    # -- stepping -------------------------------------------------------------------------------------------
    def stepper(self, volume_node, model_path, device: str = "auto", keep_incomplete: bool = True,
                start_point_lps=None, threads: Optional[int] = None, check_modality: bool = True) -> IISStepper:
        """An :class:`~SpineSegLib.slicer.iis_stepper.IISStepper`: the same engine child as :meth:`start`, halted
        after each network pass until the next :meth:`~SpineSegLib.slicer.iis_stepper.IISStepper.step`."""
        self._check_request(volume_node, model_path, device)
        return IISStepper(self, volume_node, model_path, device=device, keep_incomplete=keep_incomplete,
                          start_point_lps=start_point_lps, threads=threads, check_modality=check_modality)
