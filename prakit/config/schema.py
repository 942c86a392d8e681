"""The experiment config: model components plus data, optimisation, training, sampling,
evaluation and launch sections. Every section is a frozen attrs class with validators."""

from __future__ import annotations

import functools
import math
import re
import typing

import attrs
from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, gt, in_, le, lt, optional

from prakit.choices import CHANNELS, CLUSTERS, EMA_CHOICES, GUIDANCE_SCHEDULES, SAMPLER_COMPILE
from prakit.errors import PrakitError, UnknownNameError
from prakit.kinds import (
    CONFIG_BASES,
    BackboneConfig,
    DatasetConfig,
    DecoderConfig,
    EvaluatorConfig,
    FeatureNetworkConfig,
    GeneratorConfig,
    RolloutConfig,
    TrackerConfig,
)

#: Field metadata: changing the field does not change what a run computes (a longer run, other
#: bookkeeping, other sampling), so a run resumes across the change.
FREE = {"free_in_a_run": True}
#: Field metadata of a sampling option: it changes how fast samples are drawn, not which (every
#: image is seeded by its index), so stores and evaluations drawn with other values are the same.
SPEED_ONLY = {"speed_only": True}


def flag(help: str, name: str | None = None, choices: tuple | None = None, **metadata) -> dict:
    """Field metadata: the command line offers the field as a flag of its own (``--field-name``,
    or ``name``) with this ``help`` (and ``choices``)."""
    return {"help": help, "flag": name, "choices": choices, **metadata}


@functools.cache
def free_fields(cls: type | None = None, prefix: str = "") -> set[str]:
    """The dotted paths of the fields marked :data:`FREE`, e.g. ``train.steps``."""
    found = set()
    for f in attrs.fields(attrs.resolve_types(cls or ExperimentConfig)):
        if f.metadata.get("free_in_a_run"):
            found.add(prefix + f.name)
        elif attrs.has(f.type) and f.type not in CONFIG_BASES:
            found |= free_fields(f.type, f"{prefix}{f.name}.")
    return found


def fraction(default: float):
    """A float field in [0, 1]."""
    return field(default=default, validator=and_(ge(0.0), le(1.0)))


class EMAChoice:
    """A validator: ``none`` (live weights), ``slow``/``fast`` (the EMA of largest/smallest decay),
    or an EMA's name such as ``ema_0.9999``."""

    options = EMA_CHOICES

    def __call__(self, _instance, attribute, value: str) -> None:
        if value not in self.options and not re.fullmatch(r"ema_[0-9.e-]+", value):
            choices = ", ".join(map(repr, self.options))
            raise ValueError(f"'{attribute.name}' must be {choices} or an EMA's name like 'ema_0.9999': {value!r}")


def sbatch_options(_instance, attribute, value: dict[str, str]) -> None:
    """A validator: ``sbatch`` option names as the config writes them, without their dashes."""
    bad = [key for key in value if not key.strip() or key.startswith("-")]
    if bad:
        raise ValueError(f"'{attribute.name}' must name sbatch options without their dashes, e.g. "
                         f'{{mail-type = "END"}}, not {bad[0]!r}')


def members(validator):
    """Validate every item of a tuple field."""
    return deep_iterable(member_validator=validator)


@frozen
class ModelConfig:
    """The autoregressive model: four swappable components and how they are tied together."""

    backbone: BackboneConfig
    generator: GeneratorConfig
    decoder: DecoderConfig
    rollout: RolloutConfig
    patch_size: int = field(default=16, validator=gt(0))
    class_dropout: float = fraction(0.1)
    rec_weight: float = field(default=1.0, validator=ge(0.0))
    head_grad_to_encoder: bool = False


@frozen
class DataConfig:
    """The training images: a prakit zarr store, prepared from ``source`` if it is missing."""

    store: str
    image_size: int = field(default=256, validator=gt(0))
    channels: int = field(default=3, validator=in_(CHANNELS))
    num_classes: int = field(default=1000, validator=gt(0))
    source: DatasetConfig | None = None
    hflip: bool = False
    num_workers: int = field(default=2, validator=ge(0), metadata=FREE)


