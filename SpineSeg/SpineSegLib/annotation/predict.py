"""Predicting the cases of an annotation dataset with an IIS model or the model-free classical method
(``spineseg dataset predict [--method classical]``).

Only cases that need it are predicted: status ``new``, or ``predicted`` by another model (a
different SHA-256 -- an older or retrained weights file); ``redo=True`` (``--all``) also repeats
cases predicted by this very model. Corrected and reviewed cases are never touched, not even with
``redo``, and a case corrected while its prediction runs keeps the correction (the check is
repeated under the case's lock). Each prediction becomes a new label version recording the
model (path, SHA-256, weights-file format version, training iteration, description), the
settings and the per-vertebra table (completeness, regressed label, volume).

The classical method (:func:`~SpineSegLib.classical.vertebrae.label_vertebrae`, CT only: an MR case is refused
by name) is recorded in place of a model (:func:`classical_info`: ``method``, the parameters, and as ``sha256``
the SHA-256 of both), so the same rules decide what it predicts again: new cases, cases predicted by a model or
with other parameters, and with ``redo`` its own; each vertebra's naming evidence goes into the instances.

Vertebrae the model classifies as incompletely visible are kept by default (``keep_incomplete``):
an annotator deletes a partial vertebra faster than drawing a missed one, the version's
``instances`` flag them (``complete: false``), and CTSpine1K-style protocols label every visible
vertebra. ``keep_incomplete=False`` (``--drop-incomplete``) gives the model's plain output.

Cancelling (``Progress.cancel()``, Ctrl-C) stops between two network passes; the case being
predicted is simply not saved and every saved case stays consistent.

Console use::

    from SpineSegLib.annotation import open_dataset
    from SpineSegLib.annotation.predict import predict_dataset
    report = predict_dataset(open_dataset("ds"), "Resources/Models/iis-mr.pt", device="auto")
    report.predicted, report.skipped, report.failed
    report = predict_dataset(open_dataset("ct-ds"), method="classical")      # no model
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from SpineSegLib.core.errors import InputError, NoSpineFoundError
from SpineSegLib.core.image import read_image
from SpineSegLib.core.labels import name_of
from SpineSegLib.core.progress import Cancelled, Progress
from SpineSegLib.annotation.store import AnnotationDataset
from SpineSegLib.annotation.versions import ANNOTATED

_MODEL_INFO_CACHE: dict = {}
MODEL, CLASSICAL = "model", "classical"
METHODS = (MODEL, CLASSICAL)


def model_info(path) -> dict:
    """What a label version records about the model that made it (reads the weights file)."""
    from SpineSegLib.core.files import sha256_of
    from SpineSegLib.iis.model.checkpoint import read_checkpoint   # torch: imported on use

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model weights not found: {path}")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _MODEL_INFO_CACHE:
        return dict(_MODEL_INFO_CACHE[key])
    sha = sha256_of(path)
    data = read_checkpoint(path)
    meta = data.get("metadata") or {}
    config = data.get("config") or {}
    info = {
        "path": str(path.resolve()), "name": path.name, "sha256": sha,
        "format_version": int(data.get("format_version", 0)),
        "modality": config.get("modality"), "variant": config.get("variant"),
        "description": config.get("description", ""),
        "iteration": meta.get("iteration"),
        "parent": (meta.get("finetune") or {}).get("parent", {}).get("sha256"),
    }
    _MODEL_INFO_CACHE[key] = info
    return dict(info)


def classical_info(params=None) -> dict:
    """What a label version records about the classical method in place of a model: its parameters (a
    ClassicalParams, a dict of its fields or None: the defaults) and, as ``sha256``, the SHA-256 of method and
    parameters -- the identity the re-prediction rules compare."""
    import hashlib
    import json

    from SpineSegLib.classical.params import ClassicalParams
    from SpineSegLib.classical.vertebrae import METHOD_VERSION

    if not isinstance(params, ClassicalParams):
        try:
            params = ClassicalParams.from_dict(dict(params or {}))
        except (TypeError, ValueError) as exc:
            raise InputError(f"bad classical parameters: {exc}") from None
    values = json.loads(json.dumps(params.to_dict()))
    identity = json.dumps({"method": CLASSICAL, "version": METHOD_VERSION, "params": values}, sort_keys=True)
    return {"method": CLASSICAL, "name": CLASSICAL, "sha256": hashlib.sha256(identity.encode("utf-8")).hexdigest(),
            "params": values, "version": METHOD_VERSION, "modality": "ct",
            "description": "model-free vertebrae (SpineSegLib.classical.vertebrae.label_vertebrae)"}


def needs_prediction(entry, model_sha: str, redo: bool = False) -> Optional[str]:
    """Why case ``entry`` should be predicted by the model with ``model_sha`` (None: it should not)."""
    if entry.problem or entry.image_missing:
        return None
    if entry.status in ANNOTATED:
        return None
    if entry.status == "new":
        return "new"
    cur = (entry.current_version or {}).get("model") or {}
    if cur.get("sha256") != model_sha:
        return f"predicted by another model ({cur.get('name', '?')} {str(cur.get('sha256', ''))[:8]})"
    return "again (--all)" if redo else None


@dataclass
class PredictReport:
    predicted: list = field(default_factory=list)   # (case, version, seconds, vertebra names)
    skipped: list = field(default_factory=list)     # (case, reason)
    failed: list = field(default_factory=list)      # (case, message)
    cancelled: bool = False
    model: dict = field(default_factory=dict)


class CaseProgress(Progress):
    """A Progress for one case's inference that reports into the dataset-wide one."""

    def __init__(self, parent: Progress, lo: float, hi: float, prefix: str):
        super().__init__()
        self.parent, self.lo, self.hi, self.prefix = parent, lo, hi, prefix

    def check(self) -> None:
        self.parent.check()

    def cancel(self) -> None:
        self.parent.cancel()

    @property
    def cancelled(self) -> bool:
        return self.parent.cancelled

    def step(self, name: str, fraction: float = float("nan")) -> None:
        self.check()
        f = self.lo + (self.hi - self.lo) * fraction if fraction == fraction else float("nan")
        self.parent.step(f"{self.prefix}: {name}", f)


