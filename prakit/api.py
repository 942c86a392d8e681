"""prakit from Python: load a trained model and sample it, build a model by name, and run the
main jobs (train, sample, evaluate, export) as the command line runs them.

::

    import prakit

    model = prakit.load("runs/quickstart")             # its best device, its run's config
    prakit.export("runs/quickstart", "exports/quickstart")  # those weights alone in bf16, config, model card
    model = prakit.load("exports/quickstart")          # loads as the run does, in float32
    images = model.sample([0, 1, 2, 3])                # (4, H, W, C) uint8, the run's sampling section
    images = model.sample([7] * 8, cfg_scale=4.0, pil=True)

Overrides are keyword arguments named by their dotted config key with ``__`` for each dot
(``train__steps=100``), or a mapping unpacked into them (``**{"train.steps": 100}``).
This module imports torch only when one of its functions runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from prakit.errors import PrakitError

if TYPE_CHECKING:
    import torch

    from prakit.config import ExperimentConfig
    from prakit.model import ARModel
    from prakit.training.loop import RunResult


def load(source: str | Path, ema: str | None = None, device: str | torch.device | None = None) -> ARModel:
    """The model of a run directory (its latest checkpoint), a checkpoint file or a model export
    (:func:`export`), ready to sample, in float32.

    ``ema``: ``slow``, ``fast``, ``none`` (the live weights) or an EMA's name; by default the run's
    ``sample.ema`` (an export holds one set of weights: by default those). ``device``: by default
    the GPU when there is one. The model's ``config`` is its run's config and its ``sampling`` the
    run's ``sample`` section, whose ``ema`` names the weights loaded.
    """
    import attrs
    import torch

    from prakit.run import inference_device, load_model, resolve_checkpoint

    model, _, loaded = load_model(resolve_checkpoint(source), ema, torch.device(device) if device else inference_device())
    model.sampling = attrs.evolve(model.sampling, ema=loaded or "none")
    return model


def export(source: str | Path, out: str | Path, *, ema: str | None = None, dtype: str = "bf16",
           force: bool = False) -> Path:
    """Write the weights of a run (``ema`` as in :func:`load`) as ``dtype`` (``bf16`` or ``fp32``)
    into the folder ``out`` with its config and a model card, as ``prakit export`` does."""
    from prakit.exporting import export as export_run

    return export_run(source, out, ema=ema, dtype=dtype, force=force)


def list_models() -> list[str]:
    """The model presets installed plugins declare (``model.preset``), by name."""
    from prakit.presets import model_presets

    return sorted(model_presets())


def create_model(preset_or_config: str | Path, **overrides: Any) -> ARModel:
    """A new model at random initialisation: a preset by name (:func:`list_models`; on its defaults
    for the data, ImageNet at 256x256) or the model of an experiment config file, with overrides
    (``data__image_size=64``, ``model__backbone__depth=4``)."""
    from prakit.config import from_data, load_config
    from prakit.model import ARModel
    from prakit.run import CONFIG_SUFFIXES

    changes = keyword_overrides(overrides)
    source = Path(preset_or_config)
    if source.suffix in CONFIG_SUFFIXES:
        return ARModel.from_config(load_config(source, changes))
    presets = list_models()
    if str(preset_or_config) not in presets:
        raise PrakitError(f"{preset_or_config!r} is neither a model preset ({', '.join(presets)}) "
                          "nor an experiment config file (.toml, .json, .yaml)")
    cfg = from_data({"model": {"preset": str(preset_or_config)}, "data": {"store": "none"}}, changes,
                    source=f"preset {preset_or_config}")
    return ARModel.from_config(cfg)


def train(config: str | Path | ExperimentConfig, run_dir: str | Path | None = None, *, resume: bool = True,
          force: bool = False, progress: bool = True, **overrides: Any) -> RunResult:
    """Train as ``prakit train`` does: ``config`` (a file or an :class:`ExperimentConfig`) with
    overrides, in ``run_dir`` (default: ``runs/<config file's name>``), resuming its latest checkpoint."""
    from prakit.cli.paths import default_run_dir
    from prakit.training.loop import train as train_run

    cfg = experiment_config(config, keyword_overrides(overrides))
    if run_dir is None:
        if not isinstance(config, (str, Path)):
            raise PrakitError("train(config, run_dir): give run_dir where the config is not a file")
        run_dir = default_run_dir(config)
    return train_run(cfg, run_dir, resume=resume, force=force, progress=progress)


def sample(source: str | Path, out: str | Path, num: int, *, classes: Sequence[int] | None = None,
           restart: bool = False, progress: bool = True, **options: Any) -> Path:
    """Draw ``num`` images of a run or checkpoint into the sample store ``out`` as ``prakit sample``
    does (resumable; classes balanced), with the run's ``sample`` section changed by ``options``
    (``cfg_scale=3.0``)."""
    from prakit.sampling import sample_run, sampling_options

    return sample_run(source, out, num=num, options=sampling_options(source, options), classes=classes,
                      restart=restart, progress=progress)


def evaluate(target: str | Path, *, num: int | None = None, evaluators: Sequence[str] | None = None,
             reference: str | None = None, out: str | Path | None = None, progress: bool = True,
             **overrides: Any) -> dict[str, Any]:
    """Evaluate a run (sampling first if needed) or a sample store as ``prakit eval`` does, with
    ``sample``/``eval`` overrides (``sample__cfg_scale=3.0``); the record ``eval.json`` holds, its
    numbers under ``"numbers"``."""
    from prakit.eval.evaluate import evaluate as evaluate_target
    from prakit.eval.evaluate import resolve

    target_ = resolve(target, keyword_overrides(overrides), num=num, out=out)
    return evaluate_target(target_, evaluators=evaluators, reference=reference, progress=progress)


def keyword_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword overrides as dotted keys: ``train__steps`` -> ``train.steps``."""
    return {key.replace("__", "."): value for key, value in overrides.items()}


def experiment_config(config: str | Path | ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A config file or config object with ``overrides`` applied."""
    from prakit.config import ExperimentConfig, from_data, load_config, unstructure

    if isinstance(config, ExperimentConfig):
        return from_data(unstructure(config), overrides) if overrides else config
    return load_config(config, overrides)
