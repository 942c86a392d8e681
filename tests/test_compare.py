"""``prakit compare`` and ``prakit sweep collect`` on evaluated runs written by hand: every seed's
value, the interval of each row's mean, the differences to one row paired by seed, and the
refusal to pick between two runs of one seed."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import eval_record
from scipy import stats as scipy_stats

from prakit.cli import main
from prakit.config import load_config
from prakit.config.io import save_config
from prakit.errors import PrakitError
from prakit.eval.compare import compare
from prakit.eval.stats import PAIRED_TEST
from prakit.sweep import Definition, Sweep, parse_grid

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"
#: FID by rollout and seed: teacher forcing has a seed (3) that pra lacks, which no pair may use.
FIDS = {"pra": {0: 11.0, 1: 14.5, 2: 12.2}, "teacher_forcing": {0: 13.1, 1: 15.0, 2: 16.3, 3: 30.0}}


def evaluated_run(run_dir: Path, fid: float, overrides=(), config=QUICKSTART) -> Path:
    """A run directory as training and ``prakit eval`` leave it, with ``fid`` its one number."""
    run_dir.mkdir(parents=True)
    save_config(load_config(config, overrides), run_dir / "config.toml")
    record = eval_record(numbers={"fid": fid}, higher_is_better={"fid": False},
                         reference={"path": "data/ref.zarr", "kind": "store"}, features={"featnet": {}},
                         samples={"count": 100},
                         evaluators=[{"name": "fid", "config": {"name": "fid"}, "numbers": {"fid": fid}, "curves": {}}])
    (run_dir / "eval.json").write_text(json.dumps(record))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 9, "images_per_s": 64.0 * fid}) + "\n")
    return run_dir


@pytest.fixture
def runs(tmp_path) -> dict[str, dict[int, Path]]:
    """Evaluated runs of pra and teacher forcing, by rollout and seed."""
    return {rollout: {seed: evaluated_run(tmp_path / f"rollout={rollout},seed={seed}", fid,
                                          [f'model.rollout.name="{rollout}"', f"train.seed={seed}"])
                      for seed, fid in fids.items()}
            for rollout, fids in FIDS.items()}


def every(runs) -> list[Path]:
    return [run for seeds in runs.values() for run in seeds.values()]


def test_variants_of_one_name_from_two_folders_are_told_apart_by_their_folder(tmp_path):
    made = [evaluated_run(tmp_path / folder / f"pra,seed={seed}", 10.0 + seed, [f"train.seed={seed}", *overrides])
            for folder, overrides in (("diffusion", []), ("flow", ['model.generator.name="flow"']))
            for seed in (0, 1)]
    comparison = compare(made, versus=str(made[2]))
    assert [row["name"] for row in comparison["rows"]] == ["diffusion/pra (2 seeds)", "flow/pra (2 seeds)"]
    assert comparison["versus"]["name"] == "flow/pra (2 seeds)"


def test_a_run_whose_config_omits_a_field_at_its_default_pools_with_runs_that_write_it(tmp_path):
    made = [evaluated_run(tmp_path / f"pra,seed={seed}", 10.0 + seed, [f"train.seed={seed}"]) for seed in (0, 1)]
    older = made[0] / "config.toml"  # as a version before the field existed wrote it
    written = older.read_text()
    assert "trackers = []\n" in written
    older.write_text(written.replace("trackers = []\n", ""))
    [row] = compare(made)["rows"]
    assert row["n"] == 2


def test_a_row_pools_its_seeds_keeping_every_value_by_seed_with_the_means_interval(runs):
    comparison = compare(every(runs))
    pra, teacher = comparison["rows"]
    assert (pra["name"], pra["n"], teacher["name"], teacher["n"]) == ("rollout=pra (3 seeds)", 3,
                                                                       "rollout=teacher_forcing (4 seeds)", 4)
    fid = pra["measures"]["fid"]
    assert fid["values"] == {str(seed): value for seed, value in FIDS["pra"].items()}
    values = list(FIDS["pra"].values())
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (fid["mean"], fid["ci_low"], fid["ci_high"], fid["n"]) == (
        pytest.approx(np.mean(values)), pytest.approx(low), pytest.approx(high), 3)
    assert "Student t" in comparison["interval"] and "versus" not in comparison


def test_versus_pairs_each_row_with_the_named_one_by_seed(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, every(runs)), "--out", str(out), "--versus", "rollout=pra"]) == 0
    shown = capsys.readouterr().out
    written = json.loads((out / "comparison.json").read_text())
    versus = written["versus"]
    assert versus["name"] == "rollout=pra (3 seeds)" and versus["test"] == PAIRED_TEST
    [teacher] = versus["rows"]
    seeds = sorted(FIDS["pra"])  # seed 3 of teacher forcing has no pra run to pair with
    mine, theirs = [FIDS["teacher_forcing"][s] for s in seeds], [FIDS["pra"][s] for s in seeds]
    fid = teacher["measures"]["fid"]
    assert fid["differences"] == pytest.approx({str(s): a - b for s, a, b in zip(seeds, mine, theirs)})
    assert (teacher["pairs"], fid["n"]) == (3, 3)
    assert fid["p_value"] == pytest.approx(scipy_stats.ttest_rel(mine, theirs).pvalue)
    differences = np.subtract(mine, theirs)
    low, high = scipy_stats.t.interval(0.95, 2, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert (fid["ci_low"], fid["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # the terminal and markdown say which test; the CSV has the numbers in their own columns
    for text in (shown, (out / "comparison.md").read_text()):
        assert "versus rollout=pra (3 seeds)" in text and PAIRED_TEST in text and "fid diff" in text
    with open(out / "comparison_versus.csv") as f:
        [row] = list(csv.DictReader(f))
    assert row["run"] == "rollout=teacher_forcing (4 seeds)" and row["pairs"] == "3"
    assert float(row["fid_p"]) == pytest.approx(fid["p_value"]) and float(row["fid_ci_low"]) == pytest.approx(low)
    with open(out / "comparison.csv") as f:
        pra_row = next(csv.DictReader(f))
    assert pra_row["n"] == "3" and float(pra_row["fid_ci_high"]) == pytest.approx(written["rows"][0]["measures"]["fid"]["ci_high"])


def test_the_table_shows_mean_interval_and_n_and_one_seed_its_value_alone(runs, tmp_path, capsys):
    single = evaluated_run(tmp_path / "narrow", 20.5, ['model.rollout.name="pra"', "model.decoder.state_dim=8"])
    assert main(["compare", *map(str, runs["pra"].values()), str(single), "--versus", "narrow"]) == 0
    shown = capsys.readouterr().out
    header, pra, narrow = shown.splitlines()[:3]
    assert header.split()[:4] == ["run", "model.decoder.state_dim", "n", "fid"]
    fid = compare([*runs["pra"].values()])["rows"][0]["measures"]["fid"]
    assert f"{fid['mean']:.4g} [{fid['ci_low']:.4g}, {fid['ci_high']:.4g}]" in pra and pra.split()[4] == "3"
    assert narrow.split()[2:4] == ["1", "20.5"]  # n=1: the value, no interval
    assert "1 pair: no test" in shown  # pra's seeds 1 and 2 have no partner in the narrow run


def test_versus_an_unknown_row_is_one_line_listing_the_rows(runs, capsys):
    assert main(["compare", *map(str, every(runs)), "--versus", "pra"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("prakit: error: --versus 'pra' names no row; the rows are: rollout=pra (3 seeds), "
                           "rollout=teacher_forcing (4 seeds)")
    # a run directory of the row names it too
    assert compare(every(runs), versus=str(runs["pra"][1]))["versus"]["name"] == "rollout=pra (3 seeds)"


def test_a_second_run_of_the_same_variant_and_seed_is_refused(runs, tmp_path):
    rerun = evaluated_run(tmp_path / "pra-rerun", 9.0, ['model.rollout.name="pra"', "train.seed=1"])
    with pytest.raises(PrakitError) as refused:
        compare([*every(runs), rerun])
    assert str(refused.value) == (f"{runs['pra'][1]} and {rerun} are the same variant with the same train.seed 1: "
                                  "a rerun must use a new train.seed to pool with the earlier runs")
    pooled = evaluated_run(tmp_path / "pra-seed5", 9.0, ['model.rollout.name="pra"', "train.seed=5"])
    assert compare([*every(runs), pooled])["rows"][0]["measures"]["fid"]["n"] == 4


def test_sweep_collect_compares_versus_a_row(tmp_path, capsys):
    definition = Definition((str(QUICKSTART),), grid=(parse_grid("model.rollout.name=teacher_forcing,pra"),), seeds=2)
    sweep = Sweep.create(tmp_path / "sweep", definition, {"stages": ["train", "sample", "eval"], "num": None})
    sweep.save()
    for i, member in enumerate(definition.members()):
        evaluated_run(sweep.run_dir(member.name), 10.0 + i * i, member.overrides, member.config)
    assert main(["sweep", "collect", str(sweep.folder), "--versus", "rollout=teacher_forcing"]) == 0
    versus = json.loads((sweep.folder / "comparison.json").read_text())["versus"]
    [pra] = versus["rows"]
    assert versus["name"] == "rollout=teacher_forcing (2 seeds)" and pra["pairs"] == 2
    assert pra["measures"]["fid"]["differences"] == {"0": 14.0 - 10.0, "1": 19.0 - 11.0}  # fids of members 2, 3 - 0, 1
    assert (sweep.folder / "comparison_versus.csv").is_file() and "versus" in capsys.readouterr().out
    assert main(["sweep", "status", str(sweep.folder), "--versus", "pra"]) == 2
    assert "--versus belongs to `prakit sweep collect" in capsys.readouterr().err


def test_records_name_another_evaluation_of_a_run(runs):
    searched = {}
    for seeds in runs.values():
        for run in seeds.values():
            other = run / "search" / "cfg_scale=3" / "eval.json"
            other.parent.mkdir(parents=True)
            record = json.loads((run / "eval.json").read_text())
            other.write_text(json.dumps({**record, "numbers": {"fid": record["numbers"]["fid"] + 100}}))
            searched[str(run)] = other
    plain, best = compare(every(runs)), compare(every(runs), records=searched)
    for row, shifted in zip(plain["rows"], best["rows"]):
        assert shifted["measures"]["fid"]["mean"] == pytest.approx(row["measures"]["fid"]["mean"] + 100)
    missing = {str(every(runs)[0]): every(runs)[0] / "search" / "cfg_scale=9" / "eval.json"}
    with pytest.raises(PrakitError, match=r"has no search/cfg_scale=9/eval.json: evaluate it first"):
        compare(every(runs), records=missing)


def test_a_curve_a_plugin_evaluator_declares_is_drawn_across_the_rows(runs, fresh_plugins, tmp_path):
    from typing import ClassVar

    import attrs

    from prakit import plugins
    from prakit.components import Curve, Evaluator
    from prakit.eval.compare import write_comparison
    from prakit.kinds import EvaluatorConfig

    @attrs.frozen
    class SlopeConfig(EvaluatorConfig):
        name: ClassVar[str] = "slope"

    class Slope(Evaluator):
        compared_curves = {"slope": Curve("slope by position", "slope", lambda curves: curves["up"][1:])}

        def evaluate(self, ctx):
            return {"up": [0.0, 1.0, 2.0]}

    class SlopePlugin:
        @plugins.hookimpl
        def register_evaluators(self, registrar):
            registrar.add(SlopeConfig, Slope)

    plugins.register_plugin(SlopePlugin(), name="slope")
    for rollout, seeds in runs.items():
        for seed, run in seeds.items():
            record = json.loads((run / "eval.json").read_text())
            up = [0.0, float(seed), 2.0 * seed] if rollout == "pra" else [0.0, 1.0, 1.0]
            record["evaluators"].append({"name": "slope", "config": {"name": "slope"}, "numbers": {}, "curves": {"up": up}})
            (run / "eval.json").write_text(json.dumps(record))
    comparison = compare(every(runs))
    assert comparison["curves"] == {"slope": {"title": "slope by position", "xlabel": "token position", "ylabel": "slope"}}
    pra, teacher = comparison["rows"]
    assert pra["curves"] == {"slope": [1.0, 2.0]} and teacher["curves"] == {"slope": [1.0, 1.0]}  # means over seeds
    written = write_comparison(comparison, tmp_path / "out")
    assert tmp_path / "out" / "slope.png" in written and tmp_path / "out" / "slope.svg" in written
