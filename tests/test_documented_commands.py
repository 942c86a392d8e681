"""Every command README.md and docs/*.md show runs, in the order shown, in a working directory
laid out as the documents assume; tiny models and scaled-down sizes stand in for the documented
ones. The evaluation commands run in test_eval_docs.py, docs/plugins.md's in
test_third_party_plugin.py; those that need a SLURM cluster, and every command of the cluster
documents, run here when one is up (CI)."""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, Shown, evaluation_commands, shown_commands
from PIL import Image

from prakit.cli import main

pytestmark = pytest.mark.slow  # end to end, several processes or SLURM

#: Documents whose commands other test modules run.
RUN_ELSEWHERE = {"plugins.md": "test_third_party_plugin.py"}
#: Commands a test module of their own runs, as shown: (module, the line in it that runs the command).
RUN_BY_TESTS = {"python benchmarks/comparison.py": ("tests/test_benchmarks.py", '"comparison.py"'),
                "python benchmarks/decoder_ceiling.py runs/comparison/digits32/test/deciding/pra,seed=0 "
                "runs/comparison/digits32/test/deciding/x-pred,seed=0": ("tests/test_benchmarks.py", '"decoder_ceiling.py"'),
                "bash benchmarks/gpu_checks.sh": ("tests/test_benchmarks.py", '"gpu_checks.sh"'),
                "python benchmarks/activation_checkpointing.py":
                    ("tests/test_benchmarks.py", '"activation_checkpointing.py"'),
                "python docs/examples/sample_grid.py runs/quickstart grid.png":
                    ("tests/test_api.py", '"python docs/examples/sample_grid.py runs/quickstart grid.png"')}
#: Commands that the project's own set-up runs: (file, the line in it that runs the command).
RUN_BY_SETUP = {"make test": (".ci/run", "make test"), "pip install -e '.[data]'": ("Makefile", "-e '.[test,data]'")}
#: The order the documents run in: each leaves what the next one names (runs, sample stores).
ORDER = ("README.md", "configs.md", "training.md", "data.md", "performance.md")
#: Documents about the cluster, run in this order after the others' SLURM commands.
CLUSTER_DOCS = ("slurm.md", "reproduce-imagenet.md")
#: Sizes scaled down for this machine: (documented, run here).
SCALED = {
    "--num 100 ": "--num 8 ", "--num 50000 ": "--num 4 ", "--nproc-per-node 8": "--nproc-per-node 2",
    "--end-to-end 100": "--end-to-end 2 --steps 1 --warmup 0 --sample-images 2",
    "--batch-size 256": "--batch-size 2 --steps 1 --warmup 0 --sample-images 2",
    "launch.partition=gpu launch.nodes=4": "launch.partition=debug launch.nodes=1",
    "--nodes 4 --gpus-per-node 8": "--nodes 1 --gpus-per-node 0", "--nodes 8 --gpus-per-node 8": "--nodes 1 --gpus-per-node 0",
    "--partition gpu": "--partition debug", "--shards 16": "--shards 3", "--seeds 3": "--seeds 1",
    "rollout.name=teacher_forcing,noise_injection,pra": "rollout.name=teacher_forcing,pra",
    "data export samples.zarr": "data export runs/quickstart/samples.zarr",
    "benchmarks/train_step.py": "benchmarks/train_step.py --lengths 4 --rounds 1 --block 1 --batch-size 2",
    "benchmarks/sampling.py": "benchmarks/sampling.py --lengths 4 --batch-sizes 1 --head-steps 1",
}
#: A featnet fitted in seconds, for the evaluations of tiny runs (class consistency reads it too).
QUICK_FEATNET = 'eval.features={name="featnet",steps=30,width=8,features=16}'
#: Overrides that make every documented training run a tiny CPU run on the digits.
TINY = [
    "model.preset=micro", "model.patch_size=4", "data.image_size=16", "data.num_classes=10",
    'data.store="data/digits-16.zarr"', "data.num_workers=0", "train.steps=2", "train.batch_size=8",
    "train.ckpt_every=2", "train.sample_every=0", "sample.steps=2", "sample.batch_size=8", "eval.num=16",
    QUICK_FEATNET, "launch.gpus_per_node=0", "launch.cpus_per_task=1", "launch.nodes=1",
]
#: The same for a trained run's sampling and evaluation jobs (`prakit submit --stage`): a quick
#: feature network and the digits as the reference, in place of Inception and ADM's batch.
STAGE_TINY = [
    "sample.steps=2", "sample.batch_size=8", QUICK_FEATNET, 'eval.reference="data/digits-16.zarr"',
    'eval.evaluators=[{name="fid"}]',
    "launch.gpus_per_node=0", "launch.cpus_per_task=1", "launch.nodes=1",
]


def needs_slurm(shown: Shown) -> bool:
    submits = shown.command.startswith(("prakit submit", "prakit sweep"))
    return shown.document in CLUSTER_DOCS or submits and "--cluster local" not in shown.command


