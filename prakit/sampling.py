"""``prakit sample``: draw images from a trained run into a resumable sample store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import attrs
import torch

from prakit.config import SampleConfig, unstructure, with_options
from prakit.config.schema import what_is_drawn
from prakit.errors import PrakitError
from prakit.locks import exclusive
from prakit.progress import Progress
from prakit.random import sample_generators
from prakit.run import checkpoint_config, inference_device, load_model, resolve_checkpoint
from prakit.threads import cpu_threads


def sampling_options(source: str | Path, changes: dict[str, Any]) -> SampleConfig:
    """The ``sample`` section of the run that wrote ``source`` (a run directory or a checkpoint),
    with ``changes``."""
    return with_options(checkpoint_config(resolve_checkpoint(source)).sample, changes)


def balanced_labels(indices: Sequence[int], num: int, classes: Sequence[int]) -> torch.Tensor:
    """Sample i of ``num`` gets class ``classes[i * len(classes) // num]``: equal contiguous blocks."""
    return torch.tensor([classes[i * len(classes) // num] for i in indices])


def sample_run(
    source: str | Path,
    out: str | Path,
    *,
    num: int,
    options: SampleConfig | None = None,
    classes: Sequence[int] | None = None,
    restart: bool = False,
    shard: int = 0,
    shards: int = 1,
    progress: bool = True,
) -> Path:
    """Fill the sample store ``out`` with ``num`` images; a rerun continues where it stopped.

    With ``shards`` > 1 this process draws only its share (``shard`` of ``shards``); processes
    sharing the store fill it together, the last to finish finishing it.

    ``options`` are how to draw them (default: the run's ``sample`` section; :func:`sampling_options`
    changes some of its fields). A store made from another checkpoint or with options that draw
    other samples is refused, or deleted first with ``restart``. The store records the options
    used and the EMA weights loaded (``ema = "none"`` when the run has no EMA).
    """
    from prakit.data import SampleStore
    from prakit.data.samples import SampleMismatchError, writer_lock

    if num < 1:
        raise PrakitError(f"num must be at least 1, got {num}")
    if not 0 <= shard < shards:
        raise PrakitError(f"shard must be in [0, {shards}), got {shard}")
    checkpoint = resolve_checkpoint(source)
    device = inference_device()
    model, cfg, loaded = load_model(checkpoint, options.ema if options else None, device)
    options = options or cfg.sample
    if loaded is None:
        options = attrs.evolve(options, ema="none")
    model.compile_sampling(options.compile)
    batch_size = options.batch_size
    classes = list(classes) if classes else list(range(cfg.data.num_classes))
    model.check_classes(classes)
    size, channels = cfg.data.image_size, cfg.data.channels
    facts = {
        "config": unstructure(cfg),
        "checkpoint": str(checkpoint.resolve()),
        "sampling": {"ema_weights": loaded or "none", "classes": classes,
                     **what_is_drawn(unstructure(options))},
    }
    out = Path(out)
    with exclusive(writer_lock(out, shard, shards), f"sample store {out} (shard {shard} of {shards})"):
        try:
            store = SampleStore.open(out, num=num, image_shape=(size, size, channels), attrs=facts,
                                     on_mismatch="restart" if restart else "error")
        except SampleMismatchError as exc:
            raise SampleMismatchError(exc.problem, "rerun with --restart to delete them and start over, "
                                                   "or choose another --out") from None
        todo = store.missing(batch_size, rank=shard, world_size=shards)
        bar = Progress("sample", num, initial=num - sum(map(len, todo)), unit="images", enabled=progress)
        with cpu_threads(device):
            for indices in todo:
                labels = balanced_labels(indices, num, classes)  # model.sample moves them to its device
                images = model.sample(labels, options, rng=sample_generators(options.seed, indices))
                store.write(indices, images.cpu().numpy(), labels.numpy())
                bar.update(len(indices))
        bar.close()
    return out
