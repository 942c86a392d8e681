"""The run directory has one owner, prakit.run: its files' names, and whether each stage is done."""

import re
from pathlib import Path

from helpers import QUICKSTART, small_run

from prakit.config import load_config
from prakit.errors import PrakitError
from prakit.run import Run

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.toml", "metrics.jsonl", "eval.json", "checkpoints", "grids", "loss.png", "search.json")


def test_no_module_but_prakit_run_spells_a_run_files_name():
    spelled = [f"{path.relative_to(ROOT)}: {name}" for folder in ("prakit", "plugins") for path in (ROOT / folder).rglob("*.py")
               if path != ROOT / "prakit" / "run.py" for name in RUN_FILES
               if re.search(rf"""["']{re.escape(name)}["']""", path.read_text())]
    assert not spelled


def test_a_run_says_which_stages_are_done_from_its_files(store, tmp_path):
    from prakit.eval.evaluate import evaluate, resolve
    from prakit.training.loop import train

    run = Run(tmp_path / "run")
    assert not run.exists() and not run.is_done("train")
    try:
        run.require()
    except PrakitError as exc:
        assert str(exc) == f"{run.path} is not a run directory (no config.toml)"
    else:
        raise AssertionError("require() accepted a folder without a config")
    train(load_config(QUICKSTART, small_run(store, "train.steps=4")), run.path, progress=False)
    assert run.exists() and run.is_trained() and run.is_done("train")
    assert run.checkpoint() == run.checkpoints()[-1] == run.checkpoint_dir / "ckpt-00000004.pt"
    assert [row["step"] for row in run.metrics()] == [0, 1, 2, 3] and run.config().train.steps == 4
    assert not run.is_done("sample", num=4) and not run.is_done("eval", num=4)
    evaluate(resolve(run.path, num=4), evaluators=["class_consistency"], progress=False)
    assert run.is_done("sample", num=4) and run.is_done("eval", num=4)
    assert not run.is_done("eval", num=8)  # another count is another evaluation
    model, cfg, ema = run.model()
    assert not model.training and cfg.train.steps == 4 and ema == "ema_0.999"
