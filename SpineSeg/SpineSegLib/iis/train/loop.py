"""Training the IIS network (Lessmann et al. 2019, section 3.6): ``spineseg train RECIPE``.

One iteration draws ``batch_size`` patches (``sampling``), augments them (``augment``), computes
the surface weights (``losses.surface_weights``, scipy EDT on the CPU) and takes one Adam step
(lr 1e-3, betas (0.99, 0.999)) on ``losses.iis_loss`` with the false-positive weight lambda(n)
rising from ``lambda_min`` to 1 over the run.

Determinism: patch ``b`` of iteration ``n`` is drawn from ``numpy.random.default_rng([seed, n, b])``
(``examples``) -- a function of the seed alone, whatever the number of data workers and wherever a
run was resumed. A resumed run (``resume=True``) restores weights, optimizer, iteration, torch RNG
and the logs from ``last.pt`` and continues exactly as the uninterrupted run would have (tested on
CPU). Ctrl-C and SIGTERM stop after the current iteration and save ``last.pt`` (Ctrl-C then raises
``core.errors.Interrupted``: ``spineseg train`` ends with status 130); a second Ctrl-C stops at once and
keeps the last saved state.

Speed: on CUDA, bf16 autocast (fp16 + gradient scaling where bf16 is missing) and channels-last
memory; on the CPU, bf16 autocast (2.5-3.5x faster than fp32 on this project's 2-core AMX machine
for 16-24-channel models, measured with ``Testing/benchmarks/iis_training_speed.py``) and the default
memory layout (channels-last is slower there).

The run folder (``[output] dir``, ``run_folder``) holds::

    config.toml            the recipe as run (resolved paths)
    last.pt                resume state: weights, optimizer, iteration, RNG, logs
    snapshots/iter_*.pt    weights every `checkpoint_every` iterations (the last `average_last` kept)
    best.pt                weights with the best validation patch Dice
    model.pt               the final weights (see `final`), self-describing (checkpoint.load_model)
    train_log.csv          per `log_every` iterations: losses, lambda, training-patch Dice, s/iteration
    validation_log.csv     per `validate_every` iterations: validation loss, patch Dice, label error ...
    summary.json           cases, timings, the final validation figures
    curves.png             training curves

Label head: its output spans 0-24 (vertebra positions) while Adam moves every weight by about
``lr`` per step, so with lr 1e-3 the label output needs tens of thousands of steps to move across
its range (the paper trained 100k iterations). Two training-side measures let small runs learn it:
the output layer starts at the mean label of the training vertebrae (bias) and learns with
``lr * label_lr_scale`` (default 10); the loss keeps a gradient below the ReLU
(``losses.label_error``).

Final weights and validation: ``run_folder.final_model`` and ``validation``.

Console use::

    from SpineSegLib.iis.train.recipe import load_train_config
    from SpineSegLib.iis.train.loop import train
    summary = train(load_train_config("mr-vertebral-bodies-small"))
    summary["final_validation"]["dice"]
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from SpineSegLib.core.errors import InputError, Interrupted
from SpineSegLib.core.files import write_text_atomic
from SpineSegLib.iis.model.checkpoint import read_checkpoint, save_checkpoint
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.model.device import resolve_device
from SpineSegLib.iis.model.network import IISNet
from SpineSegLib.iis.train.cases import gather_cases, prepare_cases, split_cases
from SpineSegLib.iis.train.curves import plot_curves
from SpineSegLib.iis.train.examples import ExampleStream, batches, to_device
from SpineSegLib.iis.train.losses import dice_counts, fp_weight, iis_loss
from SpineSegLib.iis.train.recipe import TrainConfig, resolve_source_roots, to_toml
from SpineSegLib.iis.train.run_folder import (
    check_run_folder, final_model, keep_snapshot, load_resume_state, new_train_state, run_metadata, save_resume_state,
    write_json,
)
from SpineSegLib.iis.train.sampling import regression_target
from SpineSegLib.iis.train.validation import evaluate_patches, validation_batches


def resolve_amp(amp: str, device: torch.device):
    """``(autocast dtype or None, use a gradient scaler)``."""
    if amp == "off":
        return None, False
    if amp == "fp16":
        return torch.float16, device.type == "cuda"
    if amp == "bf16":
        return torch.bfloat16, False
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, True
    return torch.bfloat16, False


class LogWindow:
    """The training figures of the iterations since the last ``train_log.csv`` row."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.terms = {"loss": [], "seg": [], "label": [], "completeness": []}
        self.tp = self.pr = self.data = 0.0      # Dice counts; seconds spent waiting for data
        self.t0 = time.time()

    def add(self, terms: dict, loss: float, segmentation, targets, has_target) -> None:
        for k in ("seg", "label", "completeness"):
            self.terms[k].append(float(terms[k]))
        self.terms["loss"].append(loss)
        tp, p, r = dice_counts(segmentation.detach(), targets)
        self.tp += float(np.sum(tp[has_target]))
        self.pr += float(np.sum(p[has_target]) + np.sum(r[has_target]))

    def row(self, iteration: int, lam: float) -> tuple[dict, float]:
        """The log row of this window and its seconds; the window starts afresh."""
        n = len(self.terms["loss"])
        dt = time.time() - self.t0
        row = {"iteration": iteration, **{k: float(np.mean(v)) for k, v in self.terms.items()},
               "lambda": lam, "train_dice": 2 * self.tp / self.pr if self.pr else float("nan"),
               "sec_per_iter": dt / n, "data_sec": self.data / n}
        self._reset()
        return row, dt


