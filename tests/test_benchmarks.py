"""The benchmark scripts run and record what they measured (their numbers are not asserted:
they are measurements of a machine, published in benchmarks/results/)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import QUICKSTART, ROOT, benchmark

from prakit import registry
from prakit.config.io import load_config


@pytest.fixture
def common(tmp_path, monkeypatch):
    """benchmarks/common.py, writing its results under tmp_path."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    return common




def test_an_interrupted_benchmark_measures_only_the_missing_cases_when_rerun(common, tmp_path, capsys):
    cases = [{"n": n} for n in range(5)]
    measured = []

    def measure(n, stop_at=None):
        if n == stop_at:
            raise KeyboardInterrupt
        measured.append(n)
        return [{"n": n, "square": n * n}]

    settings = {"size": 3}
    with pytest.raises(KeyboardInterrupt):
        common.run_cases("toy", cases, lambda n: measure(n, stop_at=2), settings=settings)
    assert measured == [0, 1]
    rows = common.run_cases("toy", cases, measure, settings=settings)
    assert measured == [0, 1, 2, 3, 4] and [row["square"] for row in rows] == [0, 1, 4, 9, 16]
    printed = capsys.readouterr().out
    assert "toy: 2 of 5 cases already measured" in printed and "[5/5] n=4, ETA " in printed
    assert common.run_cases("toy", cases, measure, settings={"size": 4}) and measured[5:] == [0, 1, 2, 3, 4]
    common.report("toy", rows, settings=settings)
    assert [p.name for p in tmp_path.glob("toy.*.partial.json")] == [common.partial_results("toy", {"size": 4}).name]
    assert json.loads((tmp_path / "toy.json").read_text())["size"] == 3


@pytest.mark.slow
def test_redraw_charts_draws_every_committed_chart_from_its_json(tmp_path):
    done = benchmark("redraw_charts.py", results=tmp_path)
    committed = sorted(path.stem for path in (ROOT / "benchmarks" / "results").glob("*.png"))
    assert committed and sorted(path.stem for path in tmp_path.glob("*.png")) == committed
    assert sorted(path.stem for path in tmp_path.glob("*.svg")) == committed
    assert f"redrew {2 * len(committed)} files into {tmp_path}" in done.stdout


def test_redraw_charts_names_the_json_it_cannot_find(common, tmp_path, monkeypatch):
    import redraw_charts

    monkeypatch.setattr(redraw_charts, "COMMITTED", tmp_path)
    missing = f"cannot redraw the charts of sampling_cpu: {tmp_path}/sampling_cpu.json is missing"
    with pytest.raises(SystemExit, match=missing):
        redraw_charts.redraw()


def test_export_size_compares_the_exports_with_the_full_checkpoint_and_says_how_it_was_built(tmp_path):
    benchmark("export_size.py", "--preset", "micro", "--loads", "1", results=tmp_path)
    record = json.loads((tmp_path / "export_size.json").read_text())
    rows = {row["file"]: row for row in record["rows"]}
    assert list(rows) == ["full checkpoint, load_model (memory-mapped)", "full checkpoint, read whole (torch.load)",
                          "export bf16, load_model", "export fp32, load_model"]
    assert "zero gradients" in record["checkpoint_built"] and record["ema_decays"] == [0.9999, 0.999]
    checkpoint, bf16, fp32 = (rows[name]["size_mib"] for name in list(rows)[1:])
    assert bf16 < 0.55 * fp32 and fp32 < 0.25 * checkpoint  # one copy of the weights, of the checkpoint's five
    assert all(row["load_s"] > 0 for row in rows.values()) and record["machine"]["cpu"] and record["parameters"] > 0
    assert (tmp_path / "export_size.md").read_text().count("| export ") == 2