@frozen
class OptimConfig:
    """AdamW with warmup and a constant or cosine schedule; ``lr`` defaults to base_lr x batch/256."""

    lr: float | None = field(default=None, validator=optional(gt(0.0)))
    base_lr: float = field(default=1e-4, validator=gt(0.0))
    betas: tuple[float, float] = field(default=(0.9, 0.95), validator=members(and_(ge(0.0), lt(1.0))))
    weight_decay: float = field(default=0.02, validator=ge(0.0))
    schedule: str = field(default="constant", validator=in_(("constant", "cosine")))
    warmup_steps: int = field(default=0, validator=ge(0))
    min_lr: float = field(default=0.0, validator=ge(0.0))
    grad_clip: float = field(default=3.0, validator=ge(0.0))
    ema_decays: tuple[float, ...] = field(default=(0.9999, 0.999), validator=members(and_(gt(0.0), lt(1.0))))


@frozen
class TrainConfig:
    """Length, batch and bookkeeping of a training run."""

    steps: int = field(default=400_000, validator=gt(0), metadata=FREE)
    batch_size: int = field(default=256, validator=gt(0))
    grad_accum: int = field(default=1, validator=gt(0))
    seed: int = field(default=0, validator=ge(0))
    precision: str = field(default="auto", validator=in_(("auto", "fp32", "bf16")))
    compile: bool = field(default=False, metadata=FREE)
    activation_checkpointing: bool = field(default=False, metadata=FREE)
    log_every: int = field(default=50, validator=gt(0), metadata=FREE)
    ckpt_every: int = field(default=5000, validator=gt(0), metadata=FREE)
    keep_last: int = field(default=2, validator=gt(0), metadata=FREE)
    milestone_every: int = field(default=0, validator=ge(0), metadata=FREE)  # checkpoints kept for good; 0: none
    sample_every: int = field(default=0, validator=ge(0), metadata=FREE)
    trackers: tuple[TrackerConfig, ...] = field(default=(), metadata=FREE)  # `prakit plugins list --kind tracker`


@frozen
class SampleConfig:
    """How images are drawn from a trained model."""

    num: int = field(default=50_000, validator=gt(0))
    batch_size: int = field(default=64, validator=gt(0), metadata=flag("images per batch", **SPEED_ONLY))
    cfg_scale: float = field(default=1.0, validator=ge(0.0), metadata=flag("classifier-free guidance scale", "--guidance"))
    cfg_schedule: str = field(default="linear", validator=in_(GUIDANCE_SCHEDULES),
                              metadata=flag("how guidance moves over the tokens", "--guidance-schedule", GUIDANCE_SCHEDULES))
    temperature: float = field(default=1.0, validator=gt(0.0), metadata=flag("head sampling temperature"))
    steps: int | None = field(default=None, validator=optional(gt(0)),  # None: the head's own default
                              metadata=flag("head sampling steps per token"))
    ema: str = field(default="slow", validator=EMAChoice(),
                     metadata=flag(f"EMA weights: {', '.join(EMA_CHOICES)} or a name like ema_0.9999"))
    seed: int = field(default=0, validator=ge(0), metadata=flag("sampling seed (images are seeded per index)"))
    compile: str = field(default="off", validator=in_(SAMPLER_COMPILE), metadata=flag(
        "torch.compile the decoding step and the head's network in this mode (reduce-overhead: CUDA graphs)",
        choices=SAMPLER_COMPILE, **SPEED_ONLY))


def with_options(options: SampleConfig, changes: dict[str, typing.Any],
                 name: typing.Callable[[str], str] = lambda key: f"sample.{key}") -> SampleConfig:
    """``options`` with ``changes``, each checked by SampleConfig's validators; ``name`` names a field in errors."""
    for key, value in changes.items():
        if key not in attrs.fields_dict(SampleConfig):
            raise UnknownNameError("sampling option", key, attrs.fields_dict(SampleConfig))
        try:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key!r} must be a finite number: {value}")
            options = attrs.evolve(options, **{key: value})
        except (ValueError, TypeError) as exc:
            rule = str(exc).rsplit(": ", 1)[0].replace(repr(key), name(key))
            raise PrakitError(f"{rule}, got {value!r}") from None
    return options


