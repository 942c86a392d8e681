"""``prakit eval``: a run or a sample store -> numbers, ``eval.json``, a table and plots.

Given a run directory, the samples are drawn first (``prakit sample``'s resumable store, under
``RUN_DIR/samples/``, named after the checkpoint, the count and the sampling options), but
only if an evaluator needs them. The reference defaults to the run's own training store.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any, Sequence

import attrs
import torch

from prakit import __version__, registry
from prakit.config import ExperimentConfig, SampleConfig, from_data, structure, unstructure
from prakit.config.io import Overrides
from prakit.config.schema import what_is_drawn
from prakit.data.store import is_finished, open_store, read_attrs
from prakit.errors import PrakitError
from prakit.eval.context import EvalContext
from prakit.eval.features import MIN_IMAGES
from prakit.eval.reference import open_reference
from prakit.eval.report import markdown_table, text_table, write_json
from prakit.exporting import is_export
from prakit.io import atomic_write_text
from prakit.kinds import EvaluatorConfig
from prakit.locks import exclusive
from prakit.plots import line_plot
from prakit.run import EVAL_RECORD, EVAL_TABLE, LOCK_FILE, Run, read_record

#: The config sections an evaluation may override: how to sample and what to compute, never the model.
OVERRIDABLE = ("sample", "eval")


@attrs.frozen
class Target:
    """What is evaluated: the run's config, where the samples are (or go), how they are drawn."""

    config: ExperimentConfig
    samples: Path
    checkpoint: Path | None
    options: SampleConfig
    num: int
    out: Path
    run_dir: Path | None = None


def resolve(path: str | Path, overrides: Overrides = (), *, num: int | None = None,
            out: str | Path | None = None) -> Target:
    """A run directory (its latest checkpoint) or a sample store (of a checkpoint or a model export),
    with ``sample.*``/``eval.*`` overrides."""
    path = Path(path)
    if num is not None and num < MIN_IMAGES:
        raise PrakitError(f"--num must be at least {MIN_IMAGES} (feature moments need {MIN_IMAGES} samples), got {num}")
    bad = [o for o in overrides if o.split(".", 1)[0] not in OVERRIDABLE]
    if bad:
        raise PrakitError(f"prakit eval can change only the {' and '.join(OVERRIDABLE)} sections, not {', '.join(bad)}: "
                          "a different model is a different run")
    if is_export(path):
        raise PrakitError(f"{path} is a model export: sample it (`prakit sample {path} --num N --out STORE`) and "
                          "evaluate the store")
    run = Run(path)
    if run.exists():
        cfg = run.config(overrides)
        checkpoint = run.checkpoint()
        num = num or cfg.eval.num or cfg.sample.num
        if num < MIN_IMAGES:
            raise PrakitError(f"{path} evaluates sample.num = {num} sample; feature moments need {MIN_IMAGES}: "
                              f"give --num {MIN_IMAGES} or more")
        return Target(cfg, run.samples_path(checkpoint, cfg.sample, num), checkpoint, cfg.sample, num,
                      Path(out) if out else path, run_dir=path)
    if not (path / "zarr.json").is_file():
        raise PrakitError(f"{path} is neither a run directory (with {run.config_file.name}) nor a sample store")
    attrs_ = read_attrs(path)
    if attrs_.get("kind") != "samples":
        raise PrakitError(f"{path} is a store of real images, not of samples: evaluate a run directory or a "
                          "sample store, and give real images as --ref")
    if any(o.startswith("sample.") for o in overrides) or (num and num != attrs_["num"]):
        raise PrakitError(f"{path} holds {attrs_['num']} samples already drawn; to sample otherwise, evaluate the run")
    cfg = from_data(attrs_["config"], overrides)
    options = structure({k: v for k, v in attrs_["sampling"].items() if k in attrs.fields_dict(SampleConfig)},
                        SampleConfig)
    checkpoint = Path(attrs_["checkpoint"])
    return Target(cfg, path, checkpoint if checkpoint.is_file() or is_export(checkpoint) else None, options, attrs_["num"],
                  Path(out) if out else path.with_name(f"{path.name}.eval"))


