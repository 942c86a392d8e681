"""Model exports: the weights inference needs, without the optimizer's state or the other EMAs.

::

    EXPORT_DIR/
      model.safetensors   one set of weights (an EMA's or the live ones) in bf16 or fp32; its
                          metadata names them: ema, dtype, step, checkpoint
      config.toml         the run's resolved config; its sample.ema names the weights held
      README.md           the model card: components, parameters, training steps, evaluation numbers

An export loads wherever a checkpoint does (``prakit.load``, ``prakit sample``), into a float32
model: bf16 weights are cast on loading. It is written into a temporary folder beside
``EXPORT_DIR`` and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from prakit.errors import PrakitError
from prakit.io import atomic_folder
from prakit.run import CONFIG_FILE, Run, Weights, choose_ema, inference_weights, read_record, resolve_checkpoint

WEIGHTS = "model.safetensors"
CARD = "README.md"
DTYPES = ("bf16", "fp32")


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a model export folder."""
    path = Path(path)
    return (path / WEIGHTS).is_file() and (path / CONFIG_FILE).is_file()


def export(source: str | Path, out: str | Path, *, ema: str | None = None, dtype: str = "bf16",
           force: bool = False) -> Path:
    """Write the weights of ``source`` (a run directory, a checkpoint file or an export) chosen by
    ``ema`` (``slow``, ``fast``, ``none`` or a name; default the run's ``sample.ema``) as ``dtype``
    into the export folder ``out``, with the config and a model card. A folder ``out`` that holds
    other files is replaced only with ``force``."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from prakit.config import SampleConfig, save_config, with_options

    if dtype not in DTYPES:
        raise PrakitError(f"--dtype must be {' or '.join(DTYPES)}, got {dtype!r}")
    if ema is not None:
        with_options(SampleConfig(), {"ema": ema}, lambda key: f"--{key}")
    checkpoint = resolve_checkpoint(source)
    out = Path(out)
    check_destination(out, checkpoint, force)
    weights = inference_weights(checkpoint, ema)
    held = weights.ema or "none"
    cfg = attrs.evolve(weights.config, sample=attrs.evolve(weights.config.sample, ema=held))
    cast = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    tensors = {key: value.to(cast) if value.is_floating_point() else value for key, value in weights.tensors.items()}
    metadata = {"format": "pt", "ema": held, "dtype": dtype, "step": str(weights.step), "checkpoint": checkpoint.name}
    with atomic_folder(out) as folder:
        try:
            save_file(tensors, folder / WEIGHTS, metadata=metadata)
        except SafetensorError as exc:  # the file system's refusal, worded by safetensors
            raise PrakitError(f"cannot write {out}: {exc}") from None
        save_config(cfg, folder / CONFIG_FILE)
        (folder / CARD).write_text(model_card(out, weights, dtype, (folder / WEIGHTS).stat().st_size, checkpoint))
    return out


def check_destination(out: Path, checkpoint: Path, force: bool) -> None:
    """Refuse an ``out`` that is a file, holds the checkpoint, or holds other files (unless ``force``)."""
    if out.exists() and not out.is_dir():
        raise PrakitError(f"--out {out} is a file; an export is a folder: choose another --out")
    if checkpoint.resolve().is_relative_to(out.resolve()):
        raise PrakitError(f"--out {out} holds the checkpoint being exported; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not is_export(out) and not force:
        raise PrakitError(f"--out {out} holds files and is not a model export; choose another folder, "
                          "or pass --force to replace it")


def read_export(path: Path, ema: str | None) -> Weights:
    """The weights of the export ``path``, if they are those ``ema`` chooses (default: the ones held)."""
    from safetensors.torch import load_file

    from prakit.config import load_config

    cfg = load_config(path / CONFIG_FILE)
    metadata = read_metadata(path)
    held = metadata["ema"]
    wanted = choose_ema(cfg, ema or held) or "none"
    if wanted != held:
        raise PrakitError(f"the export {path} holds the {held} weights only, not {wanted}; "
                          f"export the run again with --ema {ema}")
    return Weights(load_file(path / WEIGHTS), cfg, None if held == "none" else held, int(metadata["step"]))


def read_metadata(path: Path) -> dict[str, str]:
    """What the export ``path`` says of its weights: ema, dtype, step, checkpoint."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path / WEIGHTS, framework="pt") as f:
            metadata = f.metadata() or {}
    except SafetensorError as exc:
        raise PrakitError(f"{path / WEIGHTS} cannot be read ({exc}); export the run again") from None
    missing = [key for key in ("ema", "dtype", "step", "checkpoint") if key not in metadata]
    if missing:
        raise PrakitError(f"{path / WEIGHTS} does not say its {', '.join(missing)}: not a prakit export; "
                          "export the run again")
    return metadata


def evaluation(checkpoint: Path) -> dict[str, Any] | None:
    """The evaluation record of the run that holds ``checkpoint``, if it has one."""
    run = Run(checkpoint.parent.parent)
    return read_record(run.path) if checkpoint.parent == run.checkpoint_dir and run.exists() else None


def model_card(out: Path, weights: Weights, dtype: str, size: int, checkpoint: Path) -> str:
    """The export's README.md: what the model is, how big, how trained, how good (the evaluation
    of its run, if any), how to load it."""
    from prakit.eval.evaluate import heading, numbers_table
    from prakit.eval.report import markdown_table
    from prakit.summary import summarize

    cfg = weights.config
    summary = summarize(cfg, flops=False)
    params, components = summary["parameters"], summary["components"]
    rows = [[kind, name, f"{params[kind]:,}"] for kind, name in components.items()] + [["total", "", f"{params['total']:,}"]]
    h, w, c = summary["image"]
    which = f"the EMA {weights.ema}" if weights.ema else "the live (not averaged)"
    lines = [
        f"# {out.name}", "", *([cfg.description, ""] if cfg.description else []),
        f"A prakit model: {h}x{w}x{c} images of {cfg.data.num_classes} classes, {summary['seq_len']} tokens of "
        f"{summary['patch_size']}x{summary['patch_size']} pixels. Trained {weights.step:,} steps "
        f"(of `train.steps = {cfg.train.steps:,}`); `{WEIGHTS}` holds {which} weights in {dtype} "
        f"({size / 2**20:,.1f} MiB), from `{checkpoint.name}`; `{CONFIG_FILE}` is the run's config.", "",
        markdown_table(["component", "name", "parameters"], rows), "",
        "## Evaluation", "",
    ]
    record = evaluation(checkpoint)
    if record is None:
        lines.append("Not evaluated: the run has no evaluation record.")
    else:
        evaluated = Path(record["checkpoint"] or "").name
        other = f" (evaluated at `{evaluated}`, not the exported `{checkpoint.name}`)" if evaluated != checkpoint.name else ""
        lines += [heading(record).replace("\n", "; ") + other, "", markdown_table(*numbers_table(record))]
    lines += [
        "", "## Loading", "", "```python", "import prakit", "",
        f'model = prakit.load("{out}")  # float32, on the GPU if there is one',
        "images = model.sample([0, 1, 2, 3])  # (4, H, W, C) uint8", "```", "",
        f"or `prakit sample {out} --num 100 --out samples.zarr`.", "",
    ]
    return "\n".join(lines)


def describe(path: Path) -> str:
    """One line on an export: its weights, dtype, size and step."""
    metadata = read_metadata(path)
    return (f"{metadata['ema']} weights of {metadata['checkpoint']} (step {metadata['step']}) in "
            f"{metadata['dtype']}, {(path / WEIGHTS).stat().st_size / 2**20:,.1f} MiB")
