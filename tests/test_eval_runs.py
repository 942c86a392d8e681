"""``prakit eval``, ``prakit reference``, the guidance search and ``prakit compare`` on real
(tiny) runs trained on the digits, as real subprocesses where the user types commands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import eval_record
from PIL import Image

from prakit.config import load_config
from prakit.data import SampleStore
from prakit.eval import evaluate, resolve
from prakit.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"
TINY = [
    "data.image_size=8", "data.num_workers=0", "model.patch_size=4", "train.batch_size=32", "train.log_every=5",
    "train.sample_every=0", "model.backbone.width=64", "model.backbone.depth=2", "model.backbone.heads=2",
    "model.generator.width=64", "model.generator.depth=2", "model.decoder.width=64", "sample.steps=10",
    "sample.batch_size=100", "optim.warmup_steps=10", "eval.features.name=\"featnet\"",
]


def prakit(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "prakit", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The digits at 8x8, prepared once for this module."""
    from prakit import registry
    from prakit.data import prepare

    path = tmp_path_factory.mktemp("data") / "digits-8.zarr"
    prepare(registry.get("dataset").config("digits"), path, size=8, shuffle_seed=0, progress=False)
    return path


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    """Tiny runs: trained 300 steps, trained 30 steps (pra, seeds 0 and 1), and teacher forcing for 30 steps."""
    root = tmp_path_factory.mktemp("runs")

    def run(name, *overrides):
        cfg = load_config(QUICKSTART, [*TINY, f"data.store={json.dumps(str(store))}", *overrides])
        return train(cfg, root / name, progress=False).run_dir

    return {
        "trained": run("trained", "train.steps=300", "train.ckpt_every=300"),
        "handful": run("handful", "train.steps=30"),
        "handful-seed1": run("handful-seed1", "train.steps=30", "train.seed=1"),
        "teacher": run("teacher", "train.steps=30", 'model.rollout.name="teacher_forcing"'),
    }


def noise_store(path: Path, like: Path) -> Path:
    """A sample store of uniform noise, recorded as if a run had drawn it."""
    from prakit.data.store import read_attrs

    facts = read_attrs(like)
    rng = np.random.default_rng(0)
    store = SampleStore.open(path, num=facts["num"], image_shape=facts["image_shape"],
                             attrs={k: facts[k] for k in ("config", "checkpoint", "sampling", "class_names")})
    store.write(range(facts["num"]), rng.integers(0, 256, (facts["num"], *facts["image_shape"]), dtype=np.uint8),
                np.arange(facts["num"]) % 10)
    return path


@pytest.mark.slow
def test_featnet_fid_ranks_trained_above_barely_trained_above_noise(runs, tmp_path):
    fids, consistency = {}, {}
    for name in ("trained", "handful"):
        record = evaluate(resolve(runs[name], num=300), evaluators=["fid", "class_consistency"], progress=False)
        fids[name], consistency[name] = record["numbers"]["fid"], record["numbers"]["class_consistency"]
        assert record["features"]["featnet"]["held_out_accuracy"] > 0.9  # featnet itself is a good classifier
    noise = noise_store(tmp_path / "noise.zarr", Path(record["samples"]["path"]))
    fids["noise"] = evaluate(resolve(noise), evaluators=["fid"], progress=False)["numbers"]["fid"]
    assert fids["trained"] < fids["handful"] < fids["noise"], fids
    # ten classes, chance is 0.1: the trained model draws the class it is asked for far more often
    assert consistency["trained"] > max(0.3, 2 * consistency["handful"]), consistency


