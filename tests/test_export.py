"""Model exports (prakit/exporting.py, `prakit export`): one set of weights as safetensors with the
config and a model card, loaded and sampled wherever a run is; and inference reads only the weights
it needs from a full checkpoint."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import QUICK_EVAL, QUICKSTART, prakit, small_run
from safetensors import safe_open

import prakit as api
from prakit.cli import main
from prakit.config import load_config
from prakit.data import open_store
from prakit.errors import PrakitError
from prakit.exporting import CARD, WEIGHTS
from prakit.model import parameter_counts
from prakit.run import Run

CLASSES = [0, 3, 3, 7, 9]


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    """A run trained 4 steps, with EMAs of 0.999 (slow) and 0.99 (fast)."""
    from prakit.training.loop import train

    path = tmp_path_factory.mktemp("export") / "run"
    train(load_config(QUICKSTART, small_run(store, "train.steps=4", *QUICK_EVAL)), path, progress=False)
    return path


def metadata(export):
    with safe_open(export / WEIGHTS, framework="pt") as f:
        return f.metadata()


def test_an_fp32_export_samples_as_its_run_bit_for_bit_and_bf16_holds_the_weights_rounded(run, tmp_path):
    model = api.load(run)
    fp32 = api.export(run, tmp_path / "fp32", dtype="fp32")
    bf16 = api.export(run, tmp_path / "bf16")
    assert sorted(p.name for p in fp32.iterdir()) == sorted(["config.toml", CARD, WEIGHTS])
    assert metadata(bf16) == {"format": "pt", "ema": "ema_0.999", "dtype": "bf16", "step": "4",
                              "checkpoint": "ckpt-00000004.pt"}
    with safe_open(fp32 / WEIGHTS, framework="pt") as f:  # the model's weights and nothing else
        assert set(f.keys()) == set(model.state_dict())
    assert (bf16 / WEIGHTS).stat().st_size < 0.6 * (fp32 / WEIGHTS).stat().st_size

    from_fp32, from_bf16 = api.load(fp32), api.load(bf16)
    assert from_fp32.config == from_bf16.config == Run(run).config(['sample.ema="ema_0.999"'])
    assert from_fp32.sampling == model.sampling
    assert torch.equal(from_fp32.sample(CLASSES), model.sample(CLASSES))
    for name, weight in model.state_dict().items():  # float32, rounded to bf16 (a NaN buffer stays NaN)
        rounded = weight.to(torch.bfloat16).to(weight.dtype) if weight.is_floating_point() else weight
        torch.testing.assert_close(from_bf16.state_dict()[name], rounded, rtol=0, atol=0, equal_nan=True)
    drift = (from_bf16.sample(CLASSES).int() - model.sample(CLASSES).int()).abs().float().mean()
    assert drift < 4  # of 255 levels: the same images, up to bf16's rounding of the weights


def test_an_export_of_other_weights_loads_those_and_refuses_the_rest(run, tmp_path):
    fast = api.export(run, tmp_path / "fast", ema="fast", dtype="fp32")
    live = api.export(run, tmp_path / "live", ema="none", dtype="fp32")
    assert torch.equal(api.load(fast).sample(CLASSES), api.load(run, ema="fast").sample(CLASSES))
    assert api.load(fast).sampling.ema == "ema_0.99" and api.load(live).sampling.ema == "none"
    assert torch.equal(api.load(live).sample(CLASSES), api.load(run, ema="none").sample(CLASSES))
    assert api.load(fast, ema="ema_0.99").sampling.ema == "ema_0.99"
    with pytest.raises(PrakitError, match=f"^the export {fast} holds the ema_0.99 weights only, not ema_0.999; "
                                          "export the run again with --ema slow$"):
        api.load(fast, ema="slow")
    twice = api.export(fast, tmp_path / "twice", dtype="bf16")  # an export exports too
    assert metadata(twice)["ema"] == "ema_0.99"


def test_prakit_sample_takes_an_export_and_its_store_is_the_runs_and_evaluates(run, tmp_path, capsys):
    export = tmp_path / "exports" / "quickstart"
    assert main(["export", str(run), "--ema", "slow", "--dtype", "fp32", "--out", str(export)]) == 0
    assert capsys.readouterr().out == (f"export: {export} (ema_0.999 weights of ckpt-00000004.pt (step 4) in fp32, "
                                       f"{(export / WEIGHTS).stat().st_size / 2**20:.1f} MiB)\n")
    for source, out in ((run, "run.zarr"), (export, "export.zarr")):
        assert main(["sample", str(source), "--num", "6", "--out", str(tmp_path / out)]) == 0, capsys.readouterr().err
    from_run, from_export = open_store(tmp_path / "run.zarr"), open_store(tmp_path / "export.zarr")
    assert np.array_equal(from_run.images[:], from_export.images[:])
    assert np.array_equal(from_run.labels[:], from_export.labels[:])
    assert from_export.attrs["checkpoint"] == str(export.resolve())
    assert from_export.attrs["sampling"]["ema_weights"] == "ema_0.999"
    assert main(["eval", str(tmp_path / "export.zarr"), "--evaluators", "fid"]) == 0, capsys.readouterr().err
    assert f"6 samples of {export.resolve()} " in (tmp_path / "export.zarr.eval" / "eval.md").read_text()


def test_the_model_card_lists_the_parameters_steps_and_the_runs_evaluation(run, tmp_path):
    counts = parameter_counts(api.load(run))
    card = (api.export(run, tmp_path / "before") / CARD).read_text()
    assert f"| total |  | {counts['total']:,} |" in card and f"| backbone | transformer | {counts['backbone']:,} |" in card
    assert "Trained 4 steps" in card and "the EMA ema_0.999 weights in bf16" in card
    assert "Not evaluated: the run has no evaluation record." in card
    assert f'model = prakit.load("{tmp_path / "before"}")' in card

    evaluated = tmp_path / "evaluated"
    shutil.copytree(run, evaluated)
    fid = api.evaluate(evaluated, num=8, evaluators=["fid"], progress=False)["numbers"]["fid"]
    card = (api.export(evaluated, tmp_path / "after") / CARD).read_text()
    assert f"| fid | {fid:.4g} |" in card and "8 samples of " in card and "Not evaluated" not in card


BAD_INPUT = [
    ("RUN --ema quick", "--ema must be 'none', 'slow', 'fast' or an EMA's name like 'ema_0.9999', got 'quick'"),
    ("RUN --ema ema_0.5", "RUN/checkpoints/ckpt-00000004.pt has no EMA 'ema_0.5'; it has: ema_0.999, ema_0.99"),
    ("RUN --dtype fp16", "--dtype must be bf16 or fp32, got 'fp16'"),
    ("TMP", "TMP is not a run directory (no config.toml)"),
    ("TMP/nowhere", "TMP/nowhere is neither a run directory, a checkpoint file nor a model export"),
    ("RUN --out TMP/full", "--out TMP/full holds files and is not a model export; choose another folder, "
                           "or pass --force to replace it"),
    ("RUN --out RUN --force", "--out RUN holds the checkpoint being exported; choose another folder"),
    ("RUN --out TMP/full/notes.txt", "--out TMP/full/notes.txt is a file; an export is a folder: choose another --out"),
]


@pytest.mark.parametrize(("argv", "problem"), BAD_INPUT, ids=[argv for argv, _ in BAD_INPUT])
def test_bad_input_is_a_one_line_error_and_writes_nothing(run, tmp_path, capsys, argv, problem):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    argv = argv if "--out" in argv else f"{argv} --out TMP/export"
    args = argv.replace("RUN", str(run)).replace("TMP", str(tmp_path)).split()
    assert (main(["export", *args]), capsys.readouterr().err) == (
        2, f"prakit: error: {problem.replace('RUN', str(run)).replace('TMP', str(tmp_path))}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"] and (tmp_path / "full" / "notes.txt").is_file()
    assert Run(run).checkpoints()


def test_an_export_replaces_an_earlier_export_and_with_force_a_folder_of_other_files(run, tmp_path):
    out = tmp_path / "export"
    api.export(run, out)
    api.export(run, out, dtype="fp32")
    assert metadata(out)["dtype"] == "fp32"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("replaced")
    api.export(run, tmp_path / "full", force=True)
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == sorted(["config.toml", CARD, WEIGHTS])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "full"]  # nothing set aside is left


def test_evaluating_an_export_says_to_sample_it_first(run, tmp_path, capsys):
    export = api.export(run, tmp_path / "export")
    assert (main(["eval", str(export)]), capsys.readouterr().err) == (
        2, f"prakit: error: {export} is a model export: sample it (`prakit sample {export} --num N --out STORE`) "
           "and evaluate the store\n")



def test_training_into_an_export_is_refused_even_with_force(run, store, tmp_path, capsys):
    export = api.export(run, tmp_path / "export")
    before = {path.name: path.read_bytes() for path in export.iterdir()}
    for force in ([], ["--force"]):
        code = main(["train", str(QUICKSTART), *small_run(store, "train.steps=1"), "--run-dir", str(export), *force])
        assert (code, capsys.readouterr().err) == (
            2, f"prakit: error: {export} is a model export (prakit export), not a run directory; "
               "choose another --run-dir\n")
    assert {path.name: path.read_bytes() for path in export.iterdir()} == before

@pytest.mark.slow
def test_an_export_cut_short_leaves_the_earlier_one_whole_and_no_half_folder(run, tmp_path):
    out = tmp_path / "export"
    api.export(run, out, dtype="fp32")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bf16_size = (out / WEIGHTS).stat().st_size // 2

    def small_files():  # the file system refuses any file larger than half the bf16 weights
        resource.setrlimit(resource.RLIMIT_FSIZE, (bf16_size // 2, bf16_size // 2))

    done = prakit("export", str(run), "--out", str(out), preexec_fn=small_files, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 2 and done.stderr.startswith(f"prakit: error: cannot write {out}: ")
    assert "File too large" in done.stderr and done.stderr.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]

    (tmp_path / ".export.killed.tmp").mkdir()  # what a killed export leaves: removed by the next one
    (tmp_path / ".export.killed.tmp" / WEIGHTS).write_bytes(b"half")
    api.export(run, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"] and metadata(out)["dtype"] == "bf16"


#: Loads a checkpoint's model as sampling and evaluation do, in a fresh process, and prints the peak
#: memory that loading took: weights read from the file count in it, mapped or not.
PEAK = """
import sys
from pathlib import Path

