"""The classical spine segmentation (Revy et al.) of a CT volume node, shown in the scene. Qt-free: the module
``SpineSeg.py`` adds only widgets; runs in 3D Slicer and under ``slicer-core``.

:meth:`ClassicalLogic.run` checks the input, runs :func:`~SpineSegLib.classical.segment_spine` (with a
:class:`~SpineSegLib.core.progress.Progress` the GUI ties to its progress bar and Cancel button), then adds in one
scene transaction (a failure or a cancel adds nothing):

* a segmentation with one segment "Spine" (terminology: vertebral column) on the input's grid;
* the spine centerline (the fitted curve, one control point per axial slice) as a markups curve;
* the current axial slice's bounding lines H1-H3 / V1-V6 (markups curves), fitted parabola (curve) and DP
  contour points (point list), in a subject-hierarchy folder: :meth:`ClassicalLogic.show_slice` moves
  them to the axial slice nearest to a position, :meth:`ClassicalLogic.follow_slice_node` does it
  whenever the user scrolls a slice view (the red one in the module);
* with ``vertebrae=True`` (:func:`~SpineSegLib.classical.vertebrae.label_vertebrae` in the child): a second
  segmentation with one named, coloured, terminology-coded segment per vertebra (those cut by the field of view
  flagged; the evidence behind each name in the tag ``SpineSeg.Evidence``) and a table node of the per-vertebra
  report (:mod:`SpineSegLib.evaluation.vertebra_report`); whether the names are certain, and why, is in
  ``ClassicalOutputs.naming`` and the table's attributes ``SpineSeg.names_certain`` / ``SpineSeg.naming_note``;
* with a reference segmentation or label map, a metrics table (IoU, DSC, HD95, ASSD, volumes) exactly as
  :func:`~SpineSegLib.evaluation.metrics.evaluate_binary_images` computes them. A reference on another grid is
  checked before the pipeline runs (:mod:`SpineSegLib.core.grids`); how it was mapped is in
  ``ClassicalOutputs.grid_notes`` and the table's attribute ``SpineSeg.grid_note``. With vertebrae and a reference
  that names at least two vertebrae, also the per-vertebra metrics (Dice, ASSD, detection, identification) of the
  vertebrae segmentation -- the IIS module's Evaluate, :mod:`SpineSegLib.slicer.vertebra_evaluation` -- as a
  second table (``ClassicalOutputs.vertebrae_evaluation``, its summary in ``vertebrae_scores``; why there is none
  in ``vertebrae_evaluation_note``).

Console use (Slicer's Python console)::

    from SpineSegLib.slicer.classical_logic import ClassicalLogic
    logic = ClassicalLogic(slicer.mrmlScene)
    out = logic.run(getNode("CTChest"), {"bone_threshold_hu": 180})
    out.segmentation, out.centerline          # nodes
    out = logic.run(getNode("CTChest"), vertebrae=True)
    out.vertebrae_segmentation, out.vertebrae_table, out.naming.certain
    logic.evaluate(out, getNode("reference"))  # the metrics table; out.vertebrae_evaluation: per vertebra
    logic.follow_slice_node(out, getNode("vtkMRMLSliceNodeRed"))   # lines follow the red slice view
    logic.export_labelmap(out, "spine.nii.gz")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import slicer
import vtk

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.grids import check
from SpineSegLib.core.notes import collect_notes
from SpineSegLib.core.events import EngineRequest
from SpineSegLib.core.image import Image, read_image, write_image
from SpineSegLib.core.label_files import REGION_CONTEXT, TERMINOLOGY_CONTEXT
from SpineSegLib.core.labels import VERTEBRAE
from SpineSegLib.slicer import vertebra_evaluation
from SpineSegLib.slicer.classical_geometry import classical_result
from SpineSegLib.slicer.common import check_volume_node, reference_image, rows_for_table
from SpineSegLib.slicer.engine import EngineTask
from SpineSegLib.slicer.markups import add_curve, add_points, set_control_points
from SpineSegLib.slicer.scene import add_folder, remove_nodes, scene_transaction, subject_hierarchy_item
from SpineSegLib.slicer.segmentations import labelmap_to_segmentation, segmentation_to_image
from SpineSegLib.slicer.storage import save_node
from SpineSegLib.slicer.tables import add_table, set_table
from SpineSegLib.slicer.volumes import ras_to_lps

SPINE_LABEL = 255           # the spine segment's id (outside the vertebra table, so it is never coded as one)
SPINE_COLOUR = (0.95, 0.85, 0.55)
SPINE_TERMINOLOGY = (f"{TERMINOLOGY_CONTEXT}~SCT^123037004^Anatomical Structure~SCT^421060004^Vertebral column"
                     f"~^^~{REGION_CONTEXT}~^^~^^")
LINE_NAMES = ("H1", "H2", "H3", "V1", "V2", "V3", "V4", "V5", "V6")
H_COLOUR, V_COLOUR = (0.1, 0.9, 0.9), (0.95, 0.5, 0.9)
PARABOLA_COLOUR, DP_COLOUR, CENTERLINE_COLOUR = (0.3, 1.0, 0.3), (1.0, 0.3, 0.3), (1.0, 0.85, 0.1)


@dataclass
class SliceDisplay:
    """The markups that show one axial slice's intermediates (moved by ``show_slice``)."""

    folder: int
    lines: dict                      # H1 ... V6 -> markups curve (2 points)
    parabola: object                 # markups curve
    dp_points: object                # markups point list
    slice_index: Optional[int] = None

    def nodes(self) -> list:
        return [*self.lines.values(), self.parabola, self.dp_points]


