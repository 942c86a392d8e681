"""Training checkpoints: atomic saves, rotation with milestones kept, and safe loading.

A checkpoint is ``ckpt-{step:08d}.pt``, or ``ckpt-{step:08d}.milestone.pt`` for a milestone,
which rotation never deletes. Saves go to a hidden temporary file ``.ckpt-*.tmp`` in the same
directory that is fsynced and then renamed, so a kill mid-save leaves every earlier checkpoint
intact; listing ignores such leftovers and the next save removes them. One process writes to a
directory at a time (rank 0 in a distributed run).

Checkpoints hold tensors, state dicts and plain Python values only, and are always read with
``torch.load(..., weights_only=True)``: loading one never runs code stored in it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from prakit.errors import PrakitError
from prakit.io import atomic_file

REQUIRED_KEYS = ("step", "model", "config")
NAME = re.compile(r"ckpt-(\d{8,})(\.milestone)?\.pt")
TEMP_GLOB = ".ckpt-*.tmp"


class CheckpointError(PrakitError):
    """A checkpoint file cannot be used: missing, truncated, corrupt, unsafe or incomplete."""


class MisnamedCheckpointError(CheckpointError):
    """A checkpoint whose file name says another step than it holds: never skipped, since resuming
    past it would start from the wrong step and rotation would delete by the wrong order."""


def checkpoint_name(step: int, milestone: bool = False) -> str:
    """The file name of the checkpoint at ``step``."""
    return f"ckpt-{step:08d}{'.milestone' if milestone else ''}.pt"


def save_checkpoint(
    directory: str | os.PathLike, step: int, state: dict[str, Any], *, keep_last: int, milestone: bool = False
) -> Path:
    """Write ``state`` as the checkpoint at ``step`` atomically, then delete the non-milestone
    checkpoints older than the newest ``keep_last`` of all; returns the new file's path.

    ``state`` must hold ``"step"``, ``"model"`` and ``"config"`` and nothing that
    ``weights_only`` loading refuses (checked before the file takes its final name).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {', '.join(missing)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(TEMP_GLOB):
        leftover.unlink(missing_ok=True)
    path = directory / checkpoint_name(step, milestone)
    with atomic_file(path, "wb", check=refuse_unsafe_globals) as f:
        torch.save(state, f)
    _prune(directory, keep_last, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (``mmap``: its tensors mapped, not read); any
    problem raises :class:`CheckpointError`."""
    return _load(Path(path), map_location, mmap=mmap)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint in ``directory`` that loads cleanly, or None if it holds none.

    Newer ones that fail to load are skipped with a warning naming them; when every one fails,
    :class:`CheckpointError` names them all and the choices.
    """
    bad = []
    for path in reversed(list_checkpoints(directory)):
        try:
            _load(path, "cpu", mmap=True)  # maps the tensors instead of reading them
        except MisnamedCheckpointError:
            raise
        except CheckpointError as exc:
            bad.append(str(exc).split("; ")[0])
            continue
        for reason in bad:
            warnings.warn(f"skipping a bad checkpoint: {reason}; resuming from {path.name}", stacklevel=2)
        return path
    if bad:
        raise CheckpointError(
            f"every checkpoint in {directory} fails to load ({'; '.join(bad)}); train with --no-resume to start "
            f"afresh (the earlier run is set aside, not deleted), or put a good checkpoint back"
        )
    return None


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The checkpoints in ``directory``, oldest first (by step; at one step, a milestone last)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if NAME.fullmatch(p.name)), key=_order)


def last_finite_checkpoint(newest: Path, parameters: Iterable[str]) -> Path | None:
    """The newest checkpoint up to ``newest`` whose model ``parameters`` (their names) are all finite,
    each read back to check (mapped, not loaded), or None. Buffers may hold NaN by design."""
    for path in reversed(list_checkpoints(newest.parent)):
        if _order(path) > _order(newest):
            continue
        try:
            weights = load_checkpoint(path, mmap=True)["model"]
            if finite({name: weights[name] for name in parameters if name in weights}):
                return path
        except CheckpointError:
            continue
    return None


def finite(weights: dict[str, Any]) -> bool:
    """Whether every floating-point tensor of ``weights`` (a name -> tensor mapping) is finite."""
    return all(torch.isfinite(value).all() for value in weights.values()
               if isinstance(value, torch.Tensor) and value.is_floating_point())


