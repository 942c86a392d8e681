"""prakit from Python (prakit/api.py, ARModel.sample): load and sample a run as the command line
does, the jobs as functions, models by preset; the README's Python blocks and the worked example
(docs/examples/sample_grid.py) run as shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import attrs
import numpy as np
import pytest
import torch
from helpers import QUICKSTART, ROOT
from PIL import Image

import prakit
from prakit.config import SampleConfig, load_config
from prakit.data import open_store
from prakit.errors import ConfigError, PrakitError
from prakit.run import Run

#: A quickstart file made tiny (model, images, steps, feature network) for this machine.
TINY_QUICKSTART = """\
extends = "{quickstart}"
[model]
preset = "micro"
[data]
image_size = 8
store = "{store}"
num_workers = 0
[train]
steps = 4
batch_size = 16
ckpt_every = 4
sample_every = 0
[sample]
steps = 3
batch_size = 50
seed = 7
[eval]
features = {{ name = "featnet", steps = 30, width = 8, features = 16 }}
evaluators = [{{ name = "fid" }}]
"""


@pytest.fixture(scope="module")
def world(store, tmp_path_factory):
    """A working directory with experiments/quickstart.toml (tiny) and runs/quickstart trained by
    prakit.train from Python."""
    root = tmp_path_factory.mktemp("api")
    config = root / "experiments" / "quickstart.toml"
    config.parent.mkdir()
    config.write_text(TINY_QUICKSTART.format(quickstart=QUICKSTART, store=store))
    result = prakit.train(config, root / "runs" / "quickstart", progress=False, train__log_every=1)
    assert result.step == 4 and len(Run(result.run_dir).metrics()) == 4  # a row a step: the keyword override took
    return root


@pytest.fixture(scope="module")
def run(world):
    return world / "runs" / "quickstart"


def test_load_gives_the_runs_model_its_config_and_sampling_section(run):
    model = prakit.load(run)
    cfg = Run(run).config()
    assert model.config == cfg and not model.training and model.device == torch.device("cpu")
    assert model.sampling == attrs.evolve(cfg.sample, ema="ema_0.999")  # the slow EMA's weights
    assert prakit.load(run, ema="none").sampling.ema == "none"
    with pytest.raises(PrakitError, match="has no EMA 'ema_0.5'"):
        prakit.load(run, ema="ema_0.5")


def test_sample_draws_as_prakit_sample_does_with_the_runs_options(run, tmp_path):
    model = prakit.load(run)
    assert model.sampling.seed == 7 != SampleConfig().seed  # the run's options are not the defaults
    store = open_store(prakit.sample(run, tmp_path / "run.zarr", num=6, progress=False))
    labels = store.labels[:]
    assert labels.tolist() == [0, 1, 3, 5, 6, 8]
    assert np.array_equal(model.sample(labels.tolist()).numpy(), store.images[:])
    assert np.array_equal(model.sample(torch.tensor(labels, dtype=torch.int32)).numpy(), store.images[:])
    reseeded = open_store(prakit.sample(run, tmp_path / "reseeded.zarr", num=6, seed=1, progress=False))
    assert np.array_equal(model.sample(labels, seed=1).numpy(), reseeded.images[:])
    assert not np.array_equal(reseeded.images[:], store.images[:])


def test_sample_gives_pil_images_on_request(run):
    model = prakit.load(run)
    images = model.sample([2, 4])
    pictures = model.sample([2, 4], pil=True)
    assert [p.size for p in pictures] == [(8, 8)] * 2 and {p.mode for p in pictures} == {"RGB"}
    assert np.array_equal(np.stack([np.asarray(p) for p in pictures]), images.numpy())


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: m.sample([3, 10]), "class ids must be in 0..9 (the model's data.num_classes is 10), got 10"),
    (lambda m: m.sample([-1]), "class ids must be in 0..9 (the model's data.num_classes is 10), got -1"),
    (lambda m: m.sample([0], cfg_scale=-1.0), "cfg_scale must be >= 0.0, got -1.0"),
    (lambda m: m.sample([0], guidance=2.0), "unknown sampling option 'guidance'"),
])
def test_sample_refuses_bad_input_in_one_line(run, call, message):
    with pytest.raises(PrakitError) as error:
        call(prakit.load(run))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_evaluate_returns_the_record_it_writes(run):
    record = prakit.evaluate(run, num=20, progress=False)
    assert record["numbers"]["fid"] > 0 and record["sampling"]["num"] == 20
    assert (run / "eval.json").is_file()


def test_models_by_preset_or_config_file():
    assert {"micro", "tiny", "pra-S", "pra-B", "pra-L"} <= set(prakit.list_models())
    model = prakit.create_model("micro", data__image_size=8, model__patch_size=4)
    assert model.seq_len == 4 and model.num_classes == 1000 and model.config.model.patch_size == 4
    assert prakit.create_model(QUICKSTART, **{"data.image_size": 32}).seq_len == 64
    with pytest.raises(PrakitError, match="'pra-XL' is neither a model preset"):
        prakit.create_model("pra-XL")


def test_overrides_as_a_mapping_are_checked_as_on_the_command_line():
    assert load_config(QUICKSTART, {"train.steps": 7, "model.rollout.sigma_max": 0.3}).train.steps == 7
    with pytest.raises(ConfigError, match="train.stepz"):
        load_config(QUICKSTART, {"train.stepz": 7})
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(QUICKSTART, {"train..steps": 7})
    with pytest.raises(PrakitError, match="give run_dir"):
        prakit.train(load_config(QUICKSTART))


def test_the_functions_survive_importing_the_modules_they_share_a_name_with():
    import prakit.sampling
    import prakit.training.loop  # noqa: F401

    assert prakit.train is prakit.api.train and prakit.sample is prakit.api.sample


@pytest.mark.slow  # trains a run and builds pra-S
def test_readme_python_blocks_and_the_worked_example_run(world, monkeypatch):
    monkeypatch.chdir(world)
    section = (ROOT / "README.md").read_text().split("## From Python")[1].split("\n## ")[0]
    namespace: dict = {}  # the blocks run one after another, as in one session
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    assert Run(world / "runs" / "demo").is_trained() and (world / "runs" / "demo" / "eval.json").is_file()
    command = re.search(r"\$ (python docs/examples/sample_grid\.py .*)", section)[1]
    assert command == "python docs/examples/sample_grid.py runs/quickstart grid.png"
    done = subprocess.run([sys.executable, str(ROOT / command.split()[1]), *command.split()[2:]],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"80 images of 10 classes \(pra, guidance 2, ema_0.999 EMA weights on cpu\): grid.png\n",
                        done.stdout)
    assert Image.open(world / "grid.png").size[1] > Image.open(world / "grid.png").size[0]  # 10 rows of 8