@pytest.mark.slow
def test_train_step_compares_every_rollout_with_teacher_forcing_and_records_how(tmp_path):
    benchmark("train_step.py", "--lengths", "16", "--rounds", "1", "--block", "1", "--batch-size", "4",
              "model.preset=micro", results=tmp_path)
    record = json.loads((tmp_path / "train_step_cpu.json").read_text())
    rollouts = [row["rollout"] for row in record["rows"]]
    assert rollouts[0] == "teacher_forcing" and {"pra", "pra (calibrated)", "exact_rollout"} <= set(rollouts)
    assert set(registry.list_components("rollout")) <= set(rollouts)  # every installed rollout, with no list to edit
    assert record["rows"][0]["ratio"] == 1.0 and all(row["step_ms"] > 0 for row in record["rows"])
    assert record["command"].endswith("--batch-size 4 model.preset=micro") and record["machine"]["torch"]
    assert record["machine"]["cpu"] and record["machine"]["cpu_capability"] and record["machine"]["cores"]
    table = (tmp_path / "train_step_cpu.md").read_text().splitlines()
    assert table[2].startswith("| tokens | rollout |") and len(table) == 4 + len(rollouts)


@pytest.mark.slow
def test_activation_checkpointing_measures_both_settings_in_fresh_processes_and_their_ratios(tmp_path):
    benchmark("activation_checkpointing.py", "--config", str(QUICKSTART), "--batch-size", "2", "--steps", "2",
              "model.preset=micro", "data.image_size=8", results=tmp_path)
    record = json.loads((tmp_path / "activation_checkpointing.json").read_text())
    rows = record["rows"]
    assert [(row["checkpointing"], row["step"]) for row in rows] == [(False, 1), (False, 2), (True, 1), (True, 2)]
    assert all(row["built_gb"] > 0 and row["step_gb"] >= 0 and row["step_s"] > 0 for row in rows)
    assert all(row["peak_ratio"] == row["time_ratio"] == 1.0 for row in rows[:2])
    for plain, checkpointed in zip(rows[:2], rows[2:]):
        assert checkpointed["peak_ratio"] == pytest.approx(checkpointed["peak_gb"] / plain["peak_gb"])
        assert checkpointed["time_ratio"] == pytest.approx(checkpointed["step_s"] / plain["step_s"])
        assert checkpointed["loss"] == pytest.approx(plain["loss"]) and checkpointed["grad_norm"] > 0
    assert record["max_loss_difference"] < 1e-5 and record["machine"]["cpu"] and record["batch"] == 2
    table = (tmp_path / "activation_checkpointing.md").read_text()
    assert "| checkpointing | step | built_gb | peak_gb | step_gb |" in table


@pytest.mark.slow
def test_sampling_compares_cached_with_recomputing_and_plots_the_backbone_cost_per_position(tmp_path):
    benchmark("sampling.py", "--lengths", "4,16", "--batch-sizes", "1,2", "--head-steps", "1,2",
              "model.preset=micro", "sample.steps=2", results=tmp_path)
    record = json.loads((tmp_path / "sampling_cpu.json").read_text())
    grid = [(r["tokens"], r["batch"], r["guidance"], r["mode"]) for r in record["rows"] if r["head_steps"] == 2]
    assert len(grid) == len(set(grid)) == 2 * 2 * 2 * 2 + 1  # + the head-steps series at 64 tokens
    assert {r["head_steps"] for r in record["rows"]} == {1, 2}
    for row in record["rows"]:
        calls = row["backbone_ms_by_position"]
        assert len(calls) == row["tokens"] - (row["mode"] == "cached") and min(calls) > 0
        assert row["s_per_image"] == pytest.approx(1 / row["images_per_s"])
    charts = ("backbone", "per_image")
    assert record["plots"] == [f"sampling_cpu_{chart}.{kind}" for chart in charts for kind in ("png", "svg")]
    assert all((tmp_path / name).stat().st_size > 1000 for name in record["plots"])
    assert "backbone_ms_by_position" not in (tmp_path / "sampling_cpu.md").read_text()
    assert not list(tmp_path.glob("*.partial.json"))


