"""Vertebra segmentation and labelling with a trained IIS network: the whole pipeline in one call.

``segment_vertebrae`` checks the input (modality, size; ``checks.py``), loads the model, builds the
network's ``predict`` (``predictor.py``), brings the scan onto the model grid (``preprocess.py``),
runs the traversal (``traversal.py``), maps every accepted vertebra back onto the INPUT's grid and
refines CT vertebrae (``assembly.py``), and names the vertebrae with the maximum-likelihood label
sequence (``core/label_sequence.py``). Output ids are those of ``SpineSegLib.core.labels`` (VerSe ids; the
SPIDER variant adds discs and the spinal canal, see ``assembly.py``). :class:`IISRun` is the same
pipeline in pieces, steppable one network pass at a time.

Input checks: an image shorter than 30 mm along an axis is refused (smaller than one patch is
fine: patches are padded); CT vs MR is guessed from the intensities (``checks.guess_modality``) and
a model of the other modality is refused unless ``check_modality=False``, as is a CT whose values are
no longer HU (``checks.check_ct_encoding``: stored as HU + 1024 without its rescale, or windowed to 0-255). A weights file whose
metadata says ``"label_head_trained": false`` (e.g. trained on SPIDER without anatomical labels)
makes the traversal ignore the regressed label, and the label sequence anchors at L5.

Console use::

    from SpineSegLib.core.image import read_image, write_image
    from SpineSegLib.iis.infer.run import segment_vertebrae
    from SpineSegLib.iis.model.catalog import resolve_model
    result = segment_vertebrae(read_image("mr.nii.gz"), resolve_model("mr-vertebral-bodies"), device="auto")
    write_image(result.labels, "vertebrae.nii.gz")
    for v in result.instances:
        print(v.id, v.name, v.complete, round(v.volume_ml, 1))
    result.write_table("vertebrae.tsv")
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

from SpineSegLib.core.errors import InputError, NoSpineFoundError, SpineSegError
from SpineSegLib.core.image import Image
from SpineSegLib.core.notes import note
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.iis.infer.assembly import IISResult, assemble_output, compose_labels, instance_records
from SpineSegLib.iis.infer.checks import centerline_start_point, check_ct_encoding, check_extent, guess_modality
from SpineSegLib.core.label_sequence import fit_label_sequence
from SpineSegLib.iis.infer.preprocess import to_model_grid
from SpineSegLib.iis.infer.traversal import IISTraversal
from SpineSegLib.iis.infer.traversal_options import TraversalOptions
from SpineSegLib.iis.infer.traversal_records import TraversalStep

log = logging.getLogger(__name__)


# -- the model -----------------------------------------------------------------------------------
def _load(model, expected_modality: Optional[str], expected_sha256: Optional[str] = None):
    from SpineSegLib.iis.model.checkpoint import load_model

    if isinstance(model, (str, Path)):
        net, config, metadata = load_model(model, expected_modality=expected_modality, device="cpu",
                                           expected_sha256=expected_sha256)
        _note_if_experimental(Path(model))
        return net, config, metadata
    if isinstance(model, tuple) and len(model) == 2:
        net, config = model
    elif hasattr(model, "config"):
        net, config = model, model.config
    else:
        raise InputError("model must be a weights file path, an IISNet, or a (model, IISConfig) pair")
    if expected_modality is not None and config.modality != expected_modality:
        raise InputError(f"this is a {config.modality.upper()} model, but the input is "
                         f"{expected_modality.upper()}; choose a {expected_modality.upper()} model")
    return net, config, {}


def _note_if_experimental(weights: Path) -> None:
    """An experimental model (its card says so) works, but its output must not pass for a result: say so."""
    from SpineSegLib.iis.model.cards import card_of, read_card

    card_path = card_of(weights)
    card = read_card(card_path) if card_path is not None else {}
    if card.get("experimental"):
        note(f"{card.get('name') or weights.stem} is an experimental model (its card: "
             f"{card_path.name}): its vertebrae and names are not reliable; check every one")


def _load_for(image: Image, model, check_modality: bool, expected_sha256: Optional[str]):
    """``_load`` with the modality guessed from ``image``; a refusal says why the input looked that way."""
    modality = reason = None
    if check_modality:
        check_ct_encoding(image)     # a CT stored as HU + 1024 or windowed to 0-255: no model fits, no override
        modality, reason = guess_modality(image)
    try:
        return _load(model, modality, expected_sha256)
    except InputError as exc:
        if modality is not None and "model, but the input is" in str(exc):
            raise InputError(f"{exc} (the input looks like {modality.upper()}: {reason}; if it is not, turn "
                             "the modality check off: --no-modality-check / check_modality=False)") from None
        raise


def build_predictor(net, config, device="auto", precision="auto", notify=None):
    """The traversal's ``predict``: a TorchPredictor, on CUDA wrapped to fall back to the CPU."""
    from SpineSegLib.iis.infer.predictor import FallbackPredictor, TorchPredictor
    from SpineSegLib.iis.model.device import resolve_device

    dev = resolve_device(device)
    primary = TorchPredictor(net, config, dev, precision)
    if dev.type != "cuda":
        return primary
    cpu_precision = precision if precision in ("auto", "fp32", "bf16") else "auto"
    return FallbackPredictor(primary, lambda: TorchPredictor(net, config, "cpu", cpu_precision), notify)