def predict_case(ds: AnnotationDataset, name: str, model, *, device: str = "auto", redo: bool = False,
                 keep_incomplete: bool = True, check_modality: bool = True, threads: Optional[int] = None,
                 progress: Optional[Progress] = None, info: Optional[dict] = None) -> Optional[int]:
    """Predict one case and save the result as a new version; returns its number (None when the
    case was corrected meanwhile). Raises NoSpineFoundError / InputError for this case. With ``info`` from
    :func:`classical_info` the classical method predicts it (``model`` unused)."""
    if info is not None and info.get("method") == CLASSICAL:
        return predict_case_classical(ds, name, info, redo=redo, progress=progress)
    from SpineSegLib.iis.infer.run import segment_vertebrae   # inference: imported on use

    info = info or model_info(model)
    entry = ds.case(name)
    image = read_image(ds.root / entry.image)
    t0 = time.perf_counter()
    result = segment_vertebrae(image, str(model), device=device, keep_incomplete=keep_incomplete,
                               progress=progress, check_modality=check_modality, threads=threads,
                               expected_sha256=info["sha256"])
    seconds = time.perf_counter() - t0
    instances = [{"id": r.id, "name": r.name, "complete": r.complete, "completeness": round(r.completeness, 4),
                  "regressed_label": round(r.regressed_label, 3), "volume_ml": round(r.volume_ml, 3),
                  "in_output": r.in_output} for r in result.instances]
    settings = {"device": result.device, "keep_incomplete": keep_incomplete, "seconds": round(seconds, 2),
                "network_passes": result.network_passes, "stop_reason": result.stop_reason}
    return ds.save_prediction(name, result.labels, info, instances=instances, settings=settings, redo=redo,
                              warnings=result.warnings)


def predict_case_classical(ds: AnnotationDataset, name: str, info: dict, *, redo: bool = False,
                           progress: Optional[Progress] = None) -> Optional[int]:
    """:func:`predict_case` with the classical method (``info``: :func:`classical_info`); an MR case is refused."""
    from SpineSegLib.classical.params import ClassicalParams
    from SpineSegLib.classical.vertebrae import METHOD_VERSION
    from SpineSegLib.classical.vertebrae import label_vertebrae

    entry = ds.case(name)
    if _is_mr(ds, entry):
        raise InputError(f"case {name} is an MR image: the classical method segments CT only (use --model)")
    image = read_image(ds.root / entry.image)
    t0 = time.perf_counter()
    result = label_vertebrae(image, ClassicalParams.from_dict(info["params"]), progress)
    seconds = time.perf_counter() - t0
    instances = [{"id": int(v.label), "name": v.name, "complete": bool(v.complete), "evidence": list(v.evidence),
                  "voxels": int(v.voxels), "in_output": True} for v in result.vertebrae]
    settings = {"method": CLASSICAL, "seconds": round(seconds, 2), "names_certain": bool(result.names_certain),
                "naming_note": result.naming_note}
    warnings = [] if result.names_certain else [f"the vertebra names are uncertain: {result.naming_note}"]
    return ds.save_prediction(name, result.labels, info, instances=instances, settings=settings, redo=redo,
                              warnings=warnings)


