"""The built-in trackers, for real and offline: TensorBoard's event files, W&B's offline run
files and MLflow's file store, read back after a run, its restart and its evaluation; a whole
training run sends its rows, grids and evaluation numbers; the old train.tensorboard flag."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from helpers import QUICKSTART, small_run
from prakit_trackers import MLflowConfig, TensorBoardConfig, WandBConfig

import prakit
from prakit.config import load_config
from prakit.run import Run
from prakit.testing import TrackerContract

QUICK_FEATNET = {"name": "featnet", "steps": 30, "width": 8, "features": 16}


def tensorboard_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Run(run_dir).tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def wandb_records(run_dir: Path):
    """Every record of the run directory's offline W&B runs, oldest first (W&B's log format:
    a 7-byte header, then 32 KiB blocks of records, each a 7-byte header and a chunk)."""
    from wandb.proto import wandb_internal_pb2

    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        data, position, record = path.read_bytes(), 7, b""
        assert data[:4] == b":W&B"
        while position + 7 <= len(data):
            if 32768 - position % 32768 < 7:  # a block's padding
                position += 32768 - position % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[position:position + 7])
            chunk, position = data[position + 7:position + 7 + length], position + 7 + length
            record = chunk if kind in (1, 2) else record + chunk  # full or first; middle or last
            if kind in (1, 4):
                yield wandb_internal_pb2.Record.FromString(record)


def wandb_history(run_dir: Path) -> list[dict]:
    return [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            for record in wandb_records(run_dir) if record.WhichOneof("record_type") == "history"]


def wandb_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    got: dict[str, dict[int, float]] = {}
    for row in wandb_history(run_dir):
        for key, value in row.items():
            if key != "step" and not key.startswith("_") and isinstance(value, (int, float)):
                got.setdefault(key, {})[row["step"]] = value
    return got


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def mlflow_run_id(run_dir: Path, uri: str) -> str:
    return json.loads(Run(run_dir).trackers_record.read_text())[f"mlflow {uri}"]


def mlflow_scalars(run_dir: Path, uri: str) -> dict[str, dict[int, float]]:
    client = mlflow_client(uri)
    run_id = mlflow_run_id(run_dir, uri)
    got = {}
    for key in client.get_run(run_id).data.metrics:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
        got[key] = {m.step: m.value for m in history}  # the last value at each step
    return got


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B offline and quiet, MLflow's file store allowed; nothing reaches the network."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return tmp_path


class TestTensorBoard(TrackerContract):
    config = TensorBoardConfig()

    def read_back(self):
        return tensorboard_scalars(self.run_dir)


@pytest.mark.slow  # W&B starts a service per run
@pytest.mark.usefixtures("offline")
class TestWandB(TrackerContract):
    config = WandBConfig(mode="offline")

    def read_back(self):
        return wandb_scalars(self.run_dir)


@pytest.mark.usefixtures("offline")
class TestMLflow(TrackerContract):
    config = MLflowConfig(experiment="contract")  # its tracking_uri, a file store of the test's own, is set below

    @pytest.fixture(autouse=True)
    def _store(self, tmp_path):
        self.config = MLflowConfig(tracking_uri=f"file://{tmp_path / 'mlruns'}", experiment="contract")

    def read_back(self):
        return mlflow_scalars(self.run_dir, self.config.tracking_uri)


@pytest.mark.slow
def test_a_training_run_and_its_evaluation_reach_every_tracker(store, offline, monkeypatch):
    import wandb

    wandb.teardown()  # wandb reads its environment once per process: here, before $WANDB_MODE is set
    monkeypatch.delenv("WANDB_MODE")
    wandb.setup()
    monkeypatch.setenv("WANDB_MODE", "offline")
    run, uri = offline / "run", f"file://{offline / 'mlruns'}"
    trackers = [{"name": "tensorboard"}, {"name": "wandb"}, {"name": "mlflow", "tracking_uri": uri}]
    cfg = load_config(QUICKSTART, small_run(store, "train.steps=4", "train.sample_every=2"))
    prakit.train(cfg, run, progress=False, train__trackers=trackers, eval__features=QUICK_FEATNET,
                 eval__evaluators=[{"name": "fid"}])
    fid = prakit.evaluate(run, num=12, progress=False)["numbers"]["fid"]
    losses = {row["step"]: row["loss"] for row in Run(run).metrics()}  # the record of truth
    for got in (tensorboard_scalars(run), wandb_scalars(run), mlflow_scalars(run, uri)):
        assert got["loss"] == pytest.approx(losses) and got["eval/fid"] == pytest.approx({4: fid})
    assert {key for row in wandb_history(run) for key in row if key.startswith("samples/")} >= {"samples/path"}
    assert [a.path for a in mlflow_client(uri).list_artifacts(mlflow_run_id(run, uri), "samples")] == \
        ["samples/step-00000002.png", "samples/step-00000004.png"]
    config = next(r.run.config for r in wandb_records(run) if r.WhichOneof("record_type") == "run")
    assert json.loads(next(i.value_json for i in config.update if i.key == "train"))["steps"] == 4
    assert mlflow_client(uri).get_run(mlflow_run_id(run, uri)).data.params["train.steps"] == "4"


def test_the_earlier_tensorboard_flag_reads_as_the_tensorboard_tracker(tmp_path):
    flagged = tmp_path / "flagged.toml"
    flagged.write_text(f'extends = "{QUICKSTART}"\n[train]\ntensorboard = true\n')
    assert [t.name for t in load_config(flagged).train.trackers] == ["tensorboard"]
    flagged.write_text(f'extends = "{QUICKSTART}"\n[train]\ntensorboard = false\n')
    assert load_config(flagged).train.trackers == ()