# -- the pipeline --------------------------------------------------------------------------------
class IISRun:
    """One segmentation, prepared and steppable: what :func:`segment_vertebrae` does, in pieces.

    The constructor checks the input, loads the model, resamples the scan and sets up the
    traversal (the arguments are those of :func:`segment_vertebrae`); :meth:`steps` runs the
    traversal one network pass at a time (a Slicer panel can show each step's patch box and
    fragment, and pause between them); :meth:`finish` runs what is left and returns the
    :class:`~SpineSegLib.iis.infer.assembly.IISResult`.

    Console use::

        run = IISRun(ct, "iis-ct.pt", device="cpu")
        for step in run.steps():
            print(step.index, step.phase, step.event, step.box and step.box.centre_lps)
        result = run.finish()
    """

    def __init__(self, image: Image, model, device: str = "auto", direction: Optional[str] = None,
                 keep_incomplete: bool = False, start_point_lps=None, progress: Optional[Progress] = None, *,
                 check_modality: bool = True, allow_t13: bool = False, allow_l6: bool = False,
                 precision: str = "auto", threads: Optional[int] = None, expected_sha256: Optional[str] = None,
                 predict: Optional[Callable] = None, traversal_options: Optional[dict] = None):
        import torch

        from SpineSegLib.iis.model.device import available_cores

        self.started = time.perf_counter()
        self.image = image
        self.progress = progress = progress or Progress()
        self.warnings: list[str] = []
        self.allow_t13, self.allow_l6 = allow_t13, allow_l6
        self.start_point_lps = start_point_lps

        progress.step("checking the input", 0.0)
        check_extent(image)
        net, config, metadata = _load_for(image, model, check_modality, expected_sha256)
        self.config = config
        self.direction = direction = self._check_direction(direction or config.direction)

        torch.set_num_threads(int(threads) if threads else available_cores())
        if isinstance(start_point_lps, str):
            start_point_lps = self.start_point_lps = self._centerline_start(start_point_lps)

        progress.step("resampling to the model grid", 0.02)
        t0 = time.perf_counter()
        self.model_grid = to_model_grid(image, config)
        self.timings = {"preprocess": time.perf_counter() - t0, "traversal": 0.0, "network": 0.0}

        if predict is None:
            predict = build_predictor(net, config, device, precision, notify=self.warn)
        self.predict = predict

        overrides = {}
        if metadata.get("label_head_trained") is False:   # e.g. trained on SPIDER without anatomical labels
            overrides.update(start_min_label=None, accept_min_label=None)
        overrides.update(traversal_options or {})
        overrides.update(keep_incomplete=keep_incomplete, start_lps=start_point_lps, direction=direction)
        self.traversal = IISTraversal(self.model_grid.image, self._timed_predict,
                                      TraversalOptions.from_config(config, **overrides),
                                      patch_size=config.patch_size, pad_value=config.pad_value,
                                      memory_channels=config.memory_channels)
        self._steps = None
        self._result: Optional[IISResult] = None

    def _check_direction(self, direction: str) -> str:
        if direction not in ("up", "down"):
            raise InputError(f"unknown traversal direction {direction!r} (use 'up' or 'down')")
        if direction != self.config.direction:
            raise InputError(f"this model was trained to traverse the spine {self.config.direction}wards; "
                             f"direction {direction!r} needs a model trained for it")
        return direction

    def _centerline_start(self, start: str):
        """The start point for ``start_point_lps="centerline"``: None (search) when the classical
        pipeline cannot give one."""
        if start != "centerline":
            raise InputError(f"unknown start point {start!r} (give LPS millimetres or 'centerline')")
        if self.config.modality != "ct":
            raise InputError("a start point from the classical centerline needs a CT; give one in LPS mm")
        self.progress.step("start point from the classical centerline", 0.01)
        try:
            return centerline_start_point(self.image, self.direction)
        except Cancelled:
            raise
        except SpineSegError as exc:   # no spine, or a scan the classical pipeline cannot take (a crop)
            self.warn(f"no start point from the classical centerline ({exc}); searching instead")
            return None

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)
        self.progress.step(f"warning: {message}", float("nan"))

    @property
    def device(self) -> str:
        describe = getattr(self.predict, "describe", None)
        return describe() if describe else "custom predictor"

    def _timed_predict(self, image_patch, memory_patch):
        t = time.perf_counter()
        try:
            return self.predict(image_patch, memory_patch)
        finally:
            self.timings["network"] += time.perf_counter() - t

    def steps(self):
        """The traversal's steps (:class:`~SpineSegLib.iis.infer.traversal_records.TraversalStep`), with
        progress and cancellation; calling it again continues where the last call stopped."""
        if self._steps is None:
            self._steps = self._drive()
        return self._steps

    def _drive(self):
        self.progress.step("traversal", 0.05)
        inner = self.traversal.steps()
        while True:
            t0 = time.perf_counter()          # only the traversal's own time, not the caller's pauses
            step = next(inner, None)
            self.timings["traversal"] += time.perf_counter() - t0
            if step is None:
                return
            yield step
            fraction = 0.05 + 0.85 * step.progress
            if step.phase == "converged" and step.accepted is not None:
                self.progress.step(f"traversal: {step.message}", fraction)
            elif step.phase != "done":
                self.progress.step("traversal", fraction)

    def finish(self) -> IISResult:
        """Run the rest of the traversal, map and label the vertebrae: the :class:`IISResult`."""
        if self._result is not None:
            return self._result
        for _ in self.steps():
            pass
        result = self.traversal.result
        config, image = self.config, self.image
        if not result.instances:
            raise NoSpineFoundError(
                f"no vertebra found: the {config.modality.upper()} model searched {result.steps} patches "
                f"({result.stop_reason}) without finding one; is the spine in the field of view"
                + (", and is the start point on a vertebra?" if self.start_point_lps is not None else "?"))

        self.progress.step("mapping the vertebrae onto the input grid", 0.9)
        t0 = time.perf_counter()
        hu_threshold = config.hu_surface_threshold if config.modality == "ct" else None
        assembled = assemble_output(self.model_grid, result, hu_threshold)
        fit = fit_label_sequence([i.label for i in result.instances], [i.complete for i in result.instances],
                                 direction=self.direction, allow_t13=self.allow_t13, allow_l6=self.allow_l6)
        if fit.anchored:
            self.warn("the label head gave no usable labels; vertebrae are numbered upward from L5 (SPIDER convention)")
        ids = dict(zip([i.index for i in result.instances], fit.ids))
        labels, discs, canal = compose_labels(assembled, ids, image)
        records = instance_records(result, assembled.instance_map, ids, self.model_grid)
        for r in records:
            if r.in_output and r.volume_ml == 0:
                self.warn(f"vertebra {r.name} vanished when mapped onto the input grid")
        if not any(r.in_output for r in records):
            self.warn(f"all {len(records)} vertebrae found are incomplete; none is in the output "
                      "(keep_incomplete=True / --keep-incomplete keeps them, flagged)")
        self.timings["assemble"] = time.perf_counter() - t0
        self.timings["total"] = time.perf_counter() - self.started
        self.progress.done()
        self._result = IISResult(
            labels=labels, instances=records, steps=result.log, timings=dict(self.timings), label_fit=fit,
            config=config, device=self.device, stop_reason=result.stop_reason, network_passes=result.steps,
            warnings=self.warnings, discs=discs, canal=canal,
        )
        return self._result


