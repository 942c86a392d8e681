"""MLflow: one MLflow run per run directory, resumed across restarts and evaluations."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

import attrs
import numpy as np

from prakit.plugin_api import PrakitError, Tracker, TrackerConfig, flatten, remembered_id


@attrs.frozen
class MLflowConfig(TrackerConfig):
    """``tracking_uri``: where runs go (None: $MLFLOW_TRACKING_URI, else MLflow's default);
    ``experiment``: the MLflow experiment, created if missing. The resolved config is logged as
    parameters (dotted keys) and as ``config.json``; sample grids as images."""

    name: ClassVar[str] = "mlflow"
    tracking_uri: str | None = None
    experiment: str = "prakit"


class MLflow(Tracker):
    """MLflow: metrics, the config as parameters, sample grids, evaluation numbers, one MLflow run per run directory."""

    def start(self, config: Mapping[str, Any], resume_step: int | None) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise PrakitError("the mlflow tracker needs the mlflow package: pip install 'prakit[mlflow]'") from None
        self.client, self.metric = MlflowClient(tracking_uri=self.cfg.tracking_uri), Metric
        created = []

        def create() -> str:
            experiment = self.client.get_experiment_by_name(self.cfg.experiment)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.cfg.experiment)
            created.append(self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id)
            return created[0]

        self.run_id = remembered_id(self.run_dir, f"mlflow {self.client.tracking_uri}", create)
        if created:  # parameters are written once: MLflow refuses to change one
            params = [Param(key, str(value)[:6000]) for key, value in flatten(dict(config)).items()]
            for first in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[first:first + 100])
            self.client.log_dict(self.run_id, dict(config), "config.json")
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.metric(key, float(value), now, step)
                                                    for key, value in values.items()])

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, image, artifact_file=f"{name}/step-{step:08d}.png")

    def finish(self) -> None:
        self.client.set_terminated(self.run_id)