@attrs.frozen
class Flag:
    """A command-line flag for a config field: its name, type, choices and help."""

    field: str
    name: str
    type: type
    choices: tuple | None
    help: str


def flags(cls: type) -> list[Flag]:
    """The flags of the fields of ``cls`` marked with :func:`flag`, in field order."""
    found = []
    for f in attrs.fields(attrs.resolve_types(cls)):
        if "help" in f.metadata:
            scalar = next(t for t in typing.get_args(f.type) or (f.type,) if t is not type(None))
            found.append(Flag(f.name, f.metadata["flag"] or f"--{f.name.replace('_', '-')}", scalar,
                              f.metadata["choices"], f.metadata["help"]))
    return found


def what_is_drawn(options: dict) -> dict:
    """The sampling options (a ``sample`` section as plain data) that decide which samples are
    drawn: all but those marked :data:`SPEED_ONLY`."""
    fast = {f.name for f in attrs.fields(SampleConfig) if f.metadata.get("speed_only")}
    return {k: v for k, v in options.items() if k not in fast}


@frozen
class EvalConfig:
    """What ``prakit eval`` computes: ``evaluators`` on ``num`` samples against ``reference``.

    ``evaluators``: none means fid and precision_recall. ``reference``: a store of real images
    or a reference ``.npz`` (None: ``data.store``). ``features``: the feature network (None:
    inception when ``PRAKIT_INCEPTION_WEIGHTS`` names its weights, else featnet). ``num``:
    samples to draw and evaluate (None: ``sample.num``). ``reference_num``: reference images
    features are extracted from, spread over the reference store. ``batch_size``: images per
    feature-extraction batch. Feature moments need two images at least: ``num`` and
    ``reference_num`` are 2 or more.
    """

    evaluators: tuple[EvaluatorConfig, ...] = ()
    reference: str | None = None
    features: FeatureNetworkConfig | None = None
    num: int | None = field(default=None, validator=optional(gt(1)))
    reference_num: int = field(default=50_000, validator=gt(1))
    batch_size: int = field(default=100, validator=gt(0))


@frozen
class LaunchConfig:
    """Where the job runs: ``local`` or ``debug`` here, ``slurm`` on a cluster (submitit)."""

    cluster: str = field(default="local", validator=in_(CLUSTERS))
    folder: str = "runs/submitit"
    nodes: int = field(default=1, validator=gt(0), metadata=flag("launch.nodes"))
    gpus_per_node: int = field(default=8, validator=ge(0), metadata=flag("launch.gpus_per_node"))
    tasks_per_node: int | None = field(default=None, validator=optional(gt(0)),  # None: one per GPU (or 1)
                                       metadata=flag("launch.tasks_per_node"))
    cpus_per_task: int = field(default=8, validator=gt(0), metadata=flag("launch.cpus_per_task"))
    mem_gb: int = field(default=0, validator=ge(0), metadata=flag("launch.mem_gb"))
    timeout_min: int = field(default=4320, validator=gt(0), metadata=flag("launch.timeout_min"))
    partition: str | None = field(default=None, metadata=flag("launch.partition"))
    account: str | None = field(default=None, metadata=flag("launch.account"))
    qos: str | None = field(default=None, metadata=flag("launch.qos"))
    constraint: str | None = field(default=None, metadata=flag("launch.constraint"))
    slurm_options: dict[str, str] = field(factory=dict, validator=sbatch_options)  # more sbatch options, e.g. {mail-type = "END"}; "": a flag


@frozen
class ExperimentConfig:
    """Everything one experiment needs; written beside every run and sample store."""

    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = field(default=SampleConfig(), metadata=FREE)
    eval: EvalConfig = field(default=EvalConfig(), metadata=FREE)
    launch: LaunchConfig = field(default=LaunchConfig(), metadata=FREE)
    description: str = field(default="", metadata=FREE)
