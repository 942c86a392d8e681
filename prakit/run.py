"""A run directory: where its files are, what they say, and which of its stages are done.

::

    RUN_DIR/
      config.toml        the resolved config, written when training starts
      checkpoints/       ckpt-<step>.pt: the latest few, and the milestones
      metrics.jsonl      one row per logged training step
      grids/             sample grids drawn during training
      loss.png, .svg     the loss curve, at the end of training
      tensorboard/       with the tensorboard tracker (train.trackers)
      trackers.json      the run's ids at the trackers' services (W&B, MLflow)
      samples/           the sample stores evaluations read: one per checkpoint, count and options
      eval.json, eval.md the latest evaluation (and its plots)
      search/            a guidance search: one evaluation folder per setting, search.{json,md,csv,png,svg}
      previous/          earlier runs set aside by ``prakit train --no-resume``
      .train.lock        held while a process trains the run (:mod:`prakit.locks`)
      .eval.lock         held while a process evaluates into the folder

This module is the only one that spells these names. It imports neither torch nor a model:
the model of a run is loaded on request (:meth:`Run.model`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from prakit.errors import PrakitError
from prakit.io import check_shape, check_value, read_json

if TYPE_CHECKING:
    import torch

    from prakit.config import ExperimentConfig, SampleConfig
    from prakit.model import ARModel

#: The resolved config, in a run directory and in a model export (:mod:`prakit.exporting`).
CONFIG_FILE = "config.toml"
#: An evaluation's record, in a run directory or any folder an evaluation writes to.
EVAL_RECORD = "eval.json"
#: An evaluation's table, beside its record.
EVAL_TABLE = "eval.md"
#: Where a guidance search tabulates and draws its settings, in its folder (``.json``, ``.md``,
#: ``.csv``, and the chart's ``.png`` and ``.svg``).
SEARCH_TABLE = "search"
#: The lock file a command holds in the folder it writes (:mod:`prakit.locks`), by command.
LOCK_FILE = ".{}.lock"
#: The stages of a run, in order; a run's later stages start when its earlier ones succeed.
STAGES = ("train", "sample", "eval")


@attrs.frozen
class Run:
    """The run directory at ``path`` (which need not exist yet)."""

    path: Path = attrs.field(converter=Path)

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def grids_dir(self) -> Path:
        return self.path / "grids"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def trackers_record(self) -> Path:
        return self.path / "trackers.json"

    @property
    def eval_record(self) -> Path:
        return self.path / EVAL_RECORD

    @property
    def search_dir(self) -> Path:
        return self.path / "search"

    @property
    def search_record(self) -> Path:
        """The latest guidance search's table, as JSON."""
        return (self.search_dir / SEARCH_TABLE).with_suffix(".json")

    @property
    def previous_dir(self) -> Path:
        return self.path / "previous"

    @property
    def train_lock(self) -> Path:
        return self.path / LOCK_FILE.format("train")

    def exists(self) -> bool:
        """Whether ``path`` holds a run: a resolved config."""
        return self.config_file.is_file()

    def require(self) -> Run:
        """This run, or an error saying ``path`` is not one."""
        if not self.exists():
            raise PrakitError(f"{self.path} is not a run directory (no {self.config_file.name})")
        return self

    # the config

    def config(self, overrides: tuple[str, ...] | list[str] = ()) -> ExperimentConfig:
        from prakit.config import load_config

        return load_config(self.config_file, overrides)

    def config_data(self) -> dict[str, Any]:
        """The config file as written (nested plain data)."""
        from prakit.config.io import read_file

        return read_file(self.config_file)

    def computes_otherwise(self, cfg: ExperimentConfig) -> list[str]:
        """The dotted keys where the run's config and ``cfg`` differ in what the run computes (none
        where the run has no config yet)."""
        from prakit.config import unstructure
        from prakit.config.io import computation_changes

        return computation_changes(self.config_data(), unstructure(cfg)) if self.exists() else []

    def save_config(self, cfg: ExperimentConfig) -> None:
        from prakit.config import save_config

        save_config(cfg, self.config_file)

    # checkpoints

    def checkpoints(self) -> list[Path]:
        """Oldest first."""
        from prakit.training.checkpoint import list_checkpoints

        return list_checkpoints(self.checkpoint_dir)

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint that loads, or None."""
        from prakit.training.checkpoint import latest_checkpoint

        return latest_checkpoint(self.checkpoint_dir)

    def checkpoint(self) -> Path:
        """The newest checkpoint that loads, or an error saying there is none or that it belongs to
        another run (a config that computes otherwise than the run's)."""
        from prakit.config import unstructure
        from prakit.config.io import computation_changes
        from prakit.training.checkpoint import load_checkpoint

        found = self.latest_checkpoint()
        if found is None:
            raise PrakitError(f"{self.path} has no checkpoint under {self.checkpoint_dir}")
        written_by = json.loads(load_checkpoint(found, mmap=True)["config"])
        differs = computation_changes(written_by, unstructure(self.config())) if self.exists() else []
        if differs:
            raise PrakitError(f"{found} was written by another config than {self.config_file} (differs in: "
                              f"{', '.join(differs)}): move it out of {self.checkpoint_dir}, or name the file itself "
                              "to use it")
        return found

    def model(self, ema: str | None = None, device: torch.device | None = None) -> tuple[ARModel, ExperimentConfig, str | None]:
        """The model of the latest checkpoint for inference (see :func:`load_model`)."""
        return load_model(self.checkpoint(), ema, device or inference_device())

    # what the stages wrote

    def metrics(self) -> list[dict]:
        from prakit.training.metrics import read_metrics

        return read_metrics(self.metrics_file)

    def samples_path(self, checkpoint: Path, options: SampleConfig, num: int) -> Path:
        """``samples/<checkpoint>-n<num>-<digest of the sampling options>.zarr``: of the options that
        decide what is drawn, and the batch size, which names have always held."""
        from prakit.config import unstructure
        from prakit.config.schema import what_is_drawn

        named = {**what_is_drawn(unstructure(options)), "batch_size": options.batch_size}
        facts = json.dumps({"checkpoint": checkpoint.name, "num": num, "options": named}, sort_keys=True)
        digest = hashlib.blake2b(facts.encode(), digest_size=4).hexdigest()
        return self.path / "samples" / f"{checkpoint.name.removesuffix('.pt')}-n{num}-{digest}.zarr"

    def is_trained(self) -> bool:
        """Whether training wrote its last step's checkpoint."""
        from prakit.training.checkpoint import checkpoint_name

        if not self.exists():
            return False
        steps = self.config().train.steps
        return any((self.checkpoint_dir / checkpoint_name(steps, milestone)).is_file() for milestone in (False, True))

    def is_done(self, stage: str, num: int | None = None) -> bool:
        """Whether the run's ``stage`` (of :data:`STAGES`) has finished, read from its files; sampling
        and evaluation of ``num`` samples (default: the config's)."""
        if stage not in STAGES:
            raise PrakitError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        trained = self.is_trained()
        if stage == "train" or not trained:
            return trained
        from prakit.data.store import is_finished
        from prakit.eval.evaluate import evaluated, resolve

        target = resolve(self.path, num=num)
        return is_finished(target.samples) if stage == "sample" else evaluated(target) is not None


def is_lock(path: Path) -> bool:
    """Whether ``path`` is a lock file a command holds in a folder it writes."""
    return fnmatch.fnmatch(path.name, LOCK_FILE.format("*"))


#: The suffixes of experiment configs, which a command taking a run is sometimes given by mistake.
CONFIG_SUFFIXES = (".toml", ".json", ".yaml", ".yml")


def resolve_checkpoint(source: str | Path) -> Path:
    """What inference loads from ``source``: a checkpoint file, a model export (:mod:`prakit.exporting`)
    or the latest good checkpoint of a run directory."""
    from prakit.exporting import is_export

    source = Path(source)
    if is_export(source):
        return source
    if source.is_dir():
        return Run(source).require().checkpoint()
    if not source.exists():
        raise PrakitError(f"{source} is neither a run directory, a checkpoint file nor a model export")
    if source.suffix in CONFIG_SUFFIXES:
        raise PrakitError(f"{source} is an experiment config; prakit sample takes a run directory (runs/NAME) or a "
                          f"checkpoint file: train it first with `prakit train {source}`")
    return source


def choose_ema(cfg: ExperimentConfig, which: str) -> str | None:
    """``slow``/``fast``: the EMA with the largest/smallest decay; ``none``: live weights; else a name."""
    from prakit.training.ema import ema_name

    decays = cfg.optim.ema_decays
    if which == "none" or (which in ("slow", "fast") and not decays):
        return None
    if which == "slow":
        return ema_name(max(decays))
    if which == "fast":
        return ema_name(min(decays))
    return which


def checkpoint_config(checkpoint: Path) -> ExperimentConfig:
    """The config a checkpoint (of :func:`resolve_checkpoint`) was written by; a checkpoint file's
    tensors are mapped, not read."""
    from prakit.config import from_data, load_config
    from prakit.exporting import is_export
    from prakit.training.checkpoint import load_checkpoint

    if is_export(checkpoint):
        return load_config(checkpoint / CONFIG_FILE)
    return from_data(json.loads(load_checkpoint(checkpoint, mmap=True)["config"]))


@attrs.frozen
class Weights:
    """The weights inference loads, with what they belong to."""

    tensors: dict[str, torch.Tensor]  #: a state dict of the model
    config: ExperimentConfig  #: the config of the run that trained them
    ema: str | None  #: the EMA they are (``None``: the live weights)
    step: int  #: the training step they are of


def inference_weights(checkpoint: Path, ema: str | None) -> Weights:
    """The chosen weights of a checkpoint (of :func:`resolve_checkpoint`): an EMA's (see
    :func:`choose_ema`; ``None``: the run's ``sample.ema``) or the live ones. A checkpoint file is
    memory-mapped, so only these weights are ever read: not the optimizer's state, not the other EMAs."""
    from prakit.config import from_data
    from prakit.exporting import is_export, read_export
    from prakit.training.checkpoint import load_checkpoint

    if is_export(checkpoint):
        return read_export(checkpoint, ema)
    state = load_checkpoint(checkpoint, mmap=True)
    cfg = from_data(json.loads(state["config"]))
    ema = choose_ema(cfg, ema or cfg.sample.ema)
    if ema is not None and ema not in state["ema"]:
        raise PrakitError(f"{checkpoint} has no EMA {ema!r}; it has: {', '.join(state['ema']) or 'none'}")
    return Weights(state["model"] if ema is None else state["ema"][ema], cfg, ema, int(state["step"]))


def load_model(checkpoint: Path, ema: str | None, device: torch.device) -> tuple[ARModel, ExperimentConfig, str | None]:
    """The model of a checkpoint (of :func:`resolve_checkpoint`) for inference, in float32 with the
    chosen weights (:func:`inference_weights`), its config, and the name of the EMA loaded (``None``:
    live weights)."""
    from prakit.model import ARModel
    from prakit.training.checkpoint import load_weights

    weights = inference_weights(checkpoint, ema)
    model = ARModel.from_config(weights.config)
    load_weights(model, weights.tensors, checkpoint)  # cast to the model's float32 where exported in bf16
    return model.to(device).eval(), weights.config, weights.ema


def inference_device() -> torch.device:
    """Where sampling and evaluation run: the GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: What an evaluation record must hold for the commands that read it back (:data:`prakit.io.Shape`),
#: and how to redo it.
RECORD_SHAPE = {
    "run": (str, type(None)), "checkpoint": (str, type(None)), "device": str,
    "sampling": {"num": int, "ema": str, "cfg_scale": (int, float)},
    "reference": {"path": str, "kind": str},
    "numbers": dict, "higher_is_better": dict, "features": dict,
    "evaluators": [{"name": str, "config": dict, "numbers": dict, "curves": dict}],
    "samples?": {"count": int},
}
RECORD_FIX = "delete it and run the evaluation that wrote it again (`prakit eval`)"


def read_record(folder: Path) -> dict[str, Any] | None:
    """The evaluation record in ``folder`` (:func:`load_record`), or None where there is none."""
    path = Path(folder) / EVAL_RECORD
    return load_record(path) if path.exists() else None


def load_record(path: Path) -> dict[str, Any]:
    """The evaluation record ``path``, checked: a damaged one is a :class:`~prakit.io.DamagedFileError`."""
    record = read_json(path, RECORD_FIX, RECORD_SHAPE)
    for name, value in record["numbers"].items():
        check_value(path, value, (int, float, type(None)), RECORD_FIX, f"numbers.{name}")
    for name, value in record["higher_is_better"].items():
        check_value(path, value, bool, RECORD_FIX, f"higher_is_better.{name}")
    for name, value in record["features"].items():
        check_shape(path, value, {"held_out_accuracy?": (int, float)}, RECORD_FIX, f"features.{name}")
    return record