def is_milestone(path: Path) -> bool:
    """Whether ``path`` names a milestone checkpoint, which rotation keeps."""
    return path.name.endswith(".milestone.pt")


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint's file name says it holds."""
    return int(NAME.fullmatch(path.name)[1])


def _order(path: Path) -> tuple[int, bool]:
    return checkpoint_step(path), is_milestone(path)


def _load(path: Path, map_location: Any, *, mmap: bool) -> dict[str, Any]:
    retry = "delete it: a run then resumes from the previous checkpoint"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is not a complete archive (an interrupted copy or save, or not a checkpoint); {retry}"
        )
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read the archive is a bad checkpoint
        raise CheckpointError(f"checkpoint {path} is corrupt ({first_line(exc)}); {retry}") from exc
    if unsafe:
        raise CheckpointError(
            f"checkpoint {path} holds code references that are refused for safety ({', '.join(sorted(unsafe))}); "
            f"prakit never writes these, so the file was tampered with or comes from elsewhere; "
            f"do not load it with weights_only=False; {retry}"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:  # its message advises weights_only=False: not repeated here
        raise CheckpointError(
            f"checkpoint {path} holds data that weights-only loading refuses (damaged, tampered with or not "
            f"written by prakit); do not load it with weights_only=False; {retry}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({first_line(exc)}); {retry}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a prakit checkpoint; {retry}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: not a prakit checkpoint; {retry}")
    check_contents(path, state, retry)
    return state


def check_contents(path: Path, state: dict[str, Any], retry: str) -> None:
    """Refuse a checkpoint whose step is not a whole number at least 0 or disagrees with its file
    name, whose weights are not a state dict, or whose config is not a JSON object; the step is
    made a Python int."""
    step = state["step"]
    if isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_floating_point():
        step = int(step)
    if type(step) is not int or step < 0:
        raise CheckpointError(f"checkpoint {path} holds step {step!r}, not a whole number at least 0; {retry}")
    state["step"] = step
    if NAME.fullmatch(path.name) and checkpoint_step(path) != step:
        raise MisnamedCheckpointError(
            f"checkpoint {path} holds step {step} but is named for step {checkpoint_step(path)}: rename it "
            f"{checkpoint_name(step, is_milestone(path))}, or move it out of {path.parent}")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state['model']).__name__} where the model's weights "
                              f"belong; {retry}")
    try:
        config = json.loads(state["config"]) if isinstance(state["config"], str) else None
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} holds no readable config (a JSON object as text); {retry}")


def load_weights(module: torch.nn.Module, weights: dict[str, Any], source: str | os.PathLike) -> None:
    """``module.load_state_dict(weights)``; weights of another shape raise :class:`CheckpointError`."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        misfit = _misfit(module, weights) or first_line(exc)
        raise CheckpointError(
            f"checkpoint {source} does not fit the model its config builds ({misfit}); "
            "it was written by another version of the model's plugins, or edited"
        ) from None


def _misfit(module: torch.nn.Module, weights: dict[str, Any]) -> str:
    """The keys of ``weights`` that ``module`` lacks, those it has and they lack, and those of another
    shape, each list cut after a few with a count: ``missing: a, b, c and 2 more; unexpected: ...``."""
    own = module.state_dict()
    shapes = {key: (_shape(weights[key]), _shape(value)) for key, value in own.items() if key in weights}
    misfits = {
        "missing": [key for key in own if key not in weights],
        "unexpected": [key for key in weights if key not in own],
        "of another shape": [f"{key} {theirs} (the model's {ours})" for key, (theirs, ours) in shapes.items()
                             if theirs != ours],
    }
    return "; ".join(f"{what}: {_few(keys)}" for what, keys in misfits.items() if keys)


def _shape(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return "a scalar" if shape == () else "x".join(map(str, shape)) if shape is not None else type(value).__name__


def _few(items: list[str], shown: int = 3) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _prune(directory: Path, keep_last: int, new: Path) -> None:
    """Delete non-milestone checkpoints older than the newest ``keep_last``, never ``new``."""
    for path in list_checkpoints(directory)[:-keep_last]:
        if path != new and not is_milestone(path):
            path.unlink(missing_ok=True)


def refuse_unsafe_globals(path: Path) -> None:
    """Refuse a checkpoint file that ``weights_only`` loading would not read back."""
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if unsafe:
        raise TypeError(f"checkpoint state holds objects weights-only loading refuses: {', '.join(sorted(unsafe))}")


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
