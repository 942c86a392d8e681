"""Weights & Biases: one W&B run per run directory, resumed across restarts and evaluations."""

from __future__ import annotations

import os
from typing import Any, ClassVar, Mapping

import attrs
import numpy as np
from attrs.validators import in_, optional

from prakit.plugin_api import PrakitError, Tracker, TrackerConfig, remembered_id

MODES = ("online", "offline", "disabled")


@attrs.frozen
class WandBConfig(TrackerConfig):
    """``mode``: online, offline (synced later with ``wandb sync``) or disabled; None: $WANDB_MODE,
    else online. The W&B run is named after the run directory and keeps its id in it."""

    name: ClassVar[str] = "wandb"
    project: str = "prakit"
    entity: str | None = None
    mode: str | None = attrs.field(default=None, validator=optional(in_(MODES)))
    tags: tuple[str, ...] = ()


class WandB(Tracker):
    """Weights & Biases: scalars, the config, sample grids, evaluation numbers, one W&B run per run directory."""

    def start(self, config: Mapping[str, Any], resume_step: int | None) -> None:
        try:
            import wandb
        except ImportError:
            raise PrakitError("the wandb tracker needs the wandb package: pip install 'prakit[wandb]'") from None
        self.wandb = wandb
        # $WANDB_MODE read now: wandb reads it once per process, maybe before a run sets it
        mode = self.cfg.mode or os.environ.get("WANDB_MODE")
        self.run = wandb.init(project=self.cfg.project, entity=self.cfg.entity, mode=mode,
                              tags=list(self.cfg.tags), dir=str(self.run_dir), name=self.run_dir.name,
                              id=remembered_id(self.run_dir, "wandb"), resume="allow", config=dict(config),
                              reinit="create_new")
        # Training's step is the x-axis: a restarted run logs its replayed steps again, which
        # W&B's own step (only ever increasing) would drop.
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log({**values, "step": step})

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        self.run.log({name: self.wandb.Image(image), "step": step})

    def finish(self) -> None:
        self.run.finish()
