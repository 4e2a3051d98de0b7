"""IIS vertebra segmentation of a volume node: run out of process, step through the traversal, tabulate,
evaluate. Qt-free (the module ``SpineSegIIS.py`` adds only widgets); runs in 3D Slicer and under ``slicer-core``.

**Run** (:meth:`IISLogic.start` / :meth:`IISLogic.segment`): the volume is written to a temporary NIfTI file
and ``spineseg iis`` runs in a child process (``PythonSlicer -m SpineSegLib iis ...``, see
:mod:`SpineSegLib.background`) with ``--table`` and ``--steps-dir``; the GUI polls it from a timer (progress
bar, the current patch as an ROI box), Cancel kills the child's process tree. When the child succeeds the
label map and table are imported in one scene transaction: a segmentation with one named, coloured,
terminology-coded segment per vertebra (incomplete ones flagged, drawn at half opacity) and a per-vertebra
table (:func:`vertebra_rows`). A failed or cancelled run adds no node.

**Step** (:meth:`IISLogic.stepper` -> :class:`IISStepper`): the same pipeline
(:func:`~SpineSegLib.iis.inference.segment_vertebrae`) runs *in Slicer's process* on a worker thread that
halts after every network pass until the next click; between clicks the scene shows the patch (ROI box),
the current fragment (a temporary segment), the traversal's memory (a label map on the model grid) and the
vertebrae found so far (a table). One click costs one forward pass (milliseconds on a GPU, a fraction of a
second to seconds on a CPU); the GUI waits for it with a timer, so it stays responsive. "Run to end" lets
the worker go on without halting; the result is imported exactly as after a background run.

Console use (Slicer's Python console)::

    from SpineSegLib.slicer_logic.iis_logic import IISLogic
    logic = IISLogic(slicer.mrmlScene)
    out = logic.segment(getNode("MRHead"), "/path/to/mr-model.pt", device="auto")   # waits
    out.segmentation, out.table          # the segmentation node and the per-vertebra table node

    stepper = logic.stepper(getNode("MRHead"), "/path/to/mr-model.pt")
    step = stepper.step()                # one network pass; step.box is the patch (PatchBox)
    out = stepper.run_to_end()
"""

from __future__ import annotations

import csv
import logging
import math
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import background
from .. import mrml_bridge as mb
from .. import mrml_results as mr
from ..errors import InputError, SpineSegError
from ..image import Image, read_image, write_image
from ..labels import VERTEBRAE, name_of
from ..progress import Cancelled, Progress
from .common import check_volume_node, reference_image, remove_nodes, rows_for_table, scene_transaction

log = logging.getLogger(__name__)

FRAGMENT_LABEL = 250          # outside the vertebra table: the temporary fragment segment is not coded
FRAGMENT_COLOUR = (1.0, 0.9, 0.1)
PATCH_COLOUR = (0.3, 0.6, 1.0)


@dataclass
class IISOutputs:
    """What a finished run added to the scene."""

    segmentation: object                 # vtkMRMLSegmentationNode
    table: object                        # vtkMRMLTableNode, one row per vertebra
    rows: list                           # the table's rows as dicts
    labels: Image                        # the label map (input grid)
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def nodes(self) -> list:
        return [self.segmentation, self.table]


