"""A run's experiment trackers (``train.trackers``) as one: training sends them its logged rows and
sample grids, ``prakit eval`` its numbers; ``metrics.jsonl`` and ``eval.json`` stay the record."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from prakit import registry
from prakit.config import ExperimentConfig, unstructure
from prakit.io import DamagedFileError, atomic_write_text, json_type, read_json
from prakit.run import Run


class Trackers:
    """Every tracker a run's config names, each sent every call, in order."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, resume_step: int | None):
        self.trackers = [registry.build(c, run_dir=Path(run_dir)) for c in cfg.train.trackers]
        for tracker in self.trackers:
            tracker.start(unstructure(cfg), resume_step)

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_scalars(values, step)

    def log_image_file(self, name: str, path: Path, step: int) -> None:
        """The picture in ``path`` (a PNG), read only when some tracker takes it."""
        if self.trackers:
            image = np.asarray(Image.open(path))
            for tracker in self.trackers:
                tracker.log_image(name, image, step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def remembered_id(run_dir: Path, tracker: str, make: Callable[[], str] = lambda: uuid.uuid4().hex[:16]) -> str:
    """The id of the run directory's run at a tracker's service (a W&B run id, an MLflow run id):
    made once by ``make`` and kept in the run directory, so a resumed run and its evaluations
    log to the same tracked run."""
    path = Run(run_dir).trackers_record
    fix = "restore it, or delete it to start new tracked runs for this run directory"
    ids: dict[str, Any] = read_json(path, fix) if path.exists() else {}
    if not isinstance(ids.get(tracker, ""), str):
        raise DamagedFileError(path, f"{tracker} is {json_type(ids[tracker])} where an id belongs", fix)
    if tracker not in ids:
        ids[tracker] = make()
        atomic_write_text(path, json.dumps(ids, indent=2) + "\n")
    return ids[tracker]