import torch

from prakit.model import ARModel
from prakit.run import checkpoint_config, load_model


def memory(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) * 1024


checkpoint = Path(sys.argv[1])
ARModel.from_config(checkpoint_config(checkpoint))  # imports the plugins
open("/proc/self/clear_refs", "w").write("5")  # the peak, counted from here
before = memory("VmRSS:")
model, _, ema = load_model(checkpoint, None, torch.device("cpu"))
print(ema, memory("VmHWM:") - before)
"""


@pytest.mark.slow
def test_inference_reads_only_the_chosen_weights_of_a_checkpoint(store, tmp_path):
    """A checkpoint holds the weights, two EMAs and AdamW's two moments: five copies. Loading it
    for inference takes memory for the model and for the one copy it reads, not for all five."""
    from prakit.training.loop import train

    cfg = load_config(QUICKSTART, small_run(store, "model.preset=tiny", "train.steps=1", "train.ckpt_every=1"))
    checkpoint = train(cfg, tmp_path / "run", progress=False).run_dir / "checkpoints" / "ckpt-00000001.pt"
    weights = 4 * parameter_counts(api.load(tmp_path / "run"))["total"]
    assert checkpoint.stat().st_size > 4.9 * weights and weights > 10 * 2**20
    done = subprocess.run([sys.executable, "-c", PEAK, str(checkpoint)], capture_output=True, text=True,
                          env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})  # freed memory goes back
    assert done.returncode == 0, done.stderr
    ema, peak = done.stdout.split()
    assert ema == "ema_0.999" and int(peak) < 2.5 * weights  # the model and the weights read: 2 copies, not 6


def test_a_damaged_export_is_a_one_line_error(run, tmp_path, capsys):
    export = api.export(run, tmp_path / "export")
    data = (export / WEIGHTS).read_bytes()
    (export / WEIGHTS).write_bytes(data[: len(data) // 2])
    assert main(["sample", str(export), "--num", "2", "--out", str(tmp_path / "s.zarr")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"prakit: error: {export / WEIGHTS} cannot be read (") and error.count("\n") == 1
    assert error.endswith("; export the run again\n") and not (tmp_path / "s.zarr").exists()