def documented() -> list[Shown]:
    evaluation = {" ".join(["prakit", *argv]) for _, argv in evaluation_commands()}
    return [s for s in shown_commands() if s.document not in RUN_ELSEWHERE and s.command not in evaluation
            and s.command not in RUN_BY_SETUP and s.command not in RUN_BY_TESTS]


def test_every_shown_command_is_run_by_a_test():
    commands = documented()
    assert {s.document for s in commands} == {*ORDER, *CLUSTER_DOCS}
    assert {s.document for s in shown_commands()} <= {*ORDER, *CLUSTER_DOCS, *RUN_ELSEWHERE, "evaluation.md"}
    for command, (file, line) in {**RUN_BY_SETUP, **RUN_BY_TESTS}.items():
        assert command in {s.command for s in shown_commands()}, f"{command} is no longer shown"
        assert line in (ROOT / file).read_text(), f"{file} no longer runs {command}"


def stand_in(command: str) -> list[str]:
    """The command as this machine runs it: sizes scaled, tiny models, the shell's ~ and globs expanded."""
    for documented_size, here in SCALED.items():
        command = command.replace(documented_size, here)
    argv = []
    for arg in shlex.split(command):
        arg = os.path.expanduser(arg)
        argv += sorted(glob.glob(arg)) if "*" in arg else [arg]
    if argv[:3] == ["prakit", "submit", "--stage"]:
        return [*argv, *STAGE_TINY]
    sweeps = argv[:2] == ["prakit", "sweep"] and argv[2] not in ("status", "collect", "cancel")
    trains = argv[:2] in (["prakit", "train"], ["prakit", "submit"]) or argv[0] in ("torchrun", "python")
    return [*argv, *TINY] if trains or sweeps else argv


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A working directory with the repository's experiments and benchmarks, and ~/imagenet/train."""
    root = tmp_path_factory.mktemp("documented")
    for name in ("experiments", "benchmarks"):
        (root / name).symlink_to(ROOT / name)
    for label in ("n01440764", "n01443537"):
        (root / "home" / "imagenet" / "train" / label).mkdir(parents=True)
        for i in range(2):
            pixels = np.full((40, 30, 3), 60 * i + 40, np.uint8)
            Image.fromarray(pixels).save(root / "home" / "imagenet" / "train" / label / f"{i}.JPEG")
    return root


@pytest.fixture
def in_world(world, monkeypatch, tmp_path):
    monkeypatch.chdir(world)
    monkeypatch.setenv("HOME", str(world / "home"))
    monkeypatch.setenv("PRAKIT_BENCHMARK_RESULTS", str(tmp_path / "benchmarks"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return world


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``argv`` as the shell would: prakit in this process, anything else as a subprocess."""
    if argv[0] == "prakit":
        code = main(argv[1:])
        captured = capsys.readouterr()
        return code, captured.out + captured.err
    if argv[0] == "make":  # the quickstart recipe, its training tiny
        recipe = re.search(rf"^{argv[1]}:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)[1]
        for line in recipe.splitlines():
            code, output = run(stand_in(line.strip().replace("$(BIN)/", "")), capsys)
            if code:
                return code, output
        return 0, output
    program = {"torchrun": [sys.executable, "-m", "torch.distributed.run"], "python": [sys.executable]}[argv[0]]
    done = subprocess.run([*program, *argv[1:]], capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def check_output(shown: Shown, code: int, output: str) -> None:
    expected = [line for line in shown.output if line.strip()]
    failing = bool(expected) and expected[0].startswith("prakit: error:")
    assert code == (2 if failing else 0), f"{shown.document}: {shown.command}\n{output[-3000:]}"
    for line in expected:
        pattern = re.escape(line)
        if shown.command.startswith(("prakit submit", "prakit sweep")):  # job ids and counts vary
            pattern = re.sub(r"\d+", r"\\d+", pattern)
        assert re.search(rf"^{pattern}$", output, re.M), f"{shown.document}: {shown.command} no longer prints\n{line}"


def test_every_documented_command_runs(in_world, capsys):
    for document in ORDER:
        for shown in [s for s in documented() if s.document == document and not needs_slurm(s)]:
            check_output(shown, *run(stand_in(shown.command), capsys))
    assert (in_world / "runs" / "pra-S" / "checkpoints").is_dir()  # from torchrun, on two processes
    assert (in_world / "samples" / "pra-S.npz").exists() and (in_world / "samples.png").exists()


def test_every_documented_slurm_command_runs(slurm, in_world, capsys):
    cluster = [s for s in documented() if s.document in CLUSTER_DOCS]
    for shown in [s for s in documented() if needs_slurm(s) and s not in cluster] + cluster:
        argv = stand_in(shown.command)
        if argv[:2] not in (["prakit", "submit"], ["prakit", "sweep"]):
            check_output(shown, *run(argv, capsys))
            continue
        done = subprocess.run([sys.executable, "-m", *argv, "--wait"], capture_output=True, text=True, timeout=900)
        check_output(shown, done.returncode, done.stdout + done.stderr)