# -- the per-vertebra table ---------------------------------------------------------------------------------
def vertebra_rows(labels: Image, image: Image, records: list[dict], modality: str) -> list[dict]:
    """One row per vertebra of ``labels``: id, name, volume (ml), mean HU (CT) / mean intensity (MR),
    completeness (probability and flag), regressed label, and the anterior / middle / posterior vertebral
    body heights (mm, :mod:`SpineSegLib.measurements`). ``records``: the IIS table rows (``id``,
    ``complete``, ``completeness``, ``regressed_label``, ``traversal_index``) of the vertebrae in ``labels``."""
    from ..measurements import measure_vertebrae

    by_id = {int(r["id"]): r for r in records}
    mean_key = "mean_hu" if modality == "ct" else "mean_intensity"
    rows = []
    for m in measure_vertebrae(labels, image):
        r = by_id.get(m.label, {})
        rows.append({
            "label": m.label, "name": m.name, "volume_ml": round(m.volume_ml, 3),
            mean_key: round(m.mean_intensity, 1),
            "completeness": None if r.get("completeness") is None else round(float(r["completeness"]), 4),
            "complete": None if r.get("complete") is None else _truthy(r["complete"]),
            "regressed_label": None if r.get("regressed_label") is None else round(float(r["regressed_label"]), 2),
            "anterior_height_mm": _round(m.anterior_height_mm), "middle_height_mm": _round(m.middle_height_mm),
            "posterior_height_mm": _round(m.posterior_height_mm), "body_depth_mm": _round(m.body_depth_mm),
            "traversal_index": None if r.get("traversal_index") is None else int(r["traversal_index"]),
        })
    return rows


COLUMN_DESCRIPTIONS = {
    "label": "VerSe id of the vertebra (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 S1, 28 T13)",
    "volume_ml": "volume of the segment",
    "mean_hu": "mean CT value inside the segment",
    "mean_intensity": "mean image intensity inside the segment",
    "completeness": "probability that the vertebra lies completely inside the scan (network)",
    "complete": "classified as completely visible (incomplete ones are flagged in the segmentation)",
    "regressed_label": "anatomical label the network regressed (1 = C1 ... 24 = L5)",
    "anterior_height_mm": "vertebral body height along the spine's local axis, anterior third (median)",
    "middle_height_mm": "vertebral body height along the spine's local axis, middle third (median)",
    "posterior_height_mm": "vertebral body height along the spine's local axis, posterior third (median)",
    "body_depth_mm": "anterior-posterior extent of the vertebral body where it is at least half its height",
    "traversal_index": "order in which the traversal found the vertebra",
}


