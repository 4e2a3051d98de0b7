"""Following the spine with the IIS network, one patch at a time (Lessmann et al. 2019, section 3.3).

The traversal works on the model grid (``preprocess.to_model_grid(...).image``: canonical LPS
``[z, y, x]``, z superior) and talks to the network only through a callable::

    predict(image_patch, memory_patch) -> (probabilities, label, completeness)

``image_patch`` is float32 ``[Z, Y, X]`` (``pad_value`` outside the volume), ``memory_patch`` is
float32 ``[C, Z, Y, X]`` with one binary channel per memory (vertebrae; SPIDER: vertebrae, discs);
``probabilities`` is ``[Z, Y, X]`` or ``[K, Z, Y, X]`` in 0-1 (channel 0 the next vertebra, SPIDER:
1 its disc, 2 the spinal canal), ``label`` the regressed anatomical label, ``completeness`` the
probability that the vertebra lies completely in the scan. Tests pass an oracle, real runs a
``predictor.TorchPredictor``.

What the paper fixes: half-patch sliding steps until a fragment of at least v_min appears; the
next patch is centred on the fragment's bounding-box centre; converged when the centre moves by
at most delta_max = 2 voxels on every axis; at most 10 moves, then the mean of the last two
positions; the vertebra goes to the memory, and to the output only when classified complete; the
same patch is analysed again for the next vertebra; sliding when none is seen; stop at the end.

What this module chooses where the paper is silent (and why):

* **Search order in 3-D** (``search_order.py``): half-patch steps on every axis, levels along z in
  traversal direction, inside a level the columns nearest the middle of the axial plane (or the
  start point) first -- the spine runs near the middle of the body.
* **Start point** (``start_lps`` or ``start_voxel``): the first patch is centred there; if nothing
  is seen there, the search proceeds from the start point's level onward, columns ordered around
  it. Vertebrae beyond the start point against the traversal direction are not searched: give the
  first vertebra in traversal direction (e.g. the lowest centerline point for ``up``).
* **Thresholds** (after the public reference code, expressed in mm^3): a search hit needs
  ``min_fragment_mm3`` (v_min, config) of new prediction and, while no vertebra has been found,
  a regressed label >= 0.75 (the label head says "vertebral bone": 0 = none, 1 = C1). The
  reference asks 1.5 on its own label scale; on ours (C1 = 1) that would make a downward
  traversal unable to start at C1. Once a vertebra is known, the next
  fragment (and a followed fragment) needs ``follow_min_mm3`` (default v_min / 2). Connected
  pieces smaller than ``min_component_mm3`` (default v_min / 2, the reference's 500 voxels at
  1 mm) are dropped from every prediction before anything is measured. A vertebra whose regressed
  label is < 0.75 at acceptance is taken as a false positive: it is discarded and the traversal
  ends (reference behaviour; ``accept_min_label=None`` turns it off). Both label gates are off for
  the SPIDER variant, whose label head is not used.
* **New prediction** means probability >= 0.5, inside the volume, and not yet in the memory.
* **Final mask** of a converged vertebra is the prediction of the evaluation that converged (its
  fragment's centre lies within delta_max of the patch centre, so moving once more would not change
  anything) -- no extra network pass; after 10 moves the patch is evaluated once more at the mean
  of the last two positions and that prediction is final.
* **Sliding after a vertebra** (no next fragment in the re-analysed patch, or a followed fragment
  vanished): levels beyond the last vertebra in traversal direction, each level only the columns
  within ``fallback_columns`` half-patch steps of the last vertebra's column (default 1, a 3 x 3
  neighbourhood; ``search_order.py`` says why).
* **A followed fragment that vanishes** (less than ``follow_min_mm3`` at the new position, e.g. a
  false positive the network drops once it sees it whole) sends the traversal back to sliding
  where the sliding was, or -- after a new vertebra -- onward from that vertebra.
* **Stop**: no search position left (end of the volume), ``max_instances`` (25) vertebrae in the
  memory (complete or not), a rejected false positive, or ``max_steps`` network passes.
* **SPIDER variant** (two memory channels): at acceptance, the largest new piece of the disc
  channel becomes this vertebra's disc (disc memory), and the canal channel of that evaluation
  is added to the canal mask (the canal is stitched from all accepted patches).

The pieces: ``traversal_options.py`` (the knobs), ``patches.py`` (patch boxes), ``search_order.py``
(search positions), ``traversal_records.py`` (what the traversal produces); this module is the step
generator.

Console use::

    from SpineSegLib.iis.infer.traversal import IISTraversal
    from SpineSegLib.iis.infer.traversal_options import TraversalOptions
    trav = IISTraversal(grid.image, predict, TraversalOptions.from_config(config),
                        patch_size=config.patch_size, pad_value=config.pad_value,
                        memory_channels=config.memory_channels)
    for step in trav.steps():              # one step per network pass (+ a final "done" step)
        print(step.index, step.phase, step.event, step.box.centre_lps, step.fragment_mm3)
    result = trav.result                   # or: result = IISTraversal(...).run()
    [(i.index, i.label, i.complete) for i in result.instances]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
from scipy import ndimage

from SpineSegLib.core.image import Image
from SpineSegLib.iis.infer.patches import PatchBox, bbox_slices, extract_patch, make_box, round_half_up
from SpineSegLib.iis.infer.search_order import SearchOrder, start_voxel
from SpineSegLib.iis.infer.traversal_options import TraversalOptions
from SpineSegLib.iis.infer.traversal_records import TraversalResult, TraversalStep, TraversedInstance

_FULL = np.ones((3, 3, 3), dtype=bool)
_LOOKING = ("start", "search", "next")     # actions that look for a new fragment; move/average follow one


# -- internal: one evaluation, a fragment being followed, the next pass ----------------------------
@dataclass
class _Evaluation:
    box: PatchBox
    probability: np.ndarray      # [K, Z, Y, X] float32
    label: float
    completeness: float
    fragment: np.ndarray         # bool [Z, Y, X]
    volume_mm3: float


@dataclass
class _Follow:
    position: tuple
    evaluation: _Evaluation
    moves: int = 0
    previous: Optional[tuple] = None
    evaluations: int = 1
    averaged: bool = False
    found_by: str = "search"
    event: str = ""              # what the pass that saw it was: start-hit, search-hit, next-hit, move, averaged


@dataclass
class _Action:
    kind: str                    # start, search, next (look for a fragment) or move, average (follow one)
    position: tuple
    follow: Optional[_Follow] = None


class IISTraversal:
    """The traversal as a step generator (see the module docstring).

    ``image``: the normalised model-grid image (``ModelGrid.image``); ``patch_size`` and
    ``pad_value`` come from the model's config; ``memory_channels`` is 2 for the SPIDER variant.
    """

    def __init__(self, image: Image, predict: Callable, options: Optional[TraversalOptions] = None, *,
                 patch_size=(128, 128, 128), pad_value: float = -1.0, memory_channels: int = 1):
        self.image = image
        self.array = np.asarray(image.array, dtype=np.float32)
        self.predict = predict
        self.options = o = options or TraversalOptions()
        self.patch_size = tuple(int(p) for p in patch_size)
        self.pad_value = float(pad_value)
        self.memory_channels = int(memory_channels)
        self.voxel_mm3 = float(np.prod(image.spacing))
        self.shape = self.array.shape
        self.memory = np.zeros(self.shape, dtype=np.int16)
        self.disc_memory = np.zeros(self.shape, dtype=np.int16) if self.memory_channels > 1 else None
        self.canal = np.zeros(self.shape, dtype=bool) if self.memory_channels > 1 else None
        self.instances: list[TraversedInstance] = []
        self.result: Optional[TraversalResult] = None
        self._log: list[dict] = []
        self._steps = 0
        self._progress = 0.0
        step = o.search_step or tuple(max(1, p // 2) for p in self.patch_size)
        self.step = tuple(int(s) for s in step)
        self._up = o.direction == "up"
        self._start = start_voxel(image, o.start_voxel, o.start_lps)
        self.search_order = SearchOrder(self.shape, image.spacing, self.patch_size, self.step, o.direction,
                                        self._start, o.fallback_columns)
        self._search: Iterator[tuple] = iter(())
        self._search_after = 0       # how many vertebrae were known when ``_search`` was made

    # -- one network pass ---------------------------------------------------------------------
    def _evaluate(self, position) -> _Evaluation:
        box = make_box(self.image, position, self.patch_size)
        image_patch = extract_patch(self.array, box, self.pad_value)
        memories = [self.memory] + ([self.disc_memory] if self.disc_memory is not None else [])
        memory_patch = np.stack([extract_patch(m, box, 0) > 0 for m in memories]).astype(np.float32)
        prob, label, completeness = self.predict(image_patch, memory_patch)
        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim == 3:
            prob = prob[None]
        if prob.shape[1:] != self.patch_size:
            raise ValueError(f"the network returned maps of shape {prob.shape[1:]} for a patch of {self.patch_size}")
        self._steps += 1
        valid = np.zeros(self.patch_size, dtype=bool)
        valid[box.clipped(self.shape)[1]] = True
        fragment = (prob[0] >= self.options.probability_threshold) & (memory_patch[0] == 0) & valid
        fragment = self._drop_small_pieces(fragment)
        return _Evaluation(box, prob, float(label), float(completeness), fragment,
                           float(fragment.sum()) * self.voxel_mm3)

    def _drop_small_pieces(self, mask: np.ndarray, keep_largest: bool = False) -> np.ndarray:
        if not mask.any():
            return mask
        labels, n = ndimage.label(mask, structure=_FULL)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        if keep_largest:
            keep = np.zeros_like(sizes, dtype=bool)
            keep[int(np.argmax(sizes))] = sizes.max() * self.voxel_mm3 >= self.options.component_mm3
        else:
            keep = sizes * self.voxel_mm3 >= self.options.component_mm3
            keep[0] = False
        return keep[labels]

    def _bbox_centre(self, ev: _Evaluation) -> tuple:
        idx = np.nonzero(ev.fragment)
        lo = np.array([i.min() for i in idx]) + np.asarray(ev.box.start_voxel)
        hi = np.array([i.max() for i in idx]) + np.asarray(ev.box.start_voxel)
        return round_half_up((lo + hi) / 2.0)

    def _advance_progress(self, box: PatchBox) -> float:
        n = self.shape[0]
        if self._up:
            reached = (box.start_voxel[0] + box.size_voxels[0]) / n
        else:
            reached = (n - box.start_voxel[0]) / n
        self._progress = max(self._progress, min(1.0, max(0.0, reached)))
        return self._progress

    def _detected(self, ev: _Evaluation) -> bool:
        o = self.options
        if not self.instances:
            if ev.volume_mm3 < o.min_fragment_mm3:
                return False
            return o.start_min_label is None or ev.label >= o.start_min_label
        return ev.volume_mm3 >= o.follow_mm3

    # -- accepting a vertebra -----------------------------------------------------------------
    def _accept(self, follow: _Follow) -> TraversedInstance:
        ev = follow.evaluation
        o = self.options
        grid_sl, patch_sl = ev.box.clipped(self.shape)
        index = len(self.instances) + 1
        mask_full = ev.fragment[patch_sl]
        crop = bbox_slices(mask_full, margin=2)
        mask = mask_full[crop]
        near = ndimage.binary_dilation(mask, structure=_FULL)
        prob = np.where(near, ev.probability[0][patch_sl][crop], 0.0).astype(np.float32)
        offset = tuple(g.start + c.start for g, c in zip(grid_sl, crop))
        region = tuple(slice(o_, o_ + n) for o_, n in zip(offset, mask.shape))
        self.memory[region][mask] = index
        complete = ev.completeness >= o.completeness_threshold
        inst = TraversedInstance(
            index=index, centre_voxel=tuple(follow.position), offset=offset, mask=mask, probability=prob,
            label=ev.label, completeness=ev.completeness, complete=bool(complete),
            in_output=bool(complete or o.keep_incomplete), moves=follow.moves, averaged=follow.averaged,
            evaluations=follow.evaluations, volume_mm3=float(mask.sum()) * self.voxel_mm3, box=ev.box,
        )
        if self.disc_memory is not None and ev.probability.shape[0] > 1:
            self._accept_disc_and_canal(inst, ev)
        self.instances.append(inst)
        return inst

    def _accept_disc_and_canal(self, inst: TraversedInstance, ev: _Evaluation) -> None:
        """SPIDER: the largest new piece of the disc channel becomes ``inst``'s disc; the canal channel
        is added to the canal mask."""
        o = self.options
        grid_sl, patch_sl = ev.box.clipped(self.shape)
        disc_valid = np.zeros(self.patch_size, dtype=bool)
        disc_valid[patch_sl] = True
        disc_mem = extract_patch(self.disc_memory, ev.box, 0) > 0
        disc = (ev.probability[1] >= o.probability_threshold) & disc_valid & ~disc_mem & ~ev.fragment
        disc = self._drop_small_pieces(disc, keep_largest=True)[patch_sl]
        if disc.any():
            dcrop = bbox_slices(disc, margin=2)
            dmask = disc[dcrop]
            dnear = ndimage.binary_dilation(dmask, structure=_FULL)
            inst.disc_mask = dmask
            inst.disc_probability = np.where(dnear, ev.probability[1][patch_sl][dcrop], 0.0).astype(np.float32)
            inst.disc_offset = tuple(g.start + c.start for g, c in zip(grid_sl, dcrop))
            self.disc_memory[inst.disc_slices][dmask] = inst.index
        if ev.probability.shape[0] > 2:
            self.canal[grid_sl] |= ev.probability[2][patch_sl] >= o.probability_threshold

    # -- the generator --------------------------------------------------------------------------
    def _step(self, phase, event, ev: Optional[_Evaluation], moves=0, accepted=None, message="",
              found_by=None) -> TraversalStep:
        step = TraversalStep(
            index=len(self._log) + 1, phase=phase, event=event,
            box=None if ev is None else ev.box,
            fragment=None if ev is None else ev.fragment,
            fragment_mm3=0.0 if ev is None else ev.volume_mm3,
            label=None if ev is None else ev.label,
            completeness=None if ev is None else ev.completeness,
            instance_count=len(self.instances),
            output_count=sum(1 for i in self.instances if i.in_output),
            moves=moves, memory=self.memory,
            progress=1.0 if phase == "done" else (self._advance_progress(ev.box) if ev is not None else self._progress),
            accepted=accepted, message=message, found_by=found_by,
        )
        self._log.append(step.to_dict())
        return step

    def steps(self) -> Iterator[TraversalStep]:
        """Run the traversal, yielding a :class:`TraversalStep` after every network pass."""
        o = self.options
        self._search, self._search_after = self.search_order.initial(), 0
        action = _Action("start", self._start) if self._start is not None else None
        stop_reason = None
        while stop_reason is None:
            if self._steps >= o.max_steps:
                stop_reason = f"stopped after {o.max_steps} network passes"
                break
            if action is None:
                position = next(self._search, None)
                if position is None:
                    stop_reason = "end of the volume"
                    break
                action = _Action("search", position)
            ev = self._evaluate(action.position)
            step, follow = self._look(action, ev) if action.kind in _LOOKING else self._follow_on(action, ev)
            action = None
            if follow is not None:
                step, action, stop_reason = self._decide(follow)
            yield step
        yield self._step("done", stop_reason, None, message=stop_reason)
        self.result = TraversalResult(
            instances=list(self.instances), memory=self.memory, disc_memory=self.disc_memory, canal=self.canal,
            steps=self._steps, stop_reason=stop_reason, log=list(self._log), grid=self.image,
        )

    def _look(self, action: _Action, ev: _Evaluation) -> tuple[Optional[TraversalStep], Optional[_Follow]]:
        """A start / search / next pass: a hit is followed from here on; a miss is a step of its own
        (after a missed next vertebra, the sliding goes on from the last vertebra)."""
        if self._detected(ev):
            return None, _Follow(tuple(action.position), ev, found_by=action.kind, event=f"{action.kind}-hit")
        if action.kind != "next":
            return self._step("searching", f"{action.kind}-miss", ev), None
        step = self._step("searching", "next-miss", ev, message="no next vertebra in the patch: sliding on")
        self._search, self._search_after = self.search_order.after(action.position), len(self.instances)
        return step, None

    def _follow_on(self, action: _Action, ev: _Evaluation) -> tuple[Optional[TraversalStep], Optional[_Follow]]:
        """A move / average pass: the followed fragment goes on, or it vanished (a step of its own)."""
        context = action.follow
        if ev.volume_mm3 < self.options.follow_mm3:
            step = self._step("searching", "lost", ev, context.moves,
                              message="the followed fragment vanished: searching again")
            # resume sliding where it was; after a new vertebra, slide on from that one
            if self.instances and self._search_after != len(self.instances):
                self._search = self.search_order.after(self.instances[-1].centre_voxel)
                self._search_after = len(self.instances)
            return step, None
        averaged = action.kind == "average"
        return None, _Follow(tuple(action.position), ev, moves=context.moves + (0 if averaged else 1),
                             previous=context.position, evaluations=context.evaluations + 1, averaged=averaged,
                             found_by=context.found_by, event="averaged" if averaged else "move")

    def _decide(self, follow: _Follow) -> tuple[TraversalStep, Optional[_Action], Optional[str]]:
        """``(step, next action, stop reason)`` for a seen fragment: move on to its centre, average
        after too many moves, or -- converged -- accept it."""
        o, ev = self.options, follow.evaluation
        centre = self._bbox_centre(ev)
        shift = max(abs(a - b) for a, b in zip(centre, follow.position))
        if follow.averaged or shift <= o.max_shift_voxels:
            return self._converge(follow)
        if follow.moves >= o.max_moves:
            previous = follow.previous if follow.previous is not None else follow.position
            action = _Action("average", round_half_up((np.asarray(follow.position) + np.asarray(previous)) / 2.0),
                             follow)
        else:
            action = _Action("move", centre, follow)
        step = self._step("following", follow.event, ev, follow.moves, found_by=follow.found_by,
                          message=f"fragment of {ev.volume_mm3 / 1000:.1f} ml, centre {shift} voxels away")
        return step, action, None

    def _converge(self, follow: _Follow) -> tuple[TraversalStep, Optional[_Action], Optional[str]]:
        """Accept the converged (or averaged) vertebra, unless its label says false positive; then look
        at the same patch again, with the updated memory, for the next one."""
        o, ev = self.options, follow.evaluation
        if o.accept_min_label is not None and ev.label < o.accept_min_label:
            step = self._step("converged", "rejected", ev, follow.moves, found_by=follow.found_by,
                              message=f"regressed label {ev.label:.2f} < {o.accept_min_label}: "
                                      "taken as a false positive; the traversal ends")
            return step, None, "false positive (regressed label too low)"
        inst = self._accept(follow)
        what = "complete" if inst.complete else ("incomplete, kept" if inst.in_output else "incomplete, memory only")
        step = self._step("converged", "averaged" if follow.averaged else "converged", ev, follow.moves,
                          accepted=inst, found_by=follow.found_by,
                          message=f"vertebra {inst.index} ({what}) after {follow.moves} moves, label "
                                  f"{ev.label:.2f}, completeness {ev.completeness:.2f}, {inst.volume_mm3 / 1000:.1f} ml")
        stop = f"{o.max_instances} vertebrae (the maximum)" if len(self.instances) >= o.max_instances else None
        return step, _Action("next", follow.position), stop

    def run(self) -> TraversalResult:
        """Run to the end; returns :class:`TraversalResult` (also kept as ``self.result``)."""
        for _ in self.steps():
            pass
        return self.result


def run_traversal(image: Image, predict: Callable, options: Optional[TraversalOptions] = None, **kw) -> TraversalResult:
    """Plain call: the whole traversal at once (see :class:`IISTraversal`)."""
    return IISTraversal(image, predict, options, **kw).run()