class StopSignals:
    """While the block runs (main thread only), SIGTERM and a first Ctrl-C (SIGINT) are only recorded in
    :attr:`received` (SIGINT wins), for the loop to stop after the current iteration; a second Ctrl-C
    raises :class:`KeyboardInterrupt` at once."""

    NOTICE = b"Ctrl-C: stopping after this iteration with a resumable state (Ctrl-C again to stop at once)\n"

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            if self.received == signal.SIGINT:
                raise KeyboardInterrupt
            try:
                os.write(2, self.NOTICE)   # not print: a signal handler may interrupt a print to the same stream
            except OSError:
                pass
        if self.received != signal.SIGINT:
            self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Trainer:
    """One run of :func:`train`: built from the recipe (data, model, optimizer), then :meth:`start`
    (fresh or resumed), :meth:`run` (the iterations) and :meth:`finish` (final weights, summary)."""

    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg, self.tc, self.log = cfg, cfg.training, log
        self.out_dir = Path(cfg.output_dir)
        torch.set_num_threads(max(1, int(self.tc.threads)))
        self.device = resolve_device(self.tc.device)
        self.amp_dtype, use_scaler = resolve_amp(self.tc.amp, self.device)
        self.channels_last = self.tc.channels_last == "on" or (self.tc.channels_last == "auto"
                                                               and self.device.type == "cuda")
        self.vox = float(np.prod(cfg.model.voxel_size_mm))
        self._load_data()
        self._build_model(use_scaler)
        self.state = new_train_state()
        self.meta = run_metadata(cfg, self.split, self.train_prepared)
        self.progress = self.last_val = None
        self.saved_iteration = None     # the iteration of the last.pt this run wrote

    def _load_data(self) -> None:
        cfg, log = self.cfg, self.log
        log(f"reading {len(cfg.data.sources)} dataset(s)")
        resolve_source_roots(cfg)
        cases = gather_cases(cfg)
        self.split = split_cases(cases, cfg)
        log(f"  {len(cases)} cases: {len(self.split['train'])} training, {len(self.split['validation'])} validation, "
            f"{len(self.split['test'])} test")
        log("preparing the training cases" + (f" (cache {cfg.data.cache})" if cfg.data.cache else ""))
        self.train_prepared = prepare_cases(self.split["train"], cfg.model, cfg.data.cache, log)
        if not self.train_prepared:
            raise InputError("none of the training cases has a labelled vertebra on the model grid")
        self.stream = ExampleStream(self.train_prepared, cfg, augment=True)
        self.val_batches = validation_batches(self.split["validation"], cfg, log)

    def _build_model(self, use_scaler: bool) -> None:
        tc = self.tc
        torch.manual_seed(tc.seed)
        model = IISNet(self.cfg.model).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        label_out = list(model.label_head.dense.parameters())
        others = [p for p in model.parameters() if all(p is not q for q in label_out)]
        self.optimizer = torch.optim.Adam([{"params": others}, {"params": label_out, "lr": tc.lr * tc.label_lr_scale}],
                                          lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type) if use_scaler else None
        # the label head's output before its ReLU, for the loss's gradient below zero (losses.label_error)
        self.label_pre = {}
        model.label_head.register_forward_hook(lambda module, args, output: self.label_pre.__setitem__("value", output))
        self.model = model

    def start(self, resume: bool, init_weights=None) -> None:
        """Initialise (label bias, ``init_weights``) or restore ``last.pt``; write ``config.toml``."""
        if resume:
            self.state = load_resume_state(self.out_dir, self.cfg.model, self.model, self.optimizer, self.scaler)
            self.saved_iteration = self.state["iteration"]
            self.log(f"resuming at iteration {self.state['iteration']}")
        else:
            self._initialise(init_weights)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "snapshots").mkdir(exist_ok=True)
        write_text_atomic(self.out_dir / "config.toml", to_toml(self.cfg))
        self.log(f"model: {self.model.parameter_count():,} parameters, patch {list(self.cfg.model.patch_size)} at "
                 f"{list(self.cfg.model.voxel_size_mm)} mm; device {self.device}, autocast {self.amp_dtype}, "
                 f"threads {torch.get_num_threads()}")

    def _initialise(self, init_weights) -> None:
        # start the label head at the mean label of the training vertebrae (it would need thousands
        # of Adam steps of ~lr to climb from 0 to the lumbar 20-24)
        targets = [regression_target(v.key) for p in self.train_prepared for v in p.vertebrae if v.identified]
        if targets:
            with torch.no_grad():
                self.model.label_head.dense.bias.fill_(float(np.mean(targets)))
        if init_weights is not None:
            ck = read_checkpoint(init_weights)
            if IISConfig.from_dict(ck["config"]) != self.cfg.model:
                raise InputError(f"{init_weights}: its model settings differ from the recipe's [model]; "
                                 "fine-tuning needs the same architecture, patch and voxel size")
            self.model.load_state_dict(ck["state_dict"])
            self.log(f"starting from the weights of {Path(init_weights).name}")

    def weights_meta(self, iteration: int, extra: dict | None = None) -> dict:
        return {**self.meta, "iteration": iteration, **(extra or {})}

    def save_resume_state(self) -> None:
        save_resume_state(self.out_dir, self.model, self.weights_meta(self.state["iteration"]), self.optimizer,
                          self.scaler, self.state)
        self.saved_iteration = self.state["iteration"]

    def step(self, batch: dict, lam: float, iteration: int):
        """One Adam step on ``batch``; returns ``(loss terms, network output, batch on the device, loss)``."""
        tc = self.tc
        b = to_device(batch, self.device, self.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.model(b["inputs"])
        terms = iis_loss(out, b, lam, self.vox, tc.label_weight, tc.completeness_weight, self.label_pre.pop("value", None))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(terms["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms["loss"].backward()
            self.optimizer.step()
        loss = float(terms["loss"].detach())
        if not math.isfinite(loss):
            raise RuntimeError(f"the loss became {loss} at iteration {iteration}; try amp = 'off' or a smaller lr")
        return terms, out, b, loss

    def validate(self, iteration: int) -> dict | None:
        """Validation figures now (logged; ``best.pt`` when the patch Dice is the best so far)."""
        if not self.val_batches:
            return None
        m = evaluate_patches(self.model, self.val_batches, self.cfg, self.device, self.amp_dtype, self.channels_last)
        self.state["val_rows"].append({"iteration": iteration, **m})
        best = self.state["best"]
        if not math.isnan(m["dice"]) and (best is None or m["dice"] >= best["dice"]):
            self.state["best"] = {"iteration": iteration, "dice": m["dice"]}
            save_checkpoint(self.out_dir / "best.pt", self.model, self.weights_meta(iteration, {"validation": m}))
        return m

    def snapshot(self, iteration: int) -> None:
        snap = self.out_dir / "snapshots" / f"iter_{iteration:07d}.pt"
        save_checkpoint(snap, self.model, self.weights_meta(iteration))
        keep_snapshot(self.state, snap.parent, snap.name, self.tc.average_last)
        self.save_resume_state()

    def run(self, until: int | None = None, show_progress: bool = True) -> None:
        """Iterate up to ``until`` (or the end). SIGTERM stops after the current iteration with a resumable
        state; so does Ctrl-C, which then raises :class:`Interrupted` (a second Ctrl-C stops at once and
        keeps the last saved state: an iteration cut half-way is never saved)."""
        tc, state = self.tc, self.state
        stop = min(tc.iterations, until) if until else tc.iterations
        self.progress = _progress_bar(stop, state["iteration"]) if show_progress else None
        self.last_val = state["val_rows"][-1] if state["val_rows"] else None
        window = LogWindow()
        self.model.train()
        t_data = time.time()
        with StopSignals() as signals:
            try:
                for it, batch in batches(self.stream, tc.seed, state["iteration"], stop, tc.batch_size, tc.workers):
                    window.data += time.time() - t_data
                    lam = fp_weight(it, tc.iterations, tc.lambda_min)
                    terms, out, b, loss = self.step(batch, lam, it)
                    window.add(terms, loss, out.segmentation, b["targets"], batch["has_target"])
                    state["iteration"] = it
                    self._after_step(it, stop, lam, window)
                    if signals.received:
                        break
                    t_data = time.time()
            except KeyboardInterrupt:
                self._close_progress()
                kept = (f"the state saved at iteration {self.saved_iteration} is kept; continue with --resume"
                        if (self.out_dir / "last.pt").exists() else "no state was saved yet")
                raise Interrupted(f"stopped at once; {kept}") from None
            self._close_progress()
            self.save_resume_state()
        if signals.received == signal.SIGINT:
            raise Interrupted(f"state saved at iteration {state['iteration']} in {self.out_dir}; "
                              "continue with --resume")
        if signals.received:
            self.log(f"terminated: state saved at iteration {state['iteration']}; continue with --resume")

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def _after_step(self, it: int, stop: int, lam: float, window: LogWindow) -> None:
        """Log row, validation, snapshot and progress, each when its iteration comes."""
        tc, state = self.tc, self.state
        if it % tc.log_every == 0 or it == stop:
            row, seconds = window.row(it, lam)
            state["elapsed_s"] += seconds
            state["train_rows"].append(row)
            if self.progress is not None:
                post = {"loss": f"{row['loss']:.3g}", "dice": f"{row['train_dice']:.3f}"}
                if self.last_val:
                    post["val_dice"] = f"{self.last_val['dice']:.3f}"
                self.progress.set_postfix(post, refresh=False)
        if it % tc.validate_every == 0 or it == tc.iterations:
            self.last_val = self.validate(it) or self.last_val
            if self.progress is None and self.last_val:
                self.log(f"iteration {it}: validation patch Dice {self.last_val['dice']:.3f}, "
                         f"label MAE {self.last_val['label_mae']:.2f}")
        if it % tc.checkpoint_every == 0 or it == tc.iterations:
            self.snapshot(it)
        if self.progress is not None:
            self.progress.update(1)
        elif it % (tc.log_every * 10) == 0:
            self.log(f"iteration {it}/{stop}: loss {state['train_rows'][-1]['loss']:.3g}")

    def finish(self, t_start: float) -> dict:
        """The run summary (``summary.json``, ``curves.png``); ``model.pt`` once the run is complete."""
        state, n_max = self.state, self.tc.iterations
        summary = {
            "iteration": state["iteration"], "iterations": n_max, "finished": state["iteration"] >= n_max,
            "device": str(self.device), "autocast": str(self.amp_dtype), "threads": torch.get_num_threads(),
            "parameters": self.model.parameter_count(),
            "train_cases": self.meta["train_cases"], "validation_cases": self.meta["validation_cases"],
            "test_cases": self.meta["test_cases"],
            "training_seconds": state["elapsed_s"],
            "sec_per_iter": (float(np.mean([r["sec_per_iter"] for r in state["train_rows"][-20:]]))
                             if state["train_rows"] else float("nan")),
            "best": state["best"],
        }
        if state["iteration"] >= n_max:
            summary.update(self._write_final_weights())
        summary["wall_seconds"] = time.time() - t_start
        write_json(self.out_dir / "summary.json", summary)
        plot_curves(self.out_dir)
        return summary

    def _write_final_weights(self) -> dict:
        final, how = final_model(self.cfg, self.model, self.state, self.out_dir, self.device, self.channels_last)
        result = {"final_weights": how}
        if self.val_batches:
            m = evaluate_patches(final, self.val_batches, self.cfg, self.device, self.amp_dtype, self.channels_last)
            result["final_validation"] = m
            self.log(f"final weights ({how}): validation patch Dice {m['dice']:.3f}, label MAE {m['label_mae']:.2f}, "
                     f"completeness accuracy {m['completeness_accuracy']:.2f}, FP on empty patches "
                     f"{m['empty_fp_mm3']:.0f} mm^3")
        save_checkpoint(self.out_dir / "model.pt", final.to(memory_format=torch.contiguous_format),
                        self.weights_meta(self.state["iteration"],
                                          {"final_weights": how, "validation": result.get("final_validation")}))
        self.log(f"weights written to {self.out_dir / 'model.pt'}")
        return result


def _progress_bar(total: int, initial: int):
    """A tqdm bar over the iterations, or None where tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, mininterval=1.0)


def train(cfg: TrainConfig, resume: bool = False, until: int | None = None, log=print,
          show_progress: bool = True, init_weights: str | Path | None = None) -> dict:
    """Train as ``cfg`` says; returns the run summary (also written to ``summary.json``).

    ``until``: stop (with a resumable ``last.pt``) after this iteration, e.g. to split a long run.
    ``init_weights``: start from these weights (fine-tuning) instead of a random initialisation;
    their model settings must equal ``cfg.model``. A fresh optimizer either way.

    Console use::

        from SpineSegLib.iis.train.recipe import load_train_config
        from SpineSegLib.iis.train.loop import train
        summary = train(load_train_config("mr-vertebral-bodies-small"))
    """
    t_start = time.time()
    check_run_folder(cfg, resume)
    trainer = Trainer(cfg, log)
    trainer.start(resume, init_weights)
    trainer.run(until, show_progress)
    return trainer.finish(t_start)
