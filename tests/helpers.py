"""What the tests share: the repository's paths, small runs and models, a prakit subprocess,
stores written by hand, SLURM job states, benchmark runs, and the commands the documents show."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import attrs
import torch
import zarr

from prakit import registry
from prakit.config import ModelConfig, preset_model
from prakit.data.store import create_store, digest_sum, finish_store
from prakit.model import ARModel
from prakit.testing import perturb_parameters
from prakit.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"
#: The commands README.md and docs/*.md show: every ``$ `` line of a ``console`` block, with the
#: output shown under it (:func:`shown_commands`).
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


class Shown(NamedTuple):
    document: str  #: the file name, e.g. ``training.md``
    command: str  #: the command as shown, without ``$`` and without its trailing comment
    output: list[str]  #: the lines shown under it


def shown_commands(documents=DOCUMENTS) -> list[Shown]:
    found: list[Shown] = []
    for doc in documents:
        for block in re.findall(r"```console\n(.*?)```", doc.read_text(), re.S):
            current = None
            for line in block.splitlines():
                if line.startswith("$ "):
                    current = Shown(doc.name, re.sub(r"\s+#\s.*$", "", line[2:]).strip(), [])
                    found.append(current)
                elif current is not None:
                    current.output.append(line)
    return found


#: Overrides of the quickstart that train a micro model on 8x8 images in seconds.
SMALL_RUN = [
    "data.image_size=8", "data.num_workers=0", "model.patch_size=4",
    "train.batch_size=16", "train.log_every=1", "train.ckpt_every=4", "train.sample_every=0",
    "sample.steps=3", "sample.batch_size=4", "model.preset=micro",
]


def small_run(store, *extra):
    """:data:`SMALL_RUN` on ``store``, then ``extra``."""
    return [*SMALL_RUN, f"data.store={json.dumps(str(store))}", *extra]


def prakit(*args, env=None, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "prakit", *args], env=env, **{"capture_output": True, "text": True, **kw})


def await_checkpoint(run_dir: Path, name: str = "ckpt-*.pt", timeout: float = 300) -> None:
    """Until ``run_dir`` holds a checkpoint matching ``name``, or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not list((run_dir / "checkpoints").glob(name)):
        time.sleep(0.05)


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["loss"]) for row in read_metrics(run_dir / "metrics.jsonl")]


def small_model(rollout="teacher_forcing", decoder="mlp", generator="diffusion", image_size=8, **model_fields) -> ARModel:
    """The micro preset on a 2x2-token image (by default) of 4x4x3 patches (token_dim 48), 4 head steps."""
    def component(kind, name, **fields):
        return registry.get(kind).config(name, **fields) if isinstance(name, str) else name

    micro = preset_model("micro")
    head = {"width": micro.generator.width, "depth": micro.generator.depth, "sample_steps": 4}
    cfg = attrs.evolve(
        micro,
        generator=component("generator", generator, **head),
        decoder=micro.decoder if decoder == "mlp" else component("decoder", decoder),
        rollout=component("rollout", rollout),
        patch_size=4,
        **model_fields,
    )
    torch.manual_seed(0)
    model = ARModel(cfg, image_size=image_size, channels=3, num_classes=3)
    perturb_parameters(model)  # as if trained a little: zero-initialised head layers move
    return model


def batch(n=4, seed=1, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.arange(n) % 3


def rollout_inputs(model, images, labels, seed=0, step=0):
    torch.manual_seed(seed)
    x = model.patchify(images)
    return model.rollout(x, model.decoder.encode(x), labels, model=model, step=step)


def write_store(path, images, labels, *, chunk=8, shard=None, attrs=None):
    """A finished store holding ``images`` and ``labels``, written as prepare writes one."""
    shard = shard or chunk * 4
    create_store(path, count=len(images), image_shape=images.shape[1:], shard=shard, chunk=chunk,
                 attrs={"kind": "dataset", "class_names": [str(c) for c in range(int(labels.max()) + 1)], **(attrs or {})})
    group = zarr.open_group(path, mode="r+")
    group["images"][:] = images
    group["labels"][:] = labels
    finish_store(path, count=len(images), total=digest_sum(0, images, labels), attrs={})
    return path


CPU_JOB = ["launch.gpus_per_node=0", "launch.cpus_per_task=1", "train.steps=4"]


def job_args(store, tmp_path, *extra):
    return [*small_run(store, *CPU_JOB, *extra), f"launch.folder={tmp_path / 'submitit'}"]


def final_states(job_id: str, timeout: float = 60) -> list[str]:
    """Every run of a SLURM job (requeues included) in sacct, once the job has left the queue:
    its result can arrive before SLURM records the end (or, after a requeue, the run that followed)."""
    deadline = time.monotonic() + timeout
    while True:
        states = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "State"],
                                capture_output=True, text=True).stdout.split()
        if (states and states[-1] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED")) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


#: A quick evaluation: FID in the space of a small feature network fitted to the digits.
QUICK_EVAL = ['eval.features={name="featnet",steps=30,width=8,features=16}', 'eval.evaluators=[{name="fid"}]']


def benchmark(script, *args, results):
    """Run benchmarks/<script> on one thread, its results written to ``results``."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    python_path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}  # as the tests import
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={"PRAKIT_BENCHMARK_RESULTS": str(results), "OMP_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin", **python_path})  # a C++ compiler, for torch.compile on the CPU
    assert done.returncode == 0, done.stderr
    return done


EVALUATION_DOCS = (ROOT / "README.md", ROOT / "docs" / "evaluation.md", ROOT / "docs" / "reproduce-imagenet.md")
EVALUATION = ("eval", "reference", "compare")


def evaluation_commands() -> list[tuple[str, list[str]]]:
    """``(document, argv)`` of every evaluation command in a console block, and the export of samples."""
    found = []
    for shown in shown_commands(EVALUATION_DOCS):
        argv = shlex.split(shown.command)[1:]
        if shown.command.startswith("prakit ") and (
            argv[0] in EVALUATION or (argv[:2] == ["data", "export"] and shown.document == "evaluation.md")
        ):
            found.append((shown.document, argv))
    return found


def micro_model_config(rollout: str = "teacher_forcing") -> ModelConfig:
    """The built-in ``micro`` preset with 4x4 patches and the rollout named ``rollout``."""
    return preset_model("micro", patch_size=4, rollout=registry.get("rollout").config(rollout))


def eval_record(**fields) -> dict:
    """An evaluation record with every field `prakit eval` writes (made-up values), ``fields`` in place of its own."""
    record = {"prakit": "0", "date": "2026-01-01T00:00:00", "run": None, "checkpoint": None, "device": "cpu",
              "sampling": {"num": 4, "cfg_scale": 3.0, "ema": "slow"}, "reference": {"path": "data/x.zarr", "kind": "store"},
              "numbers": {}, "higher_is_better": {}, "evaluators": [], "features": {}, "samples": {"count": 4}}
    return {**record, **fields}