@pytest.mark.slow
def test_eval_of_a_run_samples_once_and_writes_its_table(runs, store):
    run = runs["handful"]
    out = prakit("eval", str(run), "--num", "40", "--evaluators", "fid,precision_recall,reconstruction_psnr,rollout_gap",
                 "--no-progress")
    assert out.returncode == 0, out.stderr
    record = json.loads((run / "eval.json").read_text())
    assert set(record["numbers"]) == {"fid", "precision", "recall", "reconstruction_psnr", "rollout_gap",
                                      "rollout_gap_relative"}
    assert record["samples"]["count"] == 40 and Path(record["samples"]["path"]).parent == run / "samples"
    assert record["reference"] == {"path": str(store), "kind": "store", "fingerprint": record["reference"]["fingerprint"],
                                   "images": 1797}
    assert "held_out_accuracy" in record["features"]["featnet"] and record["device"].startswith("cpu")
    assert f"fid  {record['numbers']['fid']:.4g}".replace(" ", "") in out.stdout.replace(" ", "")
    assert (run / "eval.md").read_text().count("|") > 10
    assert Image.open(run / "rollout_gap.png").size == (1200, 675) and str(run / "rollout_gap.svg") in record["written"]
    # a row per class, as long as its 4 samples (of 40), 8-pixel digits enlarged to 64
    assert Image.open(run / "samples.png").size == (4 * 66 + 2, 10 * 66 + 2)
    # a second evaluation reuses the samples and the features, and gives the same numbers
    samples = Path(record["samples"]["path"])
    stamp = (samples / "zarr.json").stat().st_mtime_ns
    again = prakit("eval", str(run), "--num", "40", "--evaluators", "fid,precision_recall", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert (samples / "zarr.json").stat().st_mtime_ns == stamp
    assert json.loads((run / "eval.json").read_text())["numbers"]["fid"] == record["numbers"]["fid"]
    # the sample store alone evaluates to the same numbers
    direct = prakit("eval", str(samples), "--evaluators", "fid", "--out", str(run / "direct"), "--no-progress")
    assert direct.returncode == 0, direct.stderr
    assert json.loads((run / "direct" / "eval.json").read_text())["numbers"]["fid"] == record["numbers"]["fid"]


@pytest.mark.slow
def test_bad_evaluations_are_one_line_errors(runs, tmp_path):
    run = str(runs["handful"])
    cases = [
        (["eval", run, "model.backbone.width=8"], "prakit eval can change only the sample and eval sections"),
        (["eval", run, "--evaluators", "fdi"], "unknown evaluator 'fdi'; did you mean 'fid', 'sfid'?"),
        (["eval", str(tmp_path)], "is neither a run directory (with config.toml) nor a sample store"),
        (["eval", run, "--ref", str(tmp_path / "nope.npz")], "no reference at"),
        (["eval", run, "--num", "1"], "--num must be at least 2"),
        (["eval", run, "--select", "fid"], "--select ranks the settings of a --search"),
        (["eval", run, "--search", "sample.cfg_scale=1,2", "--out", str(tmp_path)], "a search writes into RUN_DIR/search/"),
        (["eval", run, "--search", "model.depth=1,2"], "--search 'model.depth=1,2' must look like sample.FIELD=V1,V2"),
        (["eval", run, "--search", "sample.cfg_scale=1,2", "--select", "speed", "--num", "20", "--evaluators", "fid"],
         "--select 'speed' is not a number the evaluators rank; they rank: fid"),
        (["compare", run, str(runs["teacher"])], "has no eval.json: evaluate it first with `prakit eval"),
    ]
    for args, message in cases:
        out = prakit(*args)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_guidance_search_names_the_best_setting_and_resumes(runs):
    run = runs["handful"]
    args = ["eval", str(run), "--search", "sample.cfg_scale=1,3", "--search", "sample.ema=slow,none", "--num", "30",
            "--evaluators", "fid,precision_recall", "--no-progress"]
    out = prakit(*args)
    assert out.returncode == 0, out.stderr
    result = json.loads((run / "search" / "search.json").read_text())
    assert [row["setting"] for row in result["rows"]] == [
        {"sample.cfg_scale": c, "sample.ema": e} for c in (1, 3) for e in ("slow", "none")]
    fids = [row["numbers"]["fid"] for row in result["rows"]]
    assert result["select"] == "fid" and result["best"] == result["rows"][int(np.argmin(fids))]["setting"]
    assert "best by fid: cfg_scale=" in out.stdout
    assert (run / "search" / "search.md").exists() and (run / "search" / "search.csv").exists()
    assert (run / "search" / "search.png").exists() and (run / "search" / "search.svg").exists()
    # an interrupted search continues: only the setting without its evaluation is redone
    evaluations = sorted((run / "search").glob("*/eval.json"))
    assert len(evaluations) == 4
    stamps = {p: p.stat().st_mtime_ns for p in evaluations}
    evaluations[0].unlink()
    again = prakit(*args)
    assert again.returncode == 0, again.stderr
    assert [p for p in evaluations if p.stat().st_mtime_ns != stamps.get(p)] == [evaluations[0]]
    assert json.loads((run / "search" / "search.json").read_text())["rows"] == result["rows"]


@pytest.mark.slow
def test_compare_shows_exactly_the_differing_fields_and_groups_seeds(runs, tmp_path):
    names = ("handful", "handful-seed1", "teacher")
    for name in names:
        out = prakit("eval", str(runs[name]), "--num", "30", "--evaluators", "fid,rollout_gap", "--no-progress")
        assert out.returncode == 0, out.stderr
    out = prakit("compare", *(str(runs[n]) for n in names), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stderr
    table = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert table["fields"] == ["model.rollout.name"]  # the seed groups; sigma_max belongs to pra alone
    assert [row["name"] for row in table["rows"]] == ["handful (2 seeds)", "teacher"]
    fids = [json.loads((runs[n] / "eval.json").read_text())["numbers"]["fid"] for n in names]
    grouped = table["rows"][0]["measures"]["fid"]
    assert grouped["values"] == {"0": fids[0], "1": fids[1]} and grouped["mean"] == pytest.approx(np.mean(fids[:2]))
    assert grouped["std"] == pytest.approx(np.std(fids[:2], ddof=1)) and grouped["n"] == 2
    header = out.stdout.splitlines()[0].split()
    assert header[:3] == ["run", "model.rollout.name", "n"] and "fid" in header and "parameters" in header
    assert f"[{grouped['ci_low']:.4g}, {grouped['ci_high']:.4g}]" in out.stdout and "teacher_forcing" in out.stdout
    csv_header = (tmp_path / "cmp" / "comparison.csv").read_text().splitlines()[0]
    assert csv_header.startswith("run,model.rollout.name,n,fid,fid_std,fid_ci_low,fid_ci_high,")
    assert (tmp_path / "cmp" / "comparison.md").exists() and (tmp_path / "cmp" / "rollout_gap.svg").exists()


@pytest.mark.slow
def test_reference_files_from_a_store_serve_an_evaluation(runs, store, tmp_path):
    out = prakit("reference", str(store), "--out", str(tmp_path / "digits.npz"), "--features", "featnet", "--no-progress")
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "digits.npz") as ref:
        assert ref["features"].shape == (1797, 128) and ref["sigma"].shape == (128, 128)
    run = runs["trained"]
    by_store = evaluate(resolve(run, num=100), evaluators=["fid", "kid"], progress=False)
    by_file = evaluate(resolve(run, num=100, out=tmp_path / "e"), evaluators=["fid", "kid"],
                       reference=str(tmp_path / "digits.npz"), progress=False)
    for number in ("fid", "kid"):
        assert by_file["numbers"][number] == pytest.approx(by_store["numbers"][number], rel=1e-5)


def test_a_runs_sample_store_is_named_by_what_is_drawn_not_by_how_fast():
    from prakit.config import SampleConfig
    from prakit.run import Run

    run, checkpoint = Run("runs/r"), Path("runs/r/checkpoints/ckpt-00000800.pt")
    eager = run.samples_path(checkpoint, SampleConfig(cfg_scale=2.0), 1000)
    assert eager.name == "ckpt-00000800-n1000-948670c7.zarr"  # the name stores had before sample.compile existed
    assert run.samples_path(checkpoint, SampleConfig(cfg_scale=2.0, compile="default"), 1000) == eager


def test_an_evaluation_recorded_before_sample_compile_existed_still_counts_as_done(tmp_path):
    from prakit.config import SampleConfig, load_config, unstructure
    from prakit.eval.evaluate import Target, evaluated

    checkpoint = tmp_path / "checkpoints" / "ckpt-00000800.pt"
    earlier = {k: v for k, v in unstructure(SampleConfig(cfg_scale=2.0)).items() if k != "compile"}
    (tmp_path / "eval.json").write_text(json.dumps(eval_record(checkpoint=str(checkpoint), sampling={**earlier, "num": 500})))

    def target(**options):
        return Target(load_config(QUICKSTART), tmp_path / "samples.zarr", checkpoint, SampleConfig(**options), 500,
                      tmp_path, run_dir=tmp_path)

    assert evaluated(target(cfg_scale=2.0)) and evaluated(target(cfg_scale=2.0, compile="default"))
    assert not evaluated(target(cfg_scale=3.0))


def test_an_evaluation_drawn_at_another_batch_size_is_of_the_same_samples(tmp_path):
    from prakit.config import SampleConfig, load_config, unstructure
    from prakit.eval.evaluate import Target, evaluated

    checkpoint = tmp_path / "checkpoints" / "ckpt-00000800.pt"
    drawn = unstructure(SampleConfig(cfg_scale=2.0, batch_size=50))
    (tmp_path / "eval.json").write_text(json.dumps(eval_record(checkpoint=str(checkpoint), sampling={**drawn, "num": 500})))
    options = SampleConfig(cfg_scale=2.0, batch_size=100, compile="default")  # how fast, not what: as a store sees it
    assert evaluated(Target(load_config(QUICKSTART), tmp_path / "s.zarr", checkpoint, options, 500, tmp_path))


def test_searches_and_sweeps_read_their_grids_alike():
    from prakit.errors import PrakitError
    from prakit.eval.search import parse_grid

    assert parse_grid(['sample.ema="ema_0.9,x",slow', "sample.cfg_scale=1.5, 2"]) == {
        "sample.ema": ["ema_0.9,x", "slow"], "sample.cfg_scale": [1.5, 2]}  # a quoted comma does not split
    with pytest.raises(PrakitError, match="names a value twice"):
        parse_grid(["sample.cfg_scale=2,2"])


def test_a_search_warns_when_its_best_numeric_setting_is_at_the_edge_of_the_grid():
    from prakit.eval.search import on_the_edge

    grid = {"sample.cfg_scale": [2, 3, 4, 6], "sample.ema": ["slow", "fast"]}
    assert on_the_edge(grid, {"sample.cfg_scale": 3, "sample.ema": "fast"}) == []
    assert on_the_edge(grid, {"sample.cfg_scale": 6, "sample.ema": "fast"}) == [
        "cfg_scale=6 is the largest cfg_scale searched: the best may lie beyond it, search further"]
    assert "smallest" in on_the_edge(grid, {"sample.cfg_scale": 2, "sample.ema": "slow"})[0]
    assert on_the_edge({"sample.cfg_scale": [3]}, {"sample.cfg_scale": 3}) == []


def test_a_search_draws_its_number_against_its_first_numeric_setting():
    from prakit.eval.search import search_curves

    grid = {"sample.ema": ["slow", "fast"], "sample.cfg_scale": [3, 1.5, 2]}
    rows = [{"setting": {"sample.ema": ema, "sample.cfg_scale": scale}, "numbers": {"fid": scale * (ema == "slow") + 1}}
            for ema in grid["sample.ema"] for scale in grid["sample.cfg_scale"]]
    assert search_curves(rows, grid, "fid") == ("cfg_scale", {"ema=slow": ((1.5, 2, 3), (2.5, 3, 4)),
                                                              "ema=fast": ((1.5, 2, 3), (1, 1, 1))})
    alone = [{"setting": {"sample.cfg_scale": scale}, "numbers": {"fid": scale}} for scale in (3, 1.5, 2)]
    assert search_curves(alone, {"sample.cfg_scale": [3, 1.5, 2]}, "fid")[1] == {"fid": ((1.5, 2, 3), (1.5, 2, 3))}
    assert search_curves(rows[:1], {"sample.ema": ["slow"], "sample.cfg_scale": [3]}, "fid") is None
    assert search_curves(rows, {"sample.ema": ["slow", "fast"]}, "fid") is None


def test_the_search_ranks_by_the_first_primary_number_the_evaluators_offer():
    from prakit.eval.search import default_selection

    rows = [{"higher_is_better": {"precision": True, "fid": False, "sharpness": True}}]
    assert default_selection(rows, ["sharpness", "fid"]) == "sharpness"
    assert default_selection(rows, ["kid"]) == "precision"  # offered but not computed: the first ranked number


def test_an_evaluator_in_the_default_set_is_computed_when_none_is_named(fresh_plugins):
    from typing import ClassVar

    import attrs

    from prakit import plugins
    from prakit.components import Evaluator
    from prakit.config import load_config
    from prakit.eval.evaluate import evaluator_configs
    from prakit.kinds import EvaluatorConfig

    @attrs.frozen
    class SharpnessConfig(EvaluatorConfig):
        name: ClassVar[str] = "sharpness"

    class Sharpness(Evaluator):
        in_default_set = True

        def evaluate(self, ctx):
            return {"sharpness": 1.0}

    class Plugin:
        @plugins.hookimpl
        def register_evaluators(self, registrar):
            registrar.add(SharpnessConfig, Sharpness)

    plugins.register_plugin(Plugin(), name="sharpness")
    cfg = load_config(QUICKSTART, ["eval.evaluators=[]"])
    assert [c.name for c in evaluator_configs(cfg)] == ["fid", "precision_recall", "sharpness"]
