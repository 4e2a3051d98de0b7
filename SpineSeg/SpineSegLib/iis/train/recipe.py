"""Training recipes for the IIS network: a TOML file with [model], [data], [training], [output].

Example (the bundled ``resources/recipes/mr-vertebral-bodies-small.toml`` is a complete one)::

    [model]                         # any IISConfig field (SpineSegLib.iis.model.config)
    modality = "mr"
    width = 16
    patch_size = [48, 48, 32]       # [z, y, x] voxels of the canonical (LPS) grid
    voxel_size_mm = [2.0, 2.0, 2.0]

    [data]
    cache = "runs/cache"            # model-grid arrays on disk (.npy, memory-mapped); "" = in memory
    validation = ["myosegmentum/4[5-9]"]   # case ids or fnmatch patterns held out for validation
    test = ["myosegmentum/5*"]      # never used in training or model selection (older name: held_out)
    train = []                      # default: every other case
    validation_fraction = 0.1       # used when `validation` is empty
    split_seed = 0
    max_train_cases = 0             # 0 = all

    [[data.sources]]                # one table per dataset (kinds: SpineSegLib.iis.train.readers)
    kind = "myosegmentum"
    path = "mr/vertebral-bodies-myosegmentum"   # inside the data root (or: root = "/abs/folder")

    [training]
    iterations = 3000
    batch_size = 1
    lr = 1e-3
    betas = [0.99, 0.999]           # beta1 = 0.99 (Lessmann et al.)
    checkpoint_every = 500
    validate_every = 250
    final = "average"               # "average" of the last `average_last` snapshots, "best", "last"
    device = "auto"                 # "auto" | "cpu" | "cuda" | "cuda:1"
    amp = "auto"                    # "auto" (bf16; fp16 on GPUs without bf16) | "bf16" | "fp16" | "off"

    [training.sampling]             # SamplingOptions (SpineSegLib.iis.train.sampling)
    empty_fraction = 0.25

    [training.augmentation]         # AugmentOptions (SpineSegLib.iis.train.augment)
    noise = 0.25
    blur = 0.25
    elastic = 0.5
    crop = 0.05
    dr_remap = 0.5                  # intensity domain randomisation (dr_*): off (0) by default
    dr_invert = 0.2

    [output]
    dir = "runs/mr-small"

Datasets are named by kind: a source's ``path`` lies inside the data root, which comes from
``spineseg train --data KIND=PATH`` (that source's own folder) or ``$SPINESEG_DATA``
(``core.resources.source_root``); a source may instead give its own ``root`` folder. Relative paths
(cache, output, a relative ``root``) are taken relative to the current folder. ``~`` and ``$VARS``
are expanded. Unknown keys are errors (a typo never passes silently). A bundled recipe can be
loaded by name.

Console use::

    from SpineSegLib.iis.train.recipe import load_train_config
    cfg = load_train_config("mr-vertebral-bodies-small")      # a bundled recipe, or a .toml path
    cfg.model.width, cfg.training.iterations, cfg.output_dir
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.resources import bundled, find_resource, source_root
from SpineSegLib.iis.model.config import IISConfig
from SpineSegLib.iis.train.augment import AugmentOptions
from SpineSegLib.iis.train.sampling import SamplingOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class SourceConfig:
    kind: str
    root: Path | None = None                        # the dataset's folder; None: ``path`` in the data root
    options: dict = field(default_factory=dict)     # extra reader arguments (convention, modality, lowest ...)
    path: str | None = None                         # inside the data root (``$SPINESEG_DATA``)

    def folder(self) -> Path:
        """The dataset's folder: ``root`` when set, else ``$SPINESEG_DATA/<path>`` (``InputError`` when unset)."""
        return self.root if self.root is not None else source_root(self.kind, self.path)


@dataclass
class DataConfig:
    sources: list = field(default_factory=list)
    cache: Path | None = None
    train: list = field(default_factory=list)
    validation: list = field(default_factory=list)
    test: list = field(default_factory=list)
    validation_fraction: float = 0.1
    split_seed: int = 0
    max_train_cases: int = 0


