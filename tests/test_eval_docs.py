"""Every ``prakit`` command that README.md, docs/evaluation.md and docs/reproduce-imagenet.md
show for evaluation runs, in the order shown, on tiny stand-ins of the runs and files they name:
tiny runs trained on the digits under the documented run names, an ADM-style reference batch, and Inception with random
weights accepted in place of the published file."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import evaluation_commands
from prakit_eval.inception import WEIGHTS_ENV as INCEPTION_WEIGHTS_ENV

from prakit.cli import main
from prakit.config import load_config
from prakit.eval.features import moments
from prakit.training.loop import train

pytestmark = pytest.mark.slow  # end to end, several processes or SLURM

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.image_size=8", "data.num_workers=0", "model.patch_size=4", "train.batch_size=16", "train.log_every=5",
    "train.ckpt_every=100", "train.sample_every=0", "model.preset=micro",
    "sample.steps=3", "sample.num=40", "eval.num=40", 'data.store="data/digits-16.zarr"',
]
#: Sizes scaled down for the stand-ins: (documented, run here).
SCALED = {"--num 10000": "--num 12", "--num 500": "--num 30"}




def test_the_documents_show_the_evaluation_commands():
    shown = {(doc, argv[0]) for doc, argv in evaluation_commands()}
    assert {("README.md", "eval"), ("README.md", "compare"), ("evaluation.md", "eval"),
            ("evaluation.md", "reference"), ("evaluation.md", "compare"), ("evaluation.md", "data")} <= shown


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The runs and files the documents name, tiny, in a folder that serves as the working directory."""
    from prakit_eval.inception import InceptionV3

    from prakit import registry
    from prakit.data import prepare

    root = tmp_path_factory.mktemp("docs")
    prepare(registry.get("dataset").config("digits"), root / "data" / "digits-16.zarr", size=8, shuffle_seed=0,
            progress=False)
    inception = InceptionV3.with_random_weights()
    torch.save(inception.state_dict(), root / "inception.pth")
    images = np.repeat(np.linspace(0, 255, 20, dtype=np.uint8)[:, None, None, None], 8, 1).repeat(8, 2).repeat(3, 3)
    with torch.no_grad():
        pool, _, spatial = inception.forward_with_spatial(torch.from_numpy(images))
    stats, spatial = moments(pool.numpy()), moments(spatial.numpy())
    for where in (root, root / "data"):  # the ADM layout: mu, sigma, mu_s, sigma_s, arr_0
        np.savez(where / "VIRTUAL_imagenet256_labeled.npz", mu=stats.mu, sigma=stats.sigma, mu_s=spatial.mu,
                 sigma_s=spatial.sigma, arr_0=images)
    imagenet = ['eval.reference="data/VIRTUAL_imagenet256_labeled.npz"', 'eval.features.name="inception"',
                'eval.evaluators=[{name="fid"},{name="inception_score"},{name="precision_recall"},'
                '{name="sampling_speed",batch_size=4,batches=1}]', "sample.num=20", "eval.num=20"]
    runs = {
        "quickstart": ["train.steps=30"],
        "pra-S": ["train.steps=5", *imagenet],
        "pra": ["train.steps=5"],
        "lowdim-only": ["train.steps=5", 'model.rollout.name="teacher_forcing"'],
        "pixel-ar": ["train.steps=5", 'model.rollout.name="teacher_forcing"', 'model.decoder.name="identity"'],
    }
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name, overrides in runs.items():
            cfg = load_config(ROOT / "experiments" / "quickstart.toml", [*TINY, *overrides])
            train(cfg, Path("runs") / name, progress=False)
    finally:
        os.chdir(cwd)
    return root


def stand_in(argv: list[str], root: Path) -> list[str]:
    """The documented command with the sizes scaled down and documented sample stores replaced by the real ones."""
    line = " ".join(argv)
    for documented, here in SCALED.items():
        line = line.replace(documented, here)
    for store in set(re.findall(r"(runs/[\w-]+)/samples/ckpt-[\w-]+\.zarr", line)):
        drawn = sorted((root / store / "samples").glob("*.zarr"))
        assert drawn, f"{store} has no samples yet: the documents must evaluate it before naming its store"
        line = re.sub(rf"{store}/samples/ckpt-[\w-]+\.zarr", str(drawn[0].relative_to(root)), line)
    return line.split()


def test_every_documented_evaluation_command_runs(world, monkeypatch, capsys):
    import prakit_eval.inception

    monkeypatch.chdir(world)
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(world / "inception.pth"))
    with open(world / "inception.pth", "rb") as f:
        import hashlib

        monkeypatch.setattr(prakit_eval.inception, "WEIGHTS_SHA256", hashlib.file_digest(f, "sha256").hexdigest())
    for evaluation in Path("runs").glob("*/eval.json"):
        evaluation.unlink()
    for doc, argv in evaluation_commands():
        if argv[0] == "compare":  # the runs it compares are evaluated first, as a user would have
            for run in argv[1:argv.index("--out") if "--out" in argv else None]:
                if not (Path(run) / "eval.json").exists():
                    assert main(["eval", run, "--evaluators", "fid,rollout_gap", "--no-progress"]) == 0
        command = stand_in(argv, world)
        status = main(command)
        captured = capsys.readouterr()
        assert status == 0, f"{doc}: prakit {' '.join(command)}\n{captured.err[-2000:]}"
    assert (world / "runs" / "quickstart" / "search" / "search.json").exists()
    assert (world / "runs" / "comparison" / "comparison.md").exists()


def test_the_documented_evaluator_plugin_passes_its_contract(tmp_path, fresh_plugins):
    import types

    from prakit import plugins
    from prakit.testing import EvaluatorContract

    source = next(block for block in re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "evaluation.md").read_text(), re.S)
                  if "class MeanBrightness(" in block)
    module = types.ModuleType("mean_brightness")
    exec(compile(source, "docs/evaluation.md", "exec"), module.__dict__)
    plugins.register_plugin(module, name="mean_brightness")
    case = type("TestMeanBrightness", (EvaluatorContract,), {"config": module.MeanBrightnessConfig()})()
    case.setup(tmp_path)
    for check in ("test_returns_named_numbers_and_curves", "test_declares_which_way_is_better", "test_deterministic"):
        getattr(case, check)()
    result = module.MeanBrightness(module.MeanBrightnessConfig()).evaluate(case.context())
    assert 0 < result["brightness_gap"] < 255