def segment_vertebrae(image: Image, model, device: str = "auto", direction: Optional[str] = None,
                      keep_incomplete: bool = False, start_point_lps=None, progress: Optional[Progress] = None,
                      steps_callback: Optional[Callable[[TraversalStep], None]] = None, **options) -> IISResult:
    """Segment and label the vertebrae of ``image`` with an IIS model.

    ``model``: weights file path, an ``IISNet`` or ``(model, IISConfig)``. ``device``: auto | cpu
    | cuda (auto: CUDA when available; a GPU out-of-memory error moves the run to the CPU).
    ``direction``: up | down, default the model's own (a different one is refused: a network
    only knows the direction it was trained for). ``start_point_lps``: a point on the first
    vertebra in traversal direction (e.g. ``checks.start_point_from_centerline``), skips the
    search; ``"centerline"`` takes it from the classical pipeline's centerline (CT only; a few
    seconds to half a minute; worth it when the field of view reaches far beyond the spine --
    if the classical pipeline cannot give one, the traversal searches as usual).
    ``steps_callback(step)`` sees every traversal step. Keyword ``options`` (see :class:`IISRun`):
    ``check_modality=False`` accepts an image whose intensities look like the other modality;
    ``allow_t13`` / ``allow_l6`` consider transitional vertebrae in the label sequence;
    ``precision`` auto | fp32 | bf16 | fp16; ``threads`` (default: all available cores);
    ``expected_sha256`` of the weights file; ``predict`` replaces the network (tests, oracles);
    ``traversal_options`` overrides :class:`TraversalOptions` fields.

    Raises ``InputError`` (bad input / model), ``NoSpineFoundError`` (no vertebra found),
    ``Cancelled`` (through ``progress``).
    """
    run = IISRun(image, model, device, direction, keep_incomplete, start_point_lps, progress, **options)
    for step in run.steps():
        if steps_callback is not None:
            steps_callback(step)
    return run.finish()