@pytest.mark.slow
def test_sampling_times_the_compiled_sampler_beside_the_eager_one(tmp_path):
    benchmark("sampling.py", "--lengths", "4", "--batch-sizes", "2", "--head-steps", "2", "--compile",
              "reduce-overhead", "model.preset=micro", "sample.steps=2", results=tmp_path)
    record = json.loads((tmp_path / "sampling_cpu.json").read_text())
    assert [(r["guidance"], r["mode"]) for r in record["rows"] if r["tokens"] == 4] == [
        (guided, mode) for guided in (False, True) for mode in ("cached", "recompute", "compiled reduce-overhead")]
    compiled = [r for r in record["rows"] if r["mode"] == "compiled reduce-overhead"]
    assert all(r["s_per_image"] > 0 and len(r["backbone_ms_by_position"]) == 3 for r in compiled)
    # a CPU has no CUDA graphs: each compiled graph is counted as skipped, and nothing eager is
    assert all(r["cudagraph_skips"] > 0 for r in compiled)
    assert all(r["cudagraph_skips"] == 0 for r in record["rows"] if not r["mode"].startswith("compiled"))
    with pytest.raises(AssertionError, match="--compile: 'on' is not one of off, default, reduce-overhead"):
        benchmark("sampling.py", "--compile", "default,on", results=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("script, args, result, measure", [
    ("sampling.py", ("--contention", "model.preset=micro", "sample.steps=2"), "sampling_contention_cpu", "seconds"),
    ("train_threads.py", ("--steps", "1", "model.preset=micro"), "train_threads_cpu", "s_per_step"),
])
def test_sampling_and_training_beside_a_busy_job_compare_thread_settings(tmp_path, script, args, result, measure):
    benchmark(script, *args, results=tmp_path)
    rows = json.loads((tmp_path / f"{result}.json").read_text())["rows"]
    assert [(r["beside_2_thread_job"], r["threads"]) for r in rows] == [
        (busy, setting) for busy in (False, True) for setting in ("all", "1", "prakit")]
    assert all(1 <= r["threads_used"] <= rows[0]["threads_used"] and r[measure] > 0 for r in rows)


@pytest.mark.slow
def test_train_speed_times_each_attention_kernel_and_compile_setting(tmp_path):
    benchmark("train_speed.py", "--batch-size", "2", "--steps", "1", "--warmup", "0", "--sample-images", "2",
              "--attention", "sdpa,auto", "model.preset=micro", results=tmp_path)
    record = json.loads((tmp_path / "train_speed_quickstart_cpu.json").read_text())
    assert [(r["attention"], r["compile"]) for r in record["rows"]] == [("sdpa: sdpa", "off"), ("auto: sdpa", "off")]
    assert all(r["step_s"] > 0 and r["mfu"] == "n/a" for r in record["rows"]) and record["sample_img_s"] > 0
    with pytest.raises(AssertionError, match="--compile: 'maybe' is neither off nor on"):  # before any case
        benchmark("train_speed.py", "--attention", "flash", "--compile", "off,maybe", results=tmp_path)


@pytest.mark.slow
def test_gpu_checks_run_every_check_in_one_script(tmp_path):
    """The script's plumbing on the CPU, at toy sizes: each check runs and writes its result."""
    sizes = {"CONFIG": "experiments/quickstart.toml", "TRAIN_BATCH": "2", "TOKENS": "4", "SAMPLE_BATCH": "2",
             "ATTENTION": "sdpa", "COMPILE": "off", "SAMPLE_COMPILE": "off"}
    env = {**sizes, "PRAKIT_BENCHMARK_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_checks.sh"), "model.preset=micro", "sample.steps=2"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    written = {path.name for path in tmp_path.glob("*.json")}
    assert written == {"train_speed_quickstart_cpu.json", "train_step_cpu.json", "sampling_cpu.json"}
    assert json.loads((tmp_path / "sampling_cpu.json").read_text())["batch_sizes"] == "2"
    assert (tmp_path / "sampling_torch_logs.txt").is_file()  # torch's reasons for skipping CUDA graphs, if any
    assert "gpu_checks: " in done.stdout


@pytest.mark.slow
def test_pixel_perturbation_finds_the_pixel_noise_that_matches_pras_state_noise(store, tmp_path):
    from helpers import QUICKSTART, prakit, small_run

    trained = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=2"), "--run-dir", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr
    benchmark("pixel_perturbation.py", str(tmp_path / "run"), "--num", "32", "--sigmas", "0.5", results=tmp_path)
    record = json.loads((tmp_path / "pixel_perturbation.json").read_text())
    rows = {row["setting"].split(",")[0]: row for row in record["rows"]}
    assert rows["reconstruction (sigma 0)"]["perturbation_rms"] == 0
    target = record["target_pixel_rms"]
    assert [row["perturbation_rms"] for row in record["rows"][1:3]] == [target, pytest.approx(target * 1.7, rel=0.3)]
    assert rows["noise_injection"]["perturbation_rms"] == pytest.approx(target, abs=2e-4)
    assert record["matched_noise_sigma_max"] >= record["unclamped_uniform_sigma_max"]  # the clamp takes some


@pytest.mark.slow
def test_decoder_ceiling_scores_real_images_and_their_reconstructions_with_the_run_s_fid(store, tmp_path):
    from helpers import QUICKSTART, prakit, small_run

    features = 'eval.features={name="featnet",steps=30,width=8,features=16}'
    for decoder in ("mlp", "identity"):
        trained = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=2", features,
                                                              f'model.decoder={{name="{decoder}"}}'),
                         "--run-dir", str(tmp_path / decoder))
        assert trained.returncode == 0, trained.stderr
    benchmark("decoder_ceiling.py", str(tmp_path / "mlp"), str(tmp_path / "identity"), "--num", "40",
              "--out", str(tmp_path / "stores"), results=tmp_path)
    mlp, identity = json.loads((tmp_path / "decoder_ceiling.json").read_text())["rows"]
    assert mlp["fid_real"] == identity["fid_real"] == identity["fid_reconstructed"]  # the same 40 images
    assert mlp["fid_reconstructed"] > 10 * mlp["fid_real"]  # a decoder two steps into training
    assert mlp["fid_sampled"] == "n/a"  # the runs were never evaluated


