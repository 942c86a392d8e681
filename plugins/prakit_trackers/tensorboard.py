"""TensorBoard event files in the run directory's ``tensorboard/``: ``tensorboard --logdir runs``."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import attrs
import numpy as np
import tomli_w

from prakit.plugin_api import PrakitError, Run, Tracker, TrackerConfig


@attrs.frozen
class TensorBoardConfig(TrackerConfig):
    """Scalars, the resolved config (as text), sample grids and evaluation numbers."""

    name: ClassVar[str] = "tensorboard"


class TensorBoard(Tracker):
    """TensorBoard event files: scalars, the config, sample grids, evaluation numbers."""

    def start(self, config: Mapping[str, Any], resume_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PrakitError("the tensorboard tracker needs the tensorboard package: pip install tensorboard") from None
        # A restarted run drops what the run it replaces logged from its resumed step on.
        self.writer = SummaryWriter(Run(self.run_dir).tensorboard_dir, purge_step=resume_step)
        if resume_step is not None:
            text = "\n".join("    " + line for line in tomli_w.dumps(dict(config)).splitlines())
            self.writer.add_text("config", text, resume_step)

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(name, image, step, dataformats="HWC")

    def finish(self) -> None:
        self.writer.close()