def _round(v: float, digits: int = 2):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def read_iis_table(path) -> list[dict]:
    """The rows of a ``spineseg iis --table`` file (tab- or comma-separated)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    return list(csv.DictReader(text.splitlines(), delimiter=delimiter))


# -- the logic ----------------------------------------------------------------------------------------------
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
        from ..iis.inference import check_extent

        image = check_volume_node(volume_node, min_slices=2)
        check_extent(image)
        return image

    def check_model(self, model_path, image: Optional[Image] = None, check_modality: bool = True,
                    read_weights: bool = True):
        """The :class:`~SpineSegLib.iis.model_catalog.ModelInfo` of a weights file; InputError when the file is
        missing or, with ``image``, when the model is for the other modality than the image looks like.
        ``read_weights=False`` never loads the weights file (no torch import): the card must say what it knows."""
        from ..iis.model_catalog import describe_model

        if not model_path:
            raise InputError("no model selected: choose a bundled model or a weights file (.pt)")
        info = describe_model(model_path, read_weights=read_weights)
        if image is not None and check_modality and info.modality:
            from ..iis.inference import guess_modality

            modality, reason = guess_modality(image)
            if modality != info.modality:
                raise InputError(
                    f"model {info.name!r} is a {info.modality.upper()} model, but the input looks like "
                    f"{modality.upper()} ({reason}); choose a {modality.upper()} model, or turn the modality "
                    "check off if the input really is " + info.modality.upper())
        return info

    def models(self):
        """Bundled models (``Resources/Models``) with their cards."""
        from ..iis.model_catalog import list_models

        return list_models(read_weights=False)

    # -- run-time estimate ----------------------------------------------------------------------------------
    def estimate(self, volume_node, model_path, probe: Optional[dict] = None):
        """A :class:`~SpineSegLib.iis.runtime_estimate.Estimate` for this volume and model: measured seconds per
        pass (``probe`` or this machine's cache), else the model card's, else a guess from the arithmetic."""
        from ..iis.runtime_estimate import PassTimeCache, estimate, extent_of

        from ..iis.config import IISConfig

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
        from ..iis.runtime_estimate import PassTimeCache, parse_probe

        args = ["-m", "SpineSegLib.iis.runtime_estimate"]
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

        Returns the :class:`~SpineSegLib.background.BackgroundProcess`; drive it with ``poll()`` (GUI timer) or
        ``wait()``. Once done, ``task.result`` is an :class:`IISOutputs`. With ``show_patches`` the patch the
        child is working on is shown as an ROI box while it runs (removed at the end).
        """
        image = self.check_input(volume_node)
        info = self.check_model(model_path, image, check_modality)
        if device not in ("auto", "cpu", "cuda"):
            raise InputError(f"unknown device {device!r} (use auto, cpu or cuda)")
        work = Path(tempfile.mkdtemp(prefix="SpineSeg-IIS-"))
        try:
            write_image(image, work / "input.nii", force=True, compress=False)
        except BaseException:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            raise
        out_labels, out_table, steps_dir = work / "vertebrae.nii.gz", work / "vertebrae.tsv", work / "steps"
        args = ["iis", work / "input.nii", "-o", out_labels, "--model", Path(model_path).resolve(), "--device", device,
                "--table", out_table, "--force"]
        if show_patches:
            args += ["--steps-dir", steps_dir]
        if keep_incomplete:
            args.append("--keep-incomplete")
        if start_point_lps is not None:
            args += ["--start", ",".join(f"{float(v):.3f}" for v in start_point_lps)]
        if threads:
            args += ["--threads", int(threads)]
        if not check_modality:
            args.append("--no-modality-check")
        command = background.spineseg_command(*args, python=self.python)
        modality = info.modality or "ct"
        display = _PatchDisplay(self.scene, volume_node) if show_patches else None
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
        :class:`~SpineSegLib.background.BackgroundError`."""
        task = self.start(volume_node, model_path, device, **options)
        try:
            task.wait(timeout)
        except BaseException:
            task.cancel()
            raise
        task.raise_for_state()
        return task.result

    # -- importing ------------------------------------------------------------------------------------------
    def import_result(self, volume_node, image: Image, labels: Image, records: list[dict], modality: str,
                      name: Optional[str] = None, info: Optional[dict] = None) -> IISOutputs:
        """The segmentation and per-vertebra table for a label map + IIS table rows, in one transaction."""
        if not labels.same_grid(image):
            raise SpineSegError("the IIS result does not lie on the input's grid")
        present = {int(v) for v in np.unique(labels.array) if v}
        records = [r for r in records if int(r["id"]) in present]
        base = name or f"{volume_node.GetName()} vertebrae"
        with scene_transaction(self.scene):
            vertebrae = {int(r["id"]): {"complete": _truthy(r["complete"]),
                                        "completeness_probability": float(r["completeness"]),
                                        "regressed_label": float(r["regressed_label"])}
                         for r in records if int(r["id"]) in VERTEBRAE}
            segmentation = mb.labelmap_to_segmentation(self.scene, labels, reference_volume=volume_node, name=base,
                                                       vertebrae=vertebrae)
            rows = vertebra_rows(labels, image, records, modality)
            table = mr.add_table(self.scene, rows_for_table(rows), base + " table", descriptions=COLUMN_DESCRIPTIONS,
                                 units={"mean_hu": "HU"}, next_to=volume_node)
        return IISOutputs(segmentation, table, rows, labels, info=dict(info or {}))

    def import_iis_result(self, volume_node, image: Image, result, name: Optional[str] = None) -> IISOutputs:
        """Import an in-process :class:`~SpineSegLib.iis.inference.IISResult` (stepping) like a background run."""
        records = [dict(r.row(), id=r.id) for r in result.instances if r.in_output]
        out = self.import_result(volume_node, image, result.labels, records, result.config.modality, name=name,
                                 info={"device": result.device, "network_passes": result.network_passes,
                                       "timings": result.timings})
        out.warnings = list(result.warnings)
        return out

    # -- stepping -------------------------------------------------------------------------------------------
    def stepper(self, volume_node, model_path, device: str = "auto", keep_incomplete: bool = True,
                start_point_lps=None, threads: Optional[int] = None, check_modality: bool = True) -> "IISStepper":
        """An :class:`IISStepper` for one network pass per :meth:`IISStepper.step` (torch runs in this process)."""
        image = self.check_input(volume_node)
        self.check_model(model_path, image, check_modality)
        return IISStepper(self, volume_node, image, model_path, device=device, keep_incomplete=keep_incomplete,
                          start_point_lps=start_point_lps, threads=threads, check_modality=check_modality)

    # -- evaluation and export --------------------------------------------------------------------------------
    def evaluate(self, segmentation_node, reference_node, volume_node, name: Optional[str] = None):
        """Per-vertebra metrics (:mod:`SpineSegLib.instance_metrics`) of a segmentation against a reference
        segmentation or label map: returns ``(table node, CaseResult)``; the table has one row per reference
        vertebra (and extra predictions) followed by nothing else, its summary is in the node's attributes."""
        from ..instance_metrics import evaluate_instance_images

        if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
            raise InputError("no segmentation to evaluate: run the segmentation first, or choose one")
        reference = reference_image(reference_node, volume_node)
        prediction = mb.segmentation_to_image(segmentation_node, volume_node)
        completeness = {}
        for sid, label in mb.segment_labels(segmentation_node, strict=False).items():
            value = mb.segment_tag(segmentation_node.GetSegmentation().GetSegment(sid), mb.TAG_COMPLETENESS)
            if value in ("complete", "incomplete"):
                completeness[label] = value == "complete"
        result = evaluate_instance_images(prediction, reference, pred_completeness=completeness or None)
        with scene_transaction(self.scene):
            table = mr.add_table(self.scene, rows_for_table(result.to_rows()),
                                 name or f"{segmentation_node.GetName()} evaluation", next_to=volume_node)
            for key, value in result.summary().items():
                table.SetAttribute(f"SpineSeg.{key}", str(value))
        return table, result


# -- showing patches -----------------------------------------------------------------------------------------
class _PatchDisplay:
    """The temporary nodes that show where the traversal is: the patch box, the current fragment, the memory."""

    def __init__(self, scene, volume_node):
        self.scene = scene
        self.volume_node = volume_node
        self._had_colour_table = _vertebra_colour_table(scene) is not None
        self.box = None
        self.fragment = None
        self.memory = None
        self.memory_colours = None
        self.found = None

    def show_box(self, centre_lps, size_mm, axes_lps) -> None:
        axes = np.asarray(axes_lps, dtype=float).T      # PatchBox keeps one axis per row; ROI wants columns
        if self.box is None or self.box.GetScene() is None:
            self.box = mr.add_box(self.scene, centre_lps, size_mm, axes, name="IIS patch", colour=PATCH_COLOUR,
                                  next_to=self.volume_node)
            self.box.SetAttribute("SpineSeg.Temporary", "1")
        else:
            mr.set_box(self.box, centre_lps, size_mm, axes)

    def show_record(self, record: dict) -> None:
        """A step as ``spineseg iis --steps-dir`` writes it (dict)."""
        box = record.get("box")
        if box:
            self.show_box(box["centre_lps"], box["size_mm"], box["axes_lps"])

    def show_fragment(self, fragment: Optional[Image], title: str) -> None:
        if self.fragment is not None:
            self.fragment.GetSegmentation().RemoveAllSegments()
        if fragment is None or not np.any(fragment.array):
            return
        labels = fragment.with_array(np.where(fragment.array > 0, FRAGMENT_LABEL, 0).astype(np.uint8))
        if self.fragment is None or self.fragment.GetScene() is None:
            self.fragment = mb.labelmap_to_segmentation(self.scene, labels, name="IIS fragment")
            self.fragment.SetAttribute("SpineSeg.Temporary", "1")
            mb.place_next_to(self.fragment, self.volume_node)
        else:
            mb.labelmap_to_segmentation(self.scene, labels, name="IIS fragment", node=self.fragment)
        segmentation = self.fragment.GetSegmentation()
        segment = segmentation.GetNthSegment(0)
        segment.SetName(title)
        segment.SetColor(*FRAGMENT_COLOUR)

    def show_memory(self, memory: np.ndarray, grid: Image) -> None:
        binary = Image((np.asarray(memory) > 0).astype(np.uint8), grid.spacing, grid.origin, grid.direction)
        if self.memory is None or self.memory.GetScene() is None:
            self.memory_colours = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "IIS memory colours")
            self.memory_colours.SetTypeToUser()
            self.memory_colours.SetNumberOfColors(2)
            self.memory_colours.SetColor(0, "background", 0, 0, 0, 0)
            self.memory_colours.SetColor(1, "in memory", 0.35, 0.55, 1.0, 1.0)
            self.memory_colours.SetAttribute("SpineSeg.Temporary", "1")
            self.memory = mb.image_to_volume(self.scene, binary, "IIS memory", labelmap=True,
                                             colour_table=self.memory_colours)
            self.memory.SetAttribute("SpineSeg.Temporary", "1")
            mb.place_next_to(self.memory, self.volume_node)
        else:
            mb.image_to_volume(self.scene, binary, node=self.memory, labelmap=True, colour_table=self.memory_colours)

    def show_found(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.found is None or self.found.GetScene() is None:
            self.found = mr.add_table(self.scene, rows, "IIS vertebrae so far", next_to=self.volume_node)
            self.found.SetAttribute("SpineSeg.Temporary", "1")
        else:
            mr.set_table(self.found, rows)

    def nodes(self) -> list:
        return [n for n in (self.box, self.fragment, self.memory, self.memory_colours, self.found)
                if n is not None and n.GetScene() is not None]

    def remove(self) -> None:
        remove_nodes(*self.nodes())
        self.box = self.fragment = self.memory = self.memory_colours = self.found = None
        # the fragment made the bridge create the scene's vertebra colour table: remove it again when nothing uses it
        table = _vertebra_colour_table(self.scene)
        if table is not None and not self._had_colour_table and not _colour_table_used(self.scene, table):
            remove_nodes(table)


def _vertebra_colour_table(scene):
    nodes = scene.GetNodesByClass("vtkMRMLColorTableNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetAttribute(mb.COLOUR_TABLE_ROLE) == "vertebrae":
            return node
    return None


def _colour_table_used(scene, table) -> bool:
    segmentations = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for i in range(segmentations.GetNumberOfItems()):
        node = segmentations.GetItemAsObject(i)
        if node.GetLabelmapConversionColorTableNodeID() == table.GetID():
            return True
    displays = scene.GetNodesByClass("vtkMRMLDisplayNode")
    for i in range(displays.GetNumberOfItems()):
        if displays.GetItemAsObject(i).GetColorNodeID() == table.GetID():
            return True
    return False


def model_grid_of(box) -> Image:
    """The model grid's geometry (an empty Image) from any :class:`~SpineSegLib.iis.traversal.PatchBox` on it."""
    direction = np.asarray(box.axes_lps, dtype=float).T
    spacing = np.asarray(box.spacing_mm, dtype=float)
    start_ijk = np.asarray(box.start_voxel[::-1], dtype=float)
    origin = np.asarray(box.origin_lps, dtype=float) - direction @ (spacing * start_ijk)
    return Image(np.zeros((1, 1, 1), np.uint8), tuple(spacing), tuple(origin), direction)


# -- stepping ------------------------------------------------------------------------------------------------
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

    def __init__(self, logic: IISLogic, volume_node, image: Image, model_path, device: str = "auto",
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
        self.display = _PatchDisplay(logic.scene, volume_node)
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
        from ..iis.inference import segment_vertebrae

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
        self.message = f"pass {step.index}: {step.phase} ({step.event})" + (f" - {step.message}" if step.message else "")

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
