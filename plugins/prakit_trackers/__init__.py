"""Built-in experiment trackers: TensorBoard (the ``tensorboard`` package), and Weights & Biases
and MLflow as optional extras (``pip install 'prakit[wandb]'``, ``'prakit[mlflow]'``). A run
names its trackers in ``train.trackers``."""

from prakit.plugin_api import hookimpl
from prakit_trackers.mlflow import MLflow, MLflowConfig
from prakit_trackers.tensorboard import TensorBoard, TensorBoardConfig
from prakit_trackers.wandb import WandB, WandBConfig


@hookimpl
def register_trackers(registrar):
    registrar.add(TensorBoardConfig, TensorBoard)
    registrar.add(WandBConfig, WandB)
    registrar.add(MLflowConfig, MLflow)