@dataclass
class ClassicalOutputs:
    """What :meth:`ClassicalLogic.run` added to the scene, and the backend's result."""

    segmentation: object
    centerline: object
    slice_display: SliceDisplay
    result: object                   # ClassicalResult
    volume_node: object
    metrics_table: object = None
    metrics: dict = field(default_factory=dict)
    observers: list = field(default_factory=list)    # (node, tag) of slice-following observers
    grid_notes: list = field(default_factory=list)   # how the reference / the result were mapped for the metrics
    vertebrae_segmentation: object = None            # with vertebrae=True: one segment per vertebra
    vertebrae_table: object = None                   # ... and the per-vertebra report
    vertebrae: list = field(default_factory=list)    # core.events.NamedVertebraRecord, top to bottom
    naming: object = None                            # core.events.NamingSummary: names certain? anchors, or why not
    vertebrae_evaluation: object = None              # per-vertebra metrics against the reference (a table node)
    vertebrae_scores: dict = field(default_factory=dict)    # their summary (instance_metrics.summarize keys)
    vertebrae_evaluation_note: str = ""              # why there are no per-vertebra metrics (else "")

    @property
    def nodes(self) -> list:
        extra = [n for n in (self.metrics_table, self.vertebrae_segmentation, self.vertebrae_table,
                             self.vertebrae_evaluation) if n is not None]
        return [self.segmentation, self.centerline, *self.slice_display.nodes(), *extra]


def classical_params_class():
    """:class:`~SpineSegLib.classical.params.ClassicalParams`, also before the pipeline's own dependencies are
    installed: the module's parameter node takes its defaults from it when the module opens, and ``params.py``
    (plain dataclasses) imports nothing else (the ``classical`` package loads the pipeline only on first use)."""
    from SpineSegLib.classical.params import ClassicalParams

    return ClassicalParams


def classical_default(name: str):
    """The default of classical parameter ``name`` (see :func:`classical_params_class`)."""
    return getattr(classical_params_class()(), name)


