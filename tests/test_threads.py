"""CPU threads for sampling: as many as cores are idle, so a shared machine slows it gracefully."""

import contextlib
import os
import subprocess
import sys

import torch
from helpers import QUICKSTART, small_run

from prakit.threads import cpu_threads, idle_cores

CPU = torch.device("cpu")
BURN = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"


@contextlib.contextmanager
def every_core_busy():
    """Within: a process spinning on each core (for at most 5 s)."""
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()


def test_a_busy_machine_gets_one_thread_and_the_setting_comes_back(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with every_core_busy(), cpu_threads(CPU) as threads:
        assert threads == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_omp_num_threads_chooses_and_idle_cores_are_counted(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    with cpu_threads(CPU) as threads:
        assert threads == before
    assert 0 <= idle_cores(0.05) <= (os.cpu_count() or 1)


def test_prakit_sample_draws_with_as_many_threads_as_cores_are_idle(store, tmp_path, monkeypatch):
    from prakit.config import load_config
    from prakit.model import ARModel
    from prakit.sampling import sample_run
    from prakit.training.loop import train

    run = train(load_config(QUICKSTART, small_run(store, "train.steps=1")), tmp_path / "run", progress=False).run_dir
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    drawn_with = []
    sample = ARModel.sample
    monkeypatch.setattr(ARModel, "sample", lambda *a, **k: drawn_with.append(torch.get_num_threads()) or sample(*a, **k))
    try:
        with every_core_busy():
            sample_run(run, tmp_path / "samples.zarr", num=2, progress=False)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert drawn_with == [1] and after == 2


def test_prakit_train_steps_with_as_many_threads_as_cores_are_idle(store, tmp_path, monkeypatch):
    from prakit.config import load_config
    from prakit.training.loop import train
    from prakit.training.step import TrainingStep

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    stepped_with = []
    step = TrainingStep.__call__
    monkeypatch.setattr(TrainingStep, "__call__", lambda *a: stepped_with.append(torch.get_num_threads()) or step(*a))
    try:
        with every_core_busy():
            train(load_config(QUICKSTART, small_run(store, "train.steps=2")), tmp_path / "run", progress=False)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert stepped_with == [1, 1] and after == 2