def same_samples(record: dict[str, Any], target: Target) -> bool:
    """Whether the evaluation ``record`` (``eval.json``) was made of the samples ``target`` draws."""
    recorded = what_is_drawn(record.get("sampling", {}))
    return recorded == json.loads(json.dumps({**what_is_drawn(unstructure(target.options)), "num": target.num}))


def evaluated(target: Target) -> dict[str, Any] | None:
    """The evaluation record in ``target.out``, if it holds the numbers of the samples ``target``
    names: those of its checkpoint, drawn with its options, as many (wherever the run directory
    was then)."""
    record = read_record(target.out)
    if record is None or Path(record.get("checkpoint") or "").name != target.checkpoint.name:
        return None
    return record if same_samples(record, target) else None


def evaluator_configs(cfg: ExperimentConfig, names: Sequence[str] | None = None) -> list[EvaluatorConfig]:
    """The evaluators named (with their defaults), else the config's, else those in the default set
    (``Evaluator.in_default_set``: fid and precision_recall among the built-ins)."""
    evaluators = registry.get("evaluator")
    if names:
        return [evaluators.config(name) for name in names]
    return list(cfg.eval.evaluators) or [evaluators.config(entry.name) for entry in evaluators.entries()
                                         if getattr(entry.builder, "in_default_set", False)]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def evaluate(target: Target, *, evaluators: Sequence[str] | None = None, reference: str | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Run the evaluators on ``target``; write ``eval.json``, ``eval.md`` and the plots into
    ``target.out``; return what ``eval.json`` holds."""
    from prakit.run import inference_device, load_model
    from prakit.sampling import sample_run

    cfg = target.config
    configs = evaluator_configs(cfg, evaluators)
    built = [registry.build(c) for c in configs]  # a bad name fails before any work
    device = inference_device()
    ref = open_reference(reference or cfg.eval.reference or cfg.data.store)
    ref.fits((cfg.data.image_size, cfg.data.image_size, cfg.data.channels), cfg.data.num_classes)  # before sampling
    checkpoint = target.checkpoint

    def draw_samples():
        if not is_finished(target.samples):
            if checkpoint is None:
                raise PrakitError(f"the samples at {target.samples} are unfinished and their checkpoint is gone")
            sample_run(checkpoint, target.samples, num=target.num, options=target.options, progress=progress)
        return open_store(target.samples)

    def model():
        return load_model(checkpoint, target.options.ema, device)[0]

    with exclusive(target.out / LOCK_FILE.format("eval"), f"the evaluation in {target.out}"):
        ctx = EvalContext(cfg.eval, reference=ref, samples=draw_samples, model=model if checkpoint else None,
                          real=cfg.data.store, sample_options=target.options, device=device, progress=progress)
        record: dict[str, Any] = {
            "prakit": __version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "run": str(target.run_dir) if target.run_dir else None,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "sampling": {**unstructure(target.options), "num": target.num},
            "reference": ref.describe(), "device": device_name(device),
            "numbers": {}, "higher_is_better": {}, "evaluators": [],
        }
        for c, evaluator in zip(configs, built):
            start = time.perf_counter()
            result = evaluator.evaluate(ctx)
            numbers, curves = split_result(c.name, result)
            clash = set(numbers) & set(record["numbers"])
            if clash:
                raise PrakitError(f"evaluator {c.name!r} reports {', '.join(sorted(clash))} again: give the two "
                                  "evaluators different feature networks, or drop one")
            record["numbers"].update(numbers)
            record["higher_is_better"].update(directions(evaluator, numbers))
            record["evaluators"].append({"name": c.name, "config": unstructure(c), "numbers": numbers,
                                         "curves": curves, "seconds": round(time.perf_counter() - start, 3)})
        samples = ctx.drawn_samples()
        if samples is not None:
            record["samples"] = {"path": str(target.samples), "count": len(samples),
                                 "fingerprint": samples.attrs["fingerprint"]}
        record["features"] = ctx.networks()
        write_outputs(record, target.out, samples)
    if target.run_dir is not None and target.out == target.run_dir and checkpoint is not None:
        track(cfg, target.run_dir, record["numbers"], checkpoint)
    return record


def track(cfg: ExperimentConfig, run_dir: Path, numbers: dict[str, float], checkpoint: Path) -> None:
    """A run's evaluation numbers to its trackers (``train.trackers``), as ``eval/NAME`` at the
    checkpoint's step."""
    from prakit.tracking import Trackers
    from prakit.training.checkpoint import checkpoint_step

    if cfg.train.trackers:
        trackers = Trackers(cfg, run_dir, resume_step=None)
        trackers.log_scalars({f"eval/{name}": value for name, value in numbers.items()}, checkpoint_step(checkpoint))
        trackers.finish()


def split_result(name: str, result) -> tuple[dict[str, float], dict[str, list[float]]]:
    """An evaluator's result as (numbers, curves); anything else is the plugin's error."""
    numbers, curves = {}, {}
    for key, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = float(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            curves[key] = [float(v) for v in value]
        else:
            raise PrakitError(f"evaluator {name!r} returned {key} = {value!r}; an evaluator returns numbers and lists of numbers")
    return numbers, curves


def directions(evaluator, numbers: dict[str, float]) -> dict[str, bool]:
    """Whether higher is better, for each number the evaluator declares (``fid@featnet`` as ``fid``)."""
    declared = evaluator.higher_is_better
    return {k: declared[k.split("@")[0]] for k in numbers if k.split("@")[0] in declared}


def write_outputs(record: dict[str, Any], out: Path, samples) -> None:
    """One plot per evaluator with curves, a grid of the samples, ``eval.md`` and ``eval.json``
    (last, listing the others under ``written``)."""
    from prakit.data import export_grid

    out.mkdir(parents=True, exist_ok=True)
    paths = [path for entry in record["evaluators"] if entry["curves"]
             for path in line_plot({k: (range(len(v)), v) for k, v in entry["curves"].items()},
                                   out / f"{entry['name']}.png", title=entry["name"], xlabel="token position")]
    if samples is not None:
        paths.append(export_grid(samples.path, out / "samples.png"))
    atomic_write_text(out / EVAL_TABLE, heading(record) + "\n\n" + markdown_table(*numbers_table(record)))
    record["written"] = [str(p) for p in (out / EVAL_RECORD, out / EVAL_TABLE, *paths)]
    write_json(record, out / EVAL_RECORD)


def numbers_table(record: dict[str, Any]) -> tuple[list[str], list[list]]:
    return ["number", "value"], [[k, v] for k, v in record["numbers"].items()]


def heading(record: dict[str, Any]) -> str:
    """Two lines saying what was evaluated against what."""
    s, ref = record["sampling"], record["reference"]
    what = f"{record.get('samples', {}).get('count', s['num']):,} samples" if "samples" in record else "the model"
    networks = ", ".join(
        f"{name}" + (f" (held-out accuracy {info['held_out_accuracy']:.1%})" if "held_out_accuracy" in info else "")
        for name, info in record["features"].items()
    )
    source = record["run"] or record["checkpoint"] or ""
    return (f"{what} of {source} (ema {s['ema']}, guidance {s['cfg_scale']:g}, {record['device']})\n"
            f"reference {ref['path']} ({ref['kind']})" + (f"; features: {networks}" if networks else ""))


def format_record(record: dict[str, Any]) -> str:
    """The terminal table ``prakit eval`` prints."""
    return heading(record) + "\n" + text_table(*numbers_table(record))