def classical_params(values=None):
    """A :class:`~SpineSegLib.classical.ClassicalParams` from None, a ClassicalParams, a dict or any object
    with attributes named like its fields (e.g. the module's parameter node); other attributes are ignored."""
    from dataclasses import fields

    from SpineSegLib.classical.params import ClassicalParams

    if values is None:
        return ClassicalParams()
    if isinstance(values, ClassicalParams):
        return values
    names = {f.name: f.type for f in fields(ClassicalParams)}
    if isinstance(values, dict):
        unknown = set(values) - set(names)
        if unknown:
            raise InputError(f"unknown classical parameter(s): {', '.join(sorted(unknown))}")
        return ClassicalParams(**values)
    given = {}
    defaults = ClassicalParams()
    for name in names:
        if hasattr(values, name):
            value = getattr(values, name)
            given[name] = type(getattr(defaults, name))(value)
    return ClassicalParams(**given)


class ClassicalLogic:
    """Classical spine segmentation of volume nodes in a scene (module docstring: console use)."""

    def __init__(self, scene=None):
        self.scene = scene if scene is not None else slicer.mrmlScene

    def check_input(self, volume_node) -> Image:
        """The input as an Image, or an InputError naming the problem (nothing selected, a label map, a
        segmentation, a single slice ...); the CT-specific checks follow in the pipeline."""
        return check_volume_node(volume_node, min_slices=2)

    def start(self, volume_node, params=None, reference_node=None, name: Optional[str] = None,
              slice_position_lps=None, on_progress=None, on_state=None, on_line=None,
              python: Optional[str] = None, vertebrae: bool = False) -> EngineTask:
        """Check the input (and the reference's grid) and start the pipeline in the engine child
        (``spineseg engine classical``, with ``vertebrae`` also labelling the vertebrae); ``task.result`` is the
        :class:`ClassicalOutputs` once done. Drive it with ``poll()`` (GUI timer) or ``wait()``; ``cancel()`` kills
        it at once and adds nothing."""
        image = self.check_input(volume_node)
        params = classical_params(params)
        with collect_notes() as notes:
            reference = reference_image(reference_node, volume_node) if reference_node is not None else None
        if reference is not None:
            check(image, reference)                  # before the work, not after it

        def request(work):
            return EngineRequest("classical", work / "input.nii", work, params=params.to_dict(),
                                 vertebrae=bool(vertebrae), report=bool(vertebrae))

        def finish(task, event):
            result = classical_result(read_image(event.labels_path), event.geometry)
            result.timings = dict(event.info.get("timings") or {})      # the child's seconds per step
            return self._add_outputs(volume_node, result, reference, notes + task.notes, name, slice_position_lps,
                                     event if event.vertebrae_path else None)

        return EngineTask(image, request, python=python, finish=finish, on_progress=on_progress, on_state=on_state,
                          on_line=on_line, name="SpineSeg").start()

    def run(self, volume_node, params=None, progress=None, reference_node=None, name: Optional[str] = None,
            slice_position_lps=None, vertebrae: bool = False) -> ClassicalOutputs:
        """Segment the spine of ``volume_node`` (``vertebrae``: and label its vertebrae) in the engine child and show
        the result (module docstring); waits.
        ``params``: None, a ClassicalParams, a dict or an object with such attributes; ``progress``: a
        :class:`~SpineSegLib.core.progress.Progress` that sees the child's phases and whose ``cancel()`` kills it.
        Raises InputError / NoSpineFoundError (the child's message) / Cancelled before anything is added."""
        from SpineSegLib.core.progress import Cancelled

        def forward(fraction, phase):
            if progress is not None and progress.callback is not None and not progress.cancelled:
                progress.callback(phase, fraction)

        task = self.start(volume_node, params, reference_node, name, slice_position_lps, on_progress=forward,
                          vertebrae=vertebrae)
        try:
            while task.poll() == "running":
                if progress is not None and progress.cancelled:
                    task.cancel()
                    raise Cancelled("cancelled by the user")
                time.sleep(0.02)
        except BaseException:
            task.cancel()
            raise
        if task.state != "done" and progress is not None and progress.cancelled:
            raise Cancelled("cancelled by the user")
        task.raise_for_state()
        return task.result

    def _add_outputs(self, volume_node, result, reference, notes, name, slice_position_lps,
                     vertebrae_event=None) -> ClassicalOutputs:
        base = name or f"{volume_node.GetName()} spine"
        with scene_transaction(self.scene):
            segmentation = self.add_segmentation(result.mask, volume_node, base)
            centerline = add_curve(self.scene, result.centerline_curve_lps, base + " centerline",
                                   colour=CENTERLINE_COLOUR, next_to=volume_node, locked=True)
            display = self._add_slice_display(base, volume_node)
            out = ClassicalOutputs(segmentation, centerline, display, result, volume_node)
            if slice_position_lps is None:
                middle = result.slices[len(result.slices) // 2] if result.slices else None
                slice_position_lps = np.mean(middle.h1, axis=0) if middle else None
            if slice_position_lps is not None:
                self.show_slice(out, slice_position_lps)
            if vertebrae_event is not None:
                self._add_vertebrae(out, vertebrae_event, f"{name or volume_node.GetName()} vertebrae")
            if reference is not None:
                self._add_metrics(out, reference, base, notes)
        return out

    def _add_vertebrae(self, out: ClassicalOutputs, event, name: str) -> None:
        """The child's label map as one segment per vertebra (named, coloured and coded by
        :func:`~SpineSegLib.slicer.segmentations.labelmap_to_segmentation`; completeness, evidence and naming as
        segment tags) and the report rows as a table node, as :func:`~SpineSegLib.slicer.iis_results.import_result`
        imports an IIS result."""
        labels = read_image(event.vertebrae_path)
        if not labels.same_grid(out.result.mask):
            raise InputError("the vertebrae the engine labelled do not lie on the input's grid")
        naming = event.naming
        out.vertebrae, out.naming = list(event.vertebrae), naming
        certain = bool(naming.certain) if naming is not None else False
        tags = {r.label: {"complete": r.complete, "evidence": "; ".join(r.evidence), "names_certain": certain}
                for r in event.vertebrae if r.label in VERTEBRAE}
        out.vertebrae_segmentation = labelmap_to_segmentation(self.scene, labels, reference_volume=out.volume_node,
                                                              name=name, vertebrae=tags)
        rows = event.report_rows or [{"label": r.label, "name": r.name, "complete": r.complete,
                                      "evidence": "; ".join(r.evidence)} for r in event.vertebrae]
        out.vertebrae_table = add_table(self.scene, rows_for_table(rows), name + " table", next_to=out.volume_node,
                                        descriptions=event.info.get("report_columns"))
        for node in (out.vertebrae_segmentation, out.vertebrae_table):
            node.SetAttribute("SpineSeg.names_certain", "true" if certain else "false")
            node.SetAttribute("SpineSeg.naming_note", naming.note if naming is not None else "")

    # -- results in the scene ------------------------------------------------------------------------------
    def add_segmentation(self, mask: Image, volume_node, name: str):
        """A segmentation with the one segment "Spine" from a 0/1 mask on the input's grid."""
        labels = mask.with_array(np.where(np.asarray(mask.array) > 0, SPINE_LABEL, 0).astype(np.uint8))
        node = labelmap_to_segmentation(self.scene, labels, reference_volume=volume_node, name=name)
        segmentation = node.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            segment.SetName("Spine")
            segment.SetColor(*SPINE_COLOUR)
            segment.SetTerminology(SPINE_TERMINOLOGY)
        return node

    def _add_slice_display(self, base: str, volume_node) -> SliceDisplay:
        folder = add_folder(self.scene, base + " slice", next_to=volume_node)
        placeholder = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        lines = {}
        for n in LINE_NAMES:
            node = add_curve(self.scene, placeholder, n, colour=H_COLOUR if n.startswith("H") else V_COLOUR,
                             locked=True, parent_item=folder)
            lines[n] = node
        parabola = add_curve(self.scene, placeholder, "parabola", colour=PARABOLA_COLOUR, locked=True,
                             parent_item=folder)
        dp = add_points(self.scene, np.zeros((0, 3)), "DP points", colour=DP_COLOUR, locked=True)
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        sh.SetItemParent(subject_hierarchy_item(dp), folder)
        for node in [*lines.values(), parabola, dp]:
            node.GetDisplayNode().SetVisibility(False)
        return SliceDisplay(folder, lines, parabola, dp)

    def _add_metrics(self, out: ClassicalOutputs, reference: Image, base: str, notes: list) -> None:
        from SpineSegLib.evaluation.metrics import evaluate_binary_images

        with collect_notes() as more:
            metrics = evaluate_binary_images(out.result.mask, reference)
        notes = list(notes) + more
        out.metrics, out.grid_notes = metrics, notes
        table = out.metrics_table
        if table is not None and table.GetScene() is self.scene:      # evaluated again: the same table, updated
            set_table(table, rows_for_table([metrics]), descriptions=METRIC_DESCRIPTIONS)
        else:
            out.metrics_table = add_table(self.scene, rows_for_table([metrics]), base + " metrics",
                                          next_to=out.volume_node, descriptions=METRIC_DESCRIPTIONS)
        if notes:
            out.metrics_table.SetAttribute("SpineSeg.grid_note", "; ".join(notes))
        else:
            out.metrics_table.RemoveAttribute("SpineSeg.grid_note")
        if out.vertebrae_segmentation is not None:
            self._add_vertebra_metrics(out, reference, notes)

    def _add_vertebra_metrics(self, out: ClassicalOutputs, reference: Image, notes: list) -> None:
        """The per-vertebra metrics of the vertebrae segmentation (with the user's edits) against ``reference``;
        a reference of the spine as a whole (fewer than two vertebra ids) gives none, and says so."""
        from SpineSegLib.evaluation.label_maps import label_ids

        ids = [i for i in label_ids(reference.array) if i in VERTEBRAE]
        if len(ids) < 2:
            remove_nodes(out.vertebrae_evaluation)             # an earlier reference's table would mislead
            out.vertebrae_evaluation, out.vertebrae_scores = None, {}
            out.vertebrae_evaluation_note = (f"no per-vertebra metrics: the reference holds "
                                             f"{'one vertebra id' if ids else 'no vertebra id'} (a mask of the "
                                             "spine as a whole?); it needs one label per vertebra (VerSe ids)")
            return
        seg = out.vertebrae_segmentation
        out.vertebrae_evaluation, result = vertebra_evaluation.evaluate_reference(
            self.scene, seg, reference, out.volume_node, seg.GetName() + " evaluation", notes)
        out.vertebrae_scores, out.vertebrae_evaluation_note = result.summary(), ""

    def evaluate(self, out: ClassicalOutputs, reference_node) -> object:
        """(Re)compute the metrics table of a result against a reference segmentation or label map (the result's
        table, updated in place when it is still in the scene); with vertebrae also the per-vertebra table
        (``out.vertebrae_evaluation``, likewise updated). Returns the metrics table."""
        with collect_notes() as notes:
            reference = reference_image(reference_node, out.volume_node)
        check(out.result.mask, reference)            # a refused reference keeps the table there is
        with scene_transaction(self.scene):
            self._add_metrics(out, reference, out.segmentation.GetName(), notes)
        return out.metrics_table

    # -- the current slice -----------------------------------------------------------------------------------
    def nearest_slice(self, out: ClassicalOutputs, plane_point_lps, plane_normal_lps=(0.0, 0.0, 1.0),
                      tolerance_mm: Optional[float] = None):
        """``(index into result.slices, signed distances)`` of the slice nearest to the plane through
        ``plane_point_lps`` with ``plane_normal_lps`` (None when none lies within ``tolerance_mm``, default
        half the slice spacing)."""
        slices = out.result.slices
        if not slices:
            return None
        p = np.asarray(plane_point_lps, float)
        n = np.asarray(plane_normal_lps, float)
        n = n / np.linalg.norm(n)
        centres = np.array([np.mean(s.h1, axis=0) for s in slices])
        distances = (centres - p) @ n
        best = int(np.argmin(np.abs(distances)))
        if tolerance_mm is None:
            z = sorted(float(s.z_mm) for s in slices)
            steps = np.diff(z)
            tolerance_mm = 0.5 * float(np.median(steps[steps > 0])) + 1e-3 if np.any(steps > 0) else 1.0
        if abs(distances[best]) > tolerance_mm:
            return None
        return best

    def show_slice(self, out: ClassicalOutputs, plane_point_lps, plane_normal_lps=(0.0, 0.0, 1.0)) -> Optional[int]:
        """Show the bounding lines, parabola and DP points of the axial slice nearest to the plane (projected
        onto the plane, so a slice view shows them); hide them when no slice of the result is near. Returns
        the index into ``result.slices`` shown, or None."""
        display = out.slice_display
        best = self.nearest_slice(out, plane_point_lps, plane_normal_lps)
        nodes = display.nodes()
        if best is None:
            for node in nodes:
                node.GetDisplayNode().SetVisibility(False)
            display.slice_index = None
            return None
        entry = out.result.slices[best]
        p = np.asarray(plane_point_lps, float)
        n = np.asarray(plane_normal_lps, float) / np.linalg.norm(plane_normal_lps)

        def on_plane(points):
            points = np.asarray(points, float).reshape(-1, 3)
            return points - np.outer((points - p) @ n, n)

        for name, node in display.lines.items():
            set_control_points(node, on_plane(entry.segments()[name]))
            node.GetDisplayNode().SetVisibility(True)
        fit = next((f for f in out.result.parabolas if f.slice_index == entry.slice_index), None)
        for node, key in ((display.parabola, "parabola"), (display.dp_points, "dp_points")):
            points = getattr(fit, key) if fit else None
            if points is not None and len(points):
                set_control_points(node, on_plane(points))
                node.GetDisplayNode().SetVisibility(True)
            else:
                node.GetDisplayNode().SetVisibility(False)
        display.slice_index = best
        return best

    def follow_slice_node(self, out: ClassicalOutputs, slice_node) -> None:
        """Keep the slice markups on the slice ``slice_node`` shows (its ModifiedEvent: scrolling, moving)."""
        self.stop_following(out)

        def update(caller, event=None):
            m = caller.GetSliceToRAS()
            normal_ras = np.array([m.GetElement(r, 2) for r in range(3)])
            point_ras = np.array([m.GetElement(r, 3) for r in range(3)])
            self.show_slice(out, ras_to_lps(point_ras), ras_to_lps(normal_ras))

        tag = slice_node.AddObserver(vtk.vtkCommand.ModifiedEvent, update)
        out.observers.append((slice_node, tag))
        update(slice_node)

    def stop_following(self, out: ClassicalOutputs) -> None:
        for node, tag in out.observers:
            node.RemoveObserver(tag)
        out.observers.clear()

    # -- export -----------------------------------------------------------------------------------------------
    def export_labelmap(self, out: ClassicalOutputs, path, force: bool = False):
        """The spine as a 0/1 mask file on the input's grid (as ``spineseg classical`` writes it), taken from the
        segmentation node -- so the user's edits in the Segment Editor are exported."""
        ids = segmentation_to_image(out.segmentation, out.volume_node)
        return write_image(ids.with_array((ids.array > 0).astype(np.uint8)), path, force=force)

    def export_table(self, out: ClassicalOutputs, path, force: bool = False):
        if out.metrics_table is None:
            raise InputError("there is no metrics table yet: choose a reference and evaluate first")
        return save_node(out.metrics_table, path, force=force)

    def remove(self, out: ClassicalOutputs) -> None:
        """Remove a result's nodes (e.g. before running again)."""
        self.stop_following(out)
        remove_nodes(*out.nodes)
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if out.slice_display.folder:
            sh.RemoveItem(out.slice_display.folder, False, True)


METRIC_DESCRIPTIONS = {
    "iou": "intersection over union (Jaccard) with the reference",
    "dsc": "Dice similarity coefficient",
    "hd95_mm": "95th-percentile symmetric Hausdorff distance between the surfaces",
    "assd_mm": "average symmetric surface distance (Heimann et al. 2009)",
    "pred_volume_ml": "volume of the segmentation",
    "ref_volume_ml": "volume of the reference",
}