def _is_mr(ds: AnnotationDataset, entry) -> bool:
    modality = (entry.manifest or {}).get("modality") or ds.modality
    return modality == "mr"


def _method_info(ds: AnnotationDataset, model, method: str, params) -> dict:
    """The ``model`` record of the predictions (:func:`model_info` or :func:`classical_info`), checked against the
    dataset's modality."""
    if method not in METHODS:
        raise InputError(f"unknown prediction method {method!r} (use {' or '.join(METHODS)})")
    if method == CLASSICAL:
        if model:
            raise InputError("the classical method uses no model: give --method classical or --model, not both")
        return classical_info(params)
    if not model:
        raise InputError("no model given: predicting with a network needs --model WEIGHTS (or --method classical)")
    info = model_info(model)
    if ds.modality and info.get("modality") and ds.modality != info["modality"]:
        raise InputError(f"this is a {str(info['modality']).upper()} model but the dataset holds "
                         f"{ds.modality.upper()} images")
    return info


def predict_dataset(ds: AnnotationDataset, model=None, *, device: str = "auto", redo: bool = False, cases=None,
                    keep_incomplete: bool = True, check_modality: bool = True, threads: Optional[int] = None,
                    progress: Optional[Progress] = None, log=None, method: str = MODEL,
                    params=None) -> PredictReport:
    """Predict every case that needs it (module docstring) with ``model`` or, ``method="classical"``, model-free
    (``params``: ClassicalParams fields). ``cases``: only these names. ``log(message)`` receives one line per case.
    Failures of single cases (no spine found, an unreadable image) are collected in the report, not raised;
    :class:`Cancelled` is raised. The classical method refuses MR cases before any work (InputError naming them)."""
    progress = progress or Progress()
    log = log or (lambda message: None)
    info = _method_info(ds, model, method, params)
    report = PredictReport(model=info)
    entries = ds.list_cases()
    if cases:
        wanted = [str(c) for c in cases]
        known = {e.name for e in entries}
        missing = [c for c in wanted if c not in known]
        if missing:
            raise InputError(f"no such case(s): {', '.join(missing)}")
        entries = [e for e in entries if e.name in wanted]
    todo = []
    for e in entries:
        if e.problem:
            report.failed.append((e.name, e.problem))
            continue
        if e.image_missing:
            report.failed.append((e.name, f"image {ds.root / e.image} is missing"))
            continue
        reason = needs_prediction(e, info["sha256"], redo)
        if reason is None:
            report.skipped.append((e.name, e.status if e.status in ANNOTATED else "already predicted by this model"))
        else:
            todo.append((e.name, reason))
    mr = [name for name, _ in todo if method == CLASSICAL and _is_mr(ds, ds.case(name))]
    if mr:
        raise InputError(f"case{'s' if len(mr) > 1 else ''} {', '.join(mr)}: MR image{'s' if len(mr) > 1 else ''}; "
                         "the classical method segments CT only (predict MR cases with an IIS model, --model)")
    progress.step(f"{len(todo)} case(s) to predict with {info['name']}", 0.0)
    for k, (name, reason) in enumerate(todo):
        sub = CaseProgress(progress, k / max(len(todo), 1), (k + 1) / max(len(todo), 1),
                            f"case {name} ({k + 1}/{len(todo)})")
        t0 = time.perf_counter()
        try:
            version = predict_case(ds, name, model, device=device, redo=redo, keep_incomplete=keep_incomplete,
                                   check_modality=check_modality, threads=threads, progress=sub, info=info)
        except Cancelled:
            report.cancelled = True
            log(f"cancelled during case {name}; it was not saved, {len(report.predicted)} case(s) were")
            raise
        except (NoSpineFoundError, InputError) as exc:
            report.failed.append((name, str(exc)))
            log(f"{name}: FAILED: {exc}")
            continue
        seconds = time.perf_counter() - t0
        if version is None:
            report.skipped.append((name, (ds.last_save or {}).get("skipped", "not needed any more")))
            log(f"{name}: not saved ({report.skipped[-1][1]})")
            continue
        names = ds.last_save.get("labels", [])
        report.predicted.append((name, version, seconds, [name_of(v) for v in names]))
        log(f"{name}: version {version} ({reason}), {len(names)} label(s) "
            f"{' '.join(name_of(v) for v in names)}, {seconds:.1f} s")
    progress.step("done", 1.0)
    return report