@dataclass
class TrainingConfig:
    iterations: int = 100_000
    batch_size: int = 1
    lr: float = 1e-3
    betas: tuple = (0.99, 0.999)
    weight_decay: float = 0.0
    lambda_min: float = 0.1            # FP weight lambda(n) from lambda_min to 1
    gamma: float = 8.0                 # surface weights 1 + gamma exp(-d^2 / sigma^2)
    sigma_mm: float = 6.0
    label_weight: float = 1.0
    completeness_weight: float = 1.0
    label_lr_scale: float = 10.0       # learning-rate factor of the label head's output layer (see loop.py)
    checkpoint_every: int = 1000
    validate_every: int = 500
    validation_patches: int = 64
    log_every: int = 10
    final: str = "average"             # average | best | last
    average_last: int = 5
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"        # auto = on for CUDA, off on CPU (slower there, measured)
    threads: int = 2
    workers: int = 0                   # data-loading processes (0: in the training process)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    augmentation: AugmentOptions = field(default_factory=AugmentOptions)

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.final not in ("average", "best", "last"):
            raise InputError(f"[training] final = {self.final!r}: use 'average', 'best' or 'last'")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise InputError(f"[training] amp = {self.amp!r}: use 'auto', 'bf16', 'fp16' or 'off'")
        if self.channels_last not in ("auto", "on", "off"):
            raise InputError(f"[training] channels_last = {self.channels_last!r}: use 'auto', 'on' or 'off'")
        for name in ("iterations", "batch_size", "checkpoint_every", "validate_every", "log_every", "average_last"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"[training] {name} must be at least 1")


@dataclass
class TrainConfig:
    model: IISConfig
    data: DataConfig
    training: TrainingConfig
    output_dir: Path
    source_file: Path | None = None

    def to_dict(self) -> dict:
        """Plain data (for checkpoints and the run folder)."""
        t = asdict(self.training)
        return {
            "model": self.model.to_dict(),
            "data": {**{k: v for k, v in asdict(self.data).items() if k != "sources"},
                     "cache": str(self.data.cache) if self.data.cache else "",
                     "sources": [_source_dict(s) for s in self.data.sources]},
            "training": {**t, "betas": list(self.training.betas),
                         "augmentation": {**t["augmentation"],
                                          "elastic_sigma_mm": list(self.training.augmentation.elastic_sigma_mm),
                                          "elastic_rms_mm": list(self.training.augmentation.elastic_rms_mm)}},
            "output": {"dir": str(self.output_dir)},
        }


def _expand(path, base: Path) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(str(path))))
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _parse_source(i: int, table: dict, base: Path) -> SourceConfig:
    """One ``[[data.sources]]`` table: ``kind`` and ``path`` (in the data root) or ``root`` (a folder)."""
    s = dict(table)
    if "kind" not in s or not ("path" in s or "root" in s):
        raise InputError(f"[[data.sources]] #{i + 1} needs kind and path (or root)")
    kind, path, root = str(s.pop("kind")), s.pop("path", None), s.pop("root", None)
    return SourceConfig(kind, _expand(root, base) if root else None, s, str(path) if path else None)


def _source_dict(source: SourceConfig) -> dict:
    out = {"kind": source.kind}
    if source.path:
        out["path"] = source.path
    if source.root is not None:
        out["root"] = str(source.root)
    return {**out, **source.options}