def test_every_exact_rollout_warmup_the_comparison_tries_leaves_each_setting_rolling_out_half_its_steps(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import comparison

    key, warmups = comparison.TUNED["exact-rollout"]
    assert key == "model.rollout.warmup"
    for name, setting in comparison.SETTINGS.items():
        steps = load_config(ROOT / "experiments" / "digits" / "exact-rollout.toml", setting.overrides).train.steps
        assert max(warmups) <= steps / 2, name


def test_a_setting_that_reuses_a_selection_without_a_tuned_knob_says_which_before_training(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import comparison

    monkeypatch.setattr(comparison, "RESULTS", tmp_path)
    searched = {v: {"best": "2", "rows": []} for v in ("pra", "exact-rollout")}
    (tmp_path / "comparison_digits32.json").write_text(json.dumps({"selection": {"knobs": {},
                                                                                 "guidance_search": searched}}))
    with pytest.raises(SystemExit, match="has no selection for exact-rollout: rerun --settings digits32"):
        comparison.reuse_selection(tmp_path / "select", "digits32", ["pra", "exact-rollout"], [], 10)
    assert not (tmp_path / "select").exists()


@pytest.mark.slow
def test_comparison_selects_on_its_own_seed_tests_on_others_and_reports_paired_statistics(tmp_path):
    quick = ["model.preset=micro", "train.steps=4", "train.ckpt_every=2", "sample.steps=2", "sample.batch_size=20",
             'eval.features={name="featnet",steps=30,width=8,features=16}']
    command = [sys.executable, str(ROOT / "benchmarks" / "comparison.py"), "--settings", "digits32,photo64",
               "--variants", "pra,noise-inj,lowdim-pixel-noise,pixel-ar", "--seeds", "2", "--other-seeds", "1", "--num", "20",
               "--search", "1,2", "--out", str(tmp_path / "runs"), *quick]
    env = {"PRAKIT_BENCHMARK_RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "1", "PATH": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "results" / "comparison_digits32.json").read_text())
    knobs = record["selection"]["knobs"]
    tuned, matched = knobs["noise-inj"], knobs["lowdim-pixel-noise"]
    assert set(tuned["fid"]) == {"0.1", "0.2", "0.35", "0.5"} and str(tuned["chosen"]) == min(tuned["fid"],
                                                                                           key=tuned["fid"].get)
    runs = tmp_path / "runs" / "digits32"
    selection = json.loads((runs / "select" / "runs" / "sweep.json").read_text())
    assert len(selection["runs"]) == 6  # 4 sigmas, pra, pixel-ar; on a seed no test run uses
    assert all("train.seed=100" in run["overrides"] for run in selection["runs"].values())
    perturbation = json.loads((runs / "select" / "pixel_perturbation" / "pixel_perturbation.json").read_text())
    assert perturbation["run"].endswith("pra") and matched["chosen"] == perturbation["matched_noise_sigma_max"]
    for variant, knob in (("noise-inj", tuned), ("lowdim-pixel-noise", matched)):
        assert f"sigma_max = {knob['chosen']}" in (runs / "test" / "configs" / f"{variant}.toml").read_text()
    common = record["comparison"]["common"]
    assert [(Path(row["runs"][0]).parent.name, row["seeds"]) for row in common["rows"]] == [
        ("deciding", [0, 1]), ("deciding", [0, 1]), ("deciding", [0, 1]), ("others", [0])]
    versus = [row for row in common["versus"]["rows"]]
    assert [row["pairs"] for row in versus] == [2, 2, 1]  # noise-inj, lowdim-pixel-noise and pixel-ar against pra
    fid = versus[0]["measures"]["fid"]
    assert set(fid["differences"]) == {"0", "1"} and fid["ci_low"] <= fid["mean"] <= fid["ci_high"]
    order = ["pra", "noise-inj", "lowdim-pixel-noise", "pixel-ar"]
    assert [(r["variant"], r["guidance"].split(" ")[0]) for r in record["rows"]] == [
        *((v, "common") for v in order), *((v, "best") for v in order)]
    for variant, search in record["selection"]["guidance_search"].items():
        scale = search["best"]
        assert len(search["rows"]) == 2 and scale in ("1", "2", "1.0", "2.0")
        for run in (runs / "test").glob(f"*/{variant},seed=*"):  # every test seed at its variant's scale
            assert (run / "search" / f"cfg_scale={scale}" / "eval.json").is_file()
    rank = record["correlations"]["common"]["rollout_gap"]["runs"]
    assert rank["n"] == 7 and rank["interval"].startswith("95% percentile bootstrap")
    assert all((tmp_path / "results" / name).is_file() for name in record["plots"])
    earlier = record["earlier_ranking"]  # the first seeds again at their checkpoint before the last
    assert list(earlier["variants"]) == order and earlier["rank"]["n"] == 4
    assert all(row["checkpoint"].endswith("ckpt-00000002.pt") for row in earlier["variants"].values())
    # photo64 reuses digits32's tuned knobs and guidance, and measures its matched knob on its own pra
    photo = json.loads((tmp_path / "results" / "comparison_photo64.json").read_text())
    assert photo["selection"]["from"] == "digits32" and photo["num"] == 20
    assert photo["selection"]["knobs"]["noise-inj"] == tuned
    assert {v: s["best"] for v, s in photo["selection"]["guidance_search"].items()} == {
        v: s["best"] for v, s in record["selection"]["guidance_search"].items()}
    photo_runs = tmp_path / "runs" / "photo64"
    assert list(json.loads((photo_runs / "select" / "runs" / "sweep.json").read_text())["runs"]) == ["pra"]
    measured = json.loads((photo_runs / "select" / "pixel_perturbation" / "pixel_perturbation.json").read_text())
    assert photo["selection"]["knobs"]["lowdim-pixel-noise"]["chosen"] == measured["matched_noise_sigma_max"]
    assert "photo64" in measured["run"]
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert rerun.returncode == 0 and rerun.stdout.count("0 jobs submitted") == 7, rerun.stdout[-3000:]
