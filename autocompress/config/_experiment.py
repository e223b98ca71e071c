"""The experiment: what to run (data, model, fine-tuning budget, target, search, storage).

Dataclasses in code, YAML at rest (``experiments/*.yaml``), :func:`load_experiment` in between.
Components are chosen by short registry keys (``runtime: onnxruntime``, ``sampler: tpe``), with
one exception a user opts into: ``model.builder: "mypkg.models:build"`` names a model builder by
import path, and the search imports and calls it (torchtune's ``_component_``, Hydra's
``_target_``), so an experiment naming a builder runs that code. The config checks only the
``module:callable`` form; nothing is imported here. Paths inside an experiment file (``space``,
``data.root``, ``model.checkpoint``) are relative to the file; ``storage`` and ``run_dir`` are
relative to the working directory, like any output path on a command line.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from autocompress.config._checks import OBJECTIVES, check_semantics, name_builder
from autocompress.config._schema import build, to_plain
from autocompress.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """The data set and its fixed train / validation / test split.

    ``folder``: ``root/<class>/*.png|jpg`` (or ``root/train/<class>``, ``root/test/<class>``);
    ``npy``: ``root/{x,y}_{train,test}.npy``, images (N, C, H, W) or (N, H, W), float or uint8.
    """

    dataset: Literal["fashion_mnist", "digits", "folder", "npy"] = "fashion_mnist"
    # directory with the files; fashion_mnist without it: Debian package, then download
    root: str | None = None
    channels: Literal[1, 3] | None = None  # folder: 1 gray, 3 RGB; None: 3 if any image has colour
    image_size: list[int] | None = None  # folder: resize to [height, width]; None: keep the size
    val_size: int = field(default=5000, metadata={"ge": 10})  # images held out of train
    train_size: int | None = field(default=None, metadata={"ge": 10})  # cap; None: the rest
    test_size: int | None = field(default=None, metadata={"ge": 10})  # cap on the test split
    seed: int = 0  # seed of the train/validation split
    calibration_batches: int = field(default=8, metadata={"ge": 1})  # batches for PTQ ranges
    batch_size: int = field(default=128, metadata={"ge": 1})  # training and calibration batch


@dataclass(frozen=True)
class TrainConfig:
    """Training of the fp32 reference model; the checkpoint cache is keyed by these values."""

    epochs: float = field(default=2.0, metadata={"gt": 0})
    batch_size: int = field(default=128, metadata={"ge": 1})
    lr: float = field(default=0.1, metadata={"gt": 0})  # peak of a one-cycle schedule
    weight_decay: float = field(default=5e-4, metadata={"ge": 0})
    seed: int = 0
    # sgd: Nesterov momentum (the CNNs); adamw: what transformers need to converge
    optimizer: Literal["sgd", "adamw"] = "sgd"
    augment: bool = False  # images: random shifts of up to 2 px and horizontal flips


@dataclass(frozen=True)
class ModelConfig:
    """The model to compress: a registry key (or a builder), its arguments, where its weights
    come from."""

    name: str = "refnet"  # see `autocompress ls models`; with a builder, a label (files, logs)
    # your own model: "module:callable", called as callable(input_shape, num_classes, **kwargs);
    # the module must be importable (installed, or on PYTHONPATH). It runs: trust the YAML.
    builder: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {width: 16}
    checkpoint: str | None = None  # explicit fp32 state_dict; None: train (or reuse) the cache
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class FinetuneConfig:
    """The fixed fine-tuning budget every trial gets (QAT + distillation)."""

    steps: int = field(default=200, metadata={"ge": 0})  # optimizer steps; 0: PTQ only
    batch_size: int = field(default=128, metadata={"ge": 1})
    # sgd: momentum SGD (the CNNs; lr is its rate at T=1, see backend/_finetune.py); adamw: what
    # transformers fine-tune with (lr is AdamW's rate, e.g. 1e-3; momentum unused; decay on
    # matrices only). The plain-pipeline baselines fine-tune with the same optimizer.
    optimizer: Literal["sgd", "adamw"] = "sgd"
    # SGD at 0.04 / (alpha*T + 1 - alpha) = 0.021 with the default T=2, alpha 0.9: measured
    # best at 60 and 1000 steps (docs/benchmarks/recipe-fmnist-lr-60.md, -kd9lr4-1000.md)
    lr: float = field(default=0.04, metadata={"gt": 0})
    # the rate of plans without a teacher term (alpha 0: the plain-pipeline baselines, what a
    # user runs without us); None: lr. Cross-entropy alone at 0.04 lost 0.04-0.75 pt at 60 steps
    # against 0.01, so the CNN experiments keep the afternoon's 0.01 for it
    plain_lr: float | None = field(default=None, metadata={"gt": 0})
    momentum: float = field(default=0.9, metadata={"ge": 0, "lt": 1})
    weight_decay: float = field(default=0.0, metadata={"ge": 0})
    # share of the steps, at the end, that train quantization-aware on BN-folded weights;
    # before them the network fine-tunes in float with BatchNorm live (1: QAT all along).
    # 0: fine-tune in float, then GPTQ-round weights below 7 bits (post-training), measured better
    # than 0.25 at 60 and 1000 steps once GPTQ rounds (docs/benchmarks/recipe-fmnist-gptq-*.md)
    qat_fraction: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    # weight of feature distillation on the channels a pruned student kept: each kept channel's
    # BatchNorm output pulled toward the teacher's (backend/_features.py); 0: logits only. The
    # teacher runs live while the term lasts (its hidden outputs are in no table). Measured on
    # refnet (docs/benchmarks/recipe-fmnist-features.md): 5 fading over 200 steps more than
    # doubles the 60-step gain over plain per step, gains nothing at 1000, and costs 13-68%
    # more per trial on CPU, where more logit-only steps in that time do as well: so off by default
    feature_weight: float = field(default=0.0, metadata={"ge": 0})
    # steps over which the feature weight fades linearly to 0 (0: held for the whole budget)
    feature_steps: int = field(default=0, metadata={"ge": 0})
    # gradual pruning (worker/_gradual.py): a distilling plan's widths reached in this many cuts
    # over the first ``prune_span`` of the float phase (1: one shot, before fine-tuning). 4 over
    # the first quarter, on refnet at 60 steps: above one shot on every seed of every plan, 4b-50%
    # 90.34% against 89.49% (three-seed medians), at about the same trial time; neutral at 1000
    # steps (docs/benchmarks/recipe-fmnist-gradual.md)
    prune_stages: int = field(default=4, metadata={"ge": 1})
    prune_span: float = field(default=0.25, metadata={"gt": 0, "le": 1})
    bn_batches: int = field(default=20, metadata={"ge": 0})  # BN recalibration after pruning
    # end the float phase on the weights averaged over about this many steps (an exponential
    # moving average from the last pruning cut on, BatchNorm statistics included;
    # backend/_finetune.py WeightAverage); 0: on the last step's weights. 300 on refnet at 1000
    # steps: -0.14..+0.11 pt over five plans, median -0.01 (recipe-fmnist-ema-wd-1000-s0.md)
    ema_steps: int = field(default=0, metadata={"ge": 0})
    # calibration batches whose inputs GPTQ uses to round weights below 7 bits onto their grid
    # when no QAT follows (0: round to nearest); see backend/_gptq.py
    gptq_batches: int = field(default=4, metadata={"ge": 0})
    seed: int = 0
    # distil from this model instead of the reference (None: the reference teaches). Any model
    # with the same inputs and classes, e.g. a wider one: a student distilled from its own
    # reference can at best match it, so a stronger teacher is what lifts members above the
    # plain pipeline. Trained (or reused from the cache) like the reference, or its checkpoint.
    teacher: ModelConfig | None = None


@dataclass(frozen=True)
class MeasureConfig:
    """The latency protocol's knobs (see autocompress.measure for the protocol itself)."""

    warmup: int = field(default=30, metadata={"ge": 0})  # untimed runs before timing
    repeats: int = field(default=200, metadata={"ge": 5})  # timed runs per sitting
    min_time_s: float = field(default=0.5, metadata={"ge": 0})  # keep timing at least this long
    max_spread: float = field(default=0.10, metadata={"gt": 0})  # (p75-p25)/median to accept
    attempts: int = field(default=3, metadata={"ge": 1})  # sittings before accepting the best
    # the fp32 model timed beside a candidate more than this fraction slower than usual (the
    # lower quartile of this worker's last sittings; in verify, off the other members' median)
    reference_tolerance: float = field(default=0.05, metadata={"gt": 0})
    # time each trial whose timing stayed unsettled again once the search's trials are done
    # (the machine quiet), from its stored deployable; the steadier sitting is the front's
    retime: bool = True


@dataclass(frozen=True)
class TargetConfig:
    """Where and how a candidate is timed: device, runtime, batch and input shape."""

    runtime: str = "onnxruntime"  # see `autocompress ls runtimes`
    device: str = "cpu"  # "cpu" or "cuda:N"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # cuda compute; auto: fp16
    cores: list[int] | None = None  # CPU cores to pin timing to; None: the last core
    threads: int = field(default=1, metadata={"ge": 1})  # intra-op threads while timing
    batch_size: int = field(default=1, metadata={"ge": 1})
    input_shape: list[int] | None = None  # per-sample shape; None: the data set's
    round_to: int = field(default=8, metadata={"ge": 1})  # channel counts kept multiple of this
    node_resources: dict[str, float] = field(default_factory=dict)  # Ray resources to time on
    # widest int8-kernel weights a search samples (8-bit choices become this); None: 8, or 7
    # where ONNX Runtime's int8 saturates on this CPU (x86 without VNNI: runtimes.int8_saturates)
    max_weight_bits: int | None = field(default=None, metadata={"ge": 7, "le": 8})
    measure: MeasureConfig = field(default_factory=MeasureConfig)


GENERATED_WARM_STARTS = ("uniform", "sensitivity")  # search.warm_start kinds made from the space
PLAN_SUFFIXES = (".json", ".yaml", ".yml")  # any other search.warm_start entry: a plan file


@dataclass(frozen=True)
class SearchConfig:
    """How the study runs: budget, sampler, objectives, constraints, parallelism."""

    n_trials: int = field(default=12, metadata={"ge": 1})  # target number of COMPLETED trials
    sampler: Literal["tpe", "nsga2", "random", "gp"] = "tpe"  # = _names.SAMPLER_NAMES
    seed: int | None = 0
    population_size: int | None = field(default=None, metadata={"ge": 2})  # NSGA-II; None: auto
    objectives: list[Literal["accuracy", "latency", "size"]] = field(
        default_factory=lambda: list(OBJECTIVES)
    )
    # the latency objective: ratio = candidate / fp32 timed in the same sitting (default: a
    # machine's drift cancels; measured fp32 0.88-1.62 ms over 30 min on a 2-core VM), or ms
    latency_unit: Literal["ms", "ratio"] = "ratio"
    # int8-dynamic: uniform int8 with Linear layers on dynamic int8 (rules listing scheme dynamic)
    # plain-prune25/50: magnitude pruning, cross-entropy fine-tuning with BatchNorm live, int8
    # PTQ, at the search's budget: what a user does without us, held against every front
    baselines: list[
        Literal["fp32", "int8", "int8-dynamic", "int8-prune50", "plain-prune25", "plain-prune50"]
    ] = field(default_factory=lambda: ["fp32", "int8"])
    max_accuracy_drop: float | None = field(default=None, metadata={"ge": 0})  # pts vs fp32
    hopeless_margin: float | None = field(default=None, metadata={"ge": 0})  # pts under floor
    # plans enqueued before the sampler's own: uniform = the uniform plans a user would try by
    # hand (study/_warm_start.py); sensitivity = low bits for the least sensitive layers first;
    # a path to a plan file (.json/.yaml, relative to the experiment file): your own plan, or a
    # member exported from another study of this model
    warm_start: list[str] = field(default_factory=lambda: ["uniform"])
    executor: Literal["local", "ray"] = "local"
    n_workers: int = field(default=1, metadata={"ge": 1})  # trials in flight
    ray_address: str | None = None  # None: start a local Ray
    trial_timeout_s: float | None = field(default=None, metadata={"gt": 0})
    # multi-fidelity search: fine-tuning step budgets, ascending (0: prune, BN recalibrate,
    # snap, realize, measure; no fine-tuning). Every plan enters at the first; the top
    # 1/eta of a rung (non-dominated sorting) is promoted to the next (study/_rungs.py).
    # None: one rung of finetune.steps (every trial fine-tuned alike, no promotion)
    rungs: list[int] | None = None
    eta: int = field(default=3, metadata={"ge": 2})  # promote the top 1/eta of each rung
    # with rungs starting at 0: GPTQ-round rung 0's sub-7-bit layers (false: round to nearest;
    # rung 0's accuracy only ranks plans for promotion, and a promoted plan starts afresh. On
    # resnet18 nearest ranked as well, Kendall tau to 60 steps 0.39 against 0.28-0.32, at a
    # third of a rung-0 trial's time, but its [0, 60] search lost as much verified
    # hypervolume on test as with GPTQ against one-rung search + refine; README)
    rung0_gptq: bool = True
    # with rungs: the fine-tuning steps the whole study may spend (every trial's budget,
    # promotions included, counted from the storage); a promotion that would pass it is not
    # made. n_trials bounds the plans sampled; this bounds what training them costs. None: no cap
    max_steps: int | None = field(default=None, metadata={"ge": 1})
    # trial time the study may spend (every trial's duration, all workers and resumes, from the
    # storage): a trial expected to pass it does not start (study/_budget.py). None: no cap
    max_trial_minutes: float | None = field(default=None, metadata={"gt": 0})

    def __post_init__(self) -> None:
        for entry in self.warm_start:
            if entry not in GENERATED_WARM_STARTS and not str(entry).endswith(PLAN_SUFFIXES):
                raise ConfigError(
                    f"search.warm_start: {entry!r} is neither one of {list(GENERATED_WARM_STARTS)}"
                    f" nor a plan file ({'/'.join(PLAN_SUFFIXES)}); fix the entry"
                )
        rungs = self.rungs
        if rungs is not None and (
            not rungs
            or any(int(s) < 0 for s in rungs)
            or any(b <= a for a, b in itertools.pairwise(rungs))
        ):
            raise ConfigError(
                f"search.rungs: {rungs} must be fine-tuning step budgets >= 0 in strictly "
                "ascending order, e.g. [0, 60, 250, 1000] (or null: one rung of finetune.steps)"
            )

        if self.max_steps is not None and rungs is None:
            raise ConfigError(
                f"search.max_steps: {self.max_steps} caps the promotions of a multi-fidelity "
                "search; set search.rungs (e.g. [0, 60, 1000]) or drop search.max_steps "
                "(n_trials bounds a one-rung search)"
            )

    def ladder(self, finetune_steps: int) -> list[int]:
        """The rungs' step budgets; without ``rungs``, the one rung of ``finetune.steps``."""
        return [int(s) for s in self.rungs] if self.rungs is not None else [finetune_steps]


@dataclass(frozen=True)
class SearchSections:
    """The sections of an experiment file that a search of your own model takes (the Python
    API's ``search(model, ..., sections=...)``): where and how candidates are timed, the
    fine-tuning budget, how the study runs."""

    target: TargetConfig = field(default_factory=TargetConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a search needs, loaded from ``experiments/*.yaml``."""

    name: str  # the study name
    space: str  # search-space YAML, relative to the experiment file
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    storage: str | None = (
        None  # None: <run_dir>/study.journal; or a path, sqlite:///, postgresql://
    )
    run_dir: str | None = None  # None: runs/<name>
    base_dir: str = "."  # directory of the YAML file (set by the loader)

    @property
    def space_path(self) -> Path:
        return _resolve(self.base_dir, self.space)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        config = build(cls, name_builder(data), "")
        check_semantics(config)
        return config

    def replace(self, **changes: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load and validate an experiment YAML, applying ``key.sub=value`` overrides.

    Example:
        >>> cfg = load_experiment("experiments/fashion_mnist.yaml", ["search.n_trials=4"])
        >>> cfg.search.n_trials
        4
    """
    path = Path(path)
    data = read_yaml(path)
    for text in overrides or []:
        apply_override(data, text)
    data.setdefault("base_dir", str(path.parent))
    try:
        config = ExperimentConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    files = [  # plan files relative to the experiment file, like its space
        w if w in GENERATED_WARM_STARTS else str(_resolve(config.base_dir, w).resolve())
        for w in config.search.warm_start
    ]
    config = config.replace(search=dataclasses.replace(config.search, warm_start=files))
    if config.data.root is None:
        return config
    root = _resolve(config.base_dir, config.data.root).resolve()  # workers start anywhere
    return config.replace(data=dataclasses.replace(config.data, root=str(root)))


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; one-line errors for missing or malformed files."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; check the path (see `autocompress ls`)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def apply_override(data: dict[str, Any], text: str) -> None:
    """Set ``key.sub=value`` in nested ``data``; the value is parsed as YAML (``4``, ``[1,2]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {text!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _resolve(base: str, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base) / p
