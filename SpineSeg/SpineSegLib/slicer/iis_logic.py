"""IIS vertebra segmentation of a volume node, run out of process or stepped in process. Qt-free (the module
``SpineSegIIS.py`` adds only widgets); runs in 3D Slicer and under ``slicer-core``.

**Run** (:meth:`IISLogic.start` / :meth:`IISLogic.segment`): the volume is written to a temporary NIfTI file
and ``spineseg iis`` runs in a child process (``PythonSlicer -m SpineSegLib iis ...``, see
:mod:`SpineSegLib.slicer.process`) with ``--table`` and ``--steps-dir``; the GUI polls it from a timer (progress
bar, the current patch as an ROI box, :mod:`SpineSegLib.slicer.iis_display`), Cancel kills the child's process
tree. When the child succeeds the label map and table are imported in one scene transaction
(:mod:`SpineSegLib.slicer.iis_results`). A failed or cancelled run adds no node.

**Step** (:meth:`IISLogic.stepper`): the same pipeline runs *in Slicer's process*, one network pass per click
(:mod:`SpineSegLib.slicer.iis_stepper`).

**Estimate** (:meth:`IISLogic.estimate`, :meth:`IISLogic.start_probe`): the run time from the model card, this
machine's measured seconds per pass, or a device probe in a child process.

Console use (Slicer's Python console)::

    from SpineSegLib.slicer.iis_logic import IISLogic
    logic = IISLogic(slicer.mrmlScene)
    out = logic.segment(getNode("MRHead"), "/path/to/mr-model.pt", device="auto")   # waits
    out.segmentation, out.table          # the segmentation node and the per-vertebra table node

    stepper = logic.stepper(getNode("MRHead"), "/path/to/mr-model.pt")
    step = stepper.step()                # one network pass; step.box is the patch (PatchBox)
    out = stepper.run_to_end()
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.errors import InputError, SpineSegError
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.slicer import iis_results
from SpineSegLib.slicer import process as background
from SpineSegLib.slicer.common import check_volume_node
from SpineSegLib.slicer.iis_display import PatchDisplay
from SpineSegLib.slicer.iis_results import IISOutputs, read_iis_table
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

    def check_model(self, model_path, image: Optional[Image] = None, check_modality: bool = True,
                    read_weights: bool = True):
        """The :class:`~SpineSegLib.iis.model.catalog.ModelInfo` of a weights file; InputError when the file is
        missing or, with ``image``, when the model is for the other modality than the image looks like.
        ``read_weights=False`` never loads the weights file (no torch import): the card must say what it knows."""
        from SpineSegLib.iis.model.catalog import describe_model

        if not model_path:
            raise InputError("no model selected: choose a bundled model or a weights file (.pt)")
        info = describe_model(model_path, read_weights=read_weights)
        if image is not None and check_modality and info.modality:
            from SpineSegLib.iis.infer.checks import guess_modality

            modality, reason = guess_modality(image)
            if modality != info.modality:
                raise InputError(
                    f"model {info.name!r} is a {info.modality.upper()} model, but the input looks like "
                    f"{modality.upper()} ({reason}); choose a {modality.upper()} model, or turn the modality "
                    "check off if the input really is " + info.modality.upper())
        return info

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
        from SpineSegLib.iis.infer.runtime_estimate import PassTimeCache, parse_probe

        args = ["-m", "SpineSegLib", "speed"]
        if model_path:
            args += ["--model", str(model_path)]
        for d in devices:
            args += ["--device", d]

        def finish(task):
            info = parse_probe(task.output)
            if info is None:
                raise SpineSegError("the device probe gave no result: " + "; ".join(task.output[-3:]))
            if model_path and info.get("per_pass_seconds"):
                PassTimeCache(self.cache_path).put(model_path, info["per_pass_seconds"])
            return info

        command = [self.python or background.python_executable(), *args]
        return background.BackgroundProcess(command, finish=finish, name="SpineSeg device probe", **callbacks).start()

    # -- background run -------------------------------------------------------------------------------------
    def start(self, volume_node, model_path, device: str = "auto", keep_incomplete: bool = True,
              start_point_lps=None, threads: Optional[int] = None, check_modality: bool = True,
              show_patches: bool = True, name: Optional[str] = None,
              on_progress: Optional[Callable[[float, str], None]] = None,
              on_state: Optional[Callable[[str], None]] = None,
              on_line: Optional[Callable[[str], None]] = None) -> background.BackgroundProcess:
        """Check the input, write it to a temporary file and start ``spineseg iis`` in a child process.

        Returns the :class:`~SpineSegLib.slicer.process.BackgroundProcess`; drive it with ``poll()`` (GUI timer) or
        ``wait()``. Once done, ``task.result`` is an :class:`IISOutputs`. With ``show_patches`` the patch the
        child is working on is shown as an ROI box while it runs (removed at the end).
        """
        image = self.check_input(volume_node)
        info = self.check_model(model_path, image, check_modality)
        if device not in ("auto", "cpu", "cuda"):
            raise InputError(f"unknown device {device!r} (use auto, cpu or cuda)")
        work = _work_folder(image)
        out_labels, out_table, steps_dir = work / "vertebrae.nii.gz", work / "vertebrae.tsv", work / "steps"
        args = ["iis", work / "input.nii", "-o", out_labels, "--model", Path(model_path).resolve(), "--device", device,
                "--table", out_table, "--force",
                *_iis_options(steps_dir if show_patches else None, keep_incomplete, start_point_lps, threads,
                              check_modality)]
        command = background.spineseg_command(*args, python=self.python)
        modality = info.modality or "ct"
        display = PatchDisplay(self.scene, volume_node) if show_patches else None
        watcher = background.StepsFolder(steps_dir) if show_patches else None

        def on_poll(task):
            if watcher is None:
                return
            for record in watcher.new_steps():
                display.show_record(record)
                # finer than the CLI's console lines: every pass, as segment_vertebrae maps it (5 % -> 90 %)
                fraction = 0.05 + 0.85 * float(record.get("progress") or 0.0)
                if fraction > task.fraction:
                    task.fraction = fraction
                    if on_progress is not None:
                        on_progress(fraction, f"traversal: pass {record.get('index')} ({record.get('event')})")

        def finish(task):
            if display is not None:
                display.remove()
            return self.import_result(volume_node, image, read_image(out_labels), read_iis_table(out_table),
                                      modality, name=name, info={"model": str(model_path), "device": device,
                                                                 "output": task.output[-1:] if task.output else []})

        def state_changed(state):
            if state in (background.FAILED, background.CANCELLED) and display is not None:
                display.remove()
            if on_state is not None:
                on_state(state)

        env = background.child_environment(threads=threads)
        task = background.BackgroundProcess(command, env=env, finish=finish, on_progress=on_progress,
                                            on_state=state_changed, on_line=on_line, on_poll=on_poll,
                                            cleanup=[work], name="SpineSeg IIS")
        task.work_dir = work
        return task.start()

    def segment(self, volume_node, model_path, device: str = "auto", timeout: Optional[float] = None,
                **options) -> IISOutputs:
        """Run and wait (scripts, the console): returns :class:`IISOutputs`; raises the child's error as
        :class:`~SpineSegLib.slicer.process.BackgroundError`."""
        task = self.start(volume_node, model_path, device, **options)
        try:
            task.wait(timeout)
        except BaseException:
            task.cancel()
            raise
        task.raise_for_state()
        return task.result

    # -- importing and evaluating (iis_results) ------------------------------------------------------------
    def import_result(self, volume_node, image: Image, labels: Image, records: list[dict], modality: str,
                      name: Optional[str] = None, info: Optional[dict] = None) -> IISOutputs:
        """:func:`~SpineSegLib.slicer.iis_results.import_result` into this logic's scene."""
        return iis_results.import_result(self.scene, volume_node, image, labels, records, modality, name, info)

    def import_iis_result(self, volume_node, image: Image, result, name: Optional[str] = None) -> IISOutputs:
        """:func:`~SpineSegLib.slicer.iis_results.import_iis_result` into this logic's scene."""
        return iis_results.import_iis_result(self.scene, volume_node, image, result, name)

    def evaluate(self, segmentation_node, reference_node, volume_node, name: Optional[str] = None):
        """:func:`~SpineSegLib.slicer.iis_results.evaluate` in this logic's scene: ``(table node, CaseResult)``."""
        return iis_results.evaluate(self.scene, segmentation_node, reference_node, volume_node, name)

    # -- stepping -------------------------------------------------------------------------------------------
    def stepper(self, volume_node, model_path, device: str = "auto", keep_incomplete: bool = True,
                start_point_lps=None, threads: Optional[int] = None, check_modality: bool = True) -> IISStepper:
        """An :class:`~SpineSegLib.slicer.iis_stepper.IISStepper` for one network pass per
        :meth:`~SpineSegLib.slicer.iis_stepper.IISStepper.step` (torch runs in this process)."""
        image = self.check_input(volume_node)
        self.check_model(model_path, image, check_modality)
        return IISStepper(self, volume_node, image, model_path, device=device, keep_incomplete=keep_incomplete,
                          start_point_lps=start_point_lps, threads=threads, check_modality=check_modality)


def _work_folder(image: Image) -> Path:
    """A new temporary folder holding the input as ``input.nii`` (removed again when writing fails)."""
    work = Path(tempfile.mkdtemp(prefix="SpineSeg-IIS-"))
    try:
        write_image(image, work / "input.nii", force=True, compress=False)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work


def _iis_options(steps_dir, keep_incomplete: bool, start_point_lps, threads: Optional[int],
                 check_modality: bool) -> list:
    """The ``spineseg iis`` options for the run's choices (``steps_dir``: falsy for no ``--steps-dir``)."""
    args = []
    if steps_dir:
        args += ["--steps-dir", steps_dir]
    if keep_incomplete:
        args.append("--keep-incomplete")
    if start_point_lps is not None:
        args += ["--start", ",".join(f"{float(v):.3f}" for v in start_point_lps)]
    if threads:
        args += ["--threads", int(threads)]
    if not check_modality:
        args.append("--no-modality-check")
    return args