def _build(cls, table: dict, section: str):
    if not isinstance(table, dict):
        raise InputError(f"[{section}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"[{section}]: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise InputError(f"[{section}]: {exc}") from None


def parse_train_config(data: dict, base: Path, source_file: Path | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from parsed TOML ``data``; relative paths are taken from ``base``."""
    unknown = sorted(set(data) - {"model", "data", "training", "output"})
    if unknown:
        raise InputError(f"unknown section(s) {', '.join(unknown)} (use [model], [data], [training], [output])")
    model_table = dict(data.get("model", {}))
    if model_table.get("modality", "ct") == "mr":
        model = _build_model(model_table, mr=True)
    else:
        model = _build_model(model_table, mr=False)

    d = dict(data.get("data", {}))
    sources = [_parse_source(i, s, base) for i, s in enumerate(d.pop("sources", []))]
    if not sources:
        raise InputError("[data] has no [[data.sources]]: name at least one dataset (kind and path)")
    if "held_out" in d:         # the older name of the test cases (older recipes and run folders)
        if "test" in d:
            raise InputError("[data] gives both test and held_out (its older name): keep test")
        d["test"] = d.pop("held_out")
    cache = d.pop("cache", "")
    data_cfg = _build(DataConfig, d, "data")
    data_cfg.sources = sources
    data_cfg.cache = _expand(cache, base) if cache else None

    t = dict(data.get("training", {}))
    sampling = _build(SamplingOptions, t.pop("sampling", {}), "training.sampling")
    augmentation = _build(AugmentOptions, t.pop("augmentation", {}), "training.augmentation")
    training = _build(TrainingConfig, t, "training")
    training.sampling, training.augmentation = sampling, augmentation

    out = dict(data.get("output", {}))
    unknown = sorted(set(out) - {"dir"})
    if unknown:
        raise InputError(f"[output]: unknown setting(s) {', '.join(unknown)} (known: dir)")
    output_dir = _expand(out.get("dir", "iis-training"), base)
    return TrainConfig(model, data_cfg, training, output_dir, source_file)


def _build_model(table: dict, mr: bool) -> IISConfig:
    known = {f.name for f in fields(IISConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"[model]: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return IISConfig.default_mr(**table) if mr else IISConfig(**table)
    except TypeError as exc:
        raise InputError(f"[model]: {exc}") from None


def load_train_config(path) -> TrainConfig:
    """Read a training recipe (TOML), a file or a bundled recipe's name; errors name the file and
    the problem. Relative paths in it are taken from the current folder."""
    path = Path(path)
    if not path.is_file() and path.parent == Path("."):
        try:
            path = find_resource("recipes", path)
        except InputError:
            names = ", ".join(p.stem for p in bundled("recipes"))
            raise InputError(f"training config not found: {path} (bundled recipes: {names})") from None
    if not path.is_file():
        raise InputError(f"training config not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_train_config(data, Path.cwd(), path)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def set_source_roots(cfg: TrainConfig, items) -> None:
    """Point the recipe's ``[[data.sources]]`` of a kind at a local copy: ``items`` like
    ``["ctspine1k=/data/CTSpine1K"]`` (``spineseg train --data``)."""
    for item in items:
        kind, sep, root = item.partition("=")
        kind = kind.strip()
        matching = [src for src in cfg.data.sources if src.kind == kind]
        if not sep or not root.strip():
            raise InputError(f"--data {item!r}: use KIND=PATH, e.g. ctspine1k=/data/CTSpine1K")
        if not matching:
            kinds = ", ".join(sorted({src.kind for src in cfg.data.sources}))
            raise InputError(f"--data {item!r}: the recipe has no [[data.sources]] of kind {kind!r} (it has: {kinds})")
        for src in matching:
            src.root = source_root(kind, src.path, {kind: root.strip()})


def resolve_source_roots(cfg: TrainConfig) -> None:
    """Give every source its folder (:meth:`SourceConfig.folder`); ``InputError`` names the ways to
    give a missing data root."""
    for src in cfg.data.sources:
        src.root = src.folder()


def to_toml(cfg: TrainConfig) -> str:
    """The configuration as TOML text (written into the run folder for the record)."""
    return _dump_toml(cfg.to_dict())


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if v is None:
        return '""'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _dump_toml(d: dict) -> str:
    lines = []

    def table(name, t):
        scalars = {k: v for k, v in t.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        lines.append(f"[{name}]")
        for k, v in scalars.items():
            if v is None:
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
        for k, v in t.items():
            if isinstance(v, dict) and k != "intensity":
                table(f"{name}.{k}", v)
            elif isinstance(v, dict):
                pass
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{name}.{k}]]")
                    for kk, vv in item.items():
                        lines.append(f"{kk} = {_toml_value(vv)}")
                    lines.append("")

    for section, t in d.items():
        if section == "model":
            lines.append("[model]")
            for k, v in t.items():
                if v is None:
                    continue
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
        else:
            table(section, t)
    return "\n".join(lines)
