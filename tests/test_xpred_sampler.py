"""benchmarks/xpred_sampler.py runs its three measurements on a tiny x-pred run and records them."""

import json

import pytest
from helpers import benchmark
from test_benchmarks import ROOT


@pytest.mark.slow
def test_xpred_sampler_measures_sampler_variants_noise_and_calibration_on_one_run(store, tmp_path):
    from helpers import prakit, small_run

    run, work = tmp_path / "run", tmp_path / "work"
    trained = prakit("train", str(ROOT / "experiments" / "digits" / "x-pred.toml"),
                     *small_run(store, "train.steps=2", "model.generator.width=16", "model.generator.depth=1",
                           'eval.features={name="featnet",steps=30,width=8,features=16}'), "--run-dir", str(run))
    assert trained.returncode == 0, trained.stderr
    benchmark("xpred_sampler.py", str(run), "--num", "8", "--work", str(work), "--variants", "clean,a05016a",
              results=tmp_path)
    rows = json.loads((tmp_path / "xpred_sampler.json").read_text())["rows"]
    assert [(r["variant"], r["unclamped"]) for r in rows] == [("clean", False), ("a05016a", True)]
    assert all({"fid", "precision", "recall"} <= set(r) for r in rows)
    generators = [(work / name / "config.toml").read_text() for name in ("clean", "a05016a")]
    assert 'last_step = "clean"' in generators[0] and 'last_step = "euler"' in generators[1]
    benchmark("xpred_sampler.py", str(run), "--num", "8", "--work", str(work), "--noise", "0.01", results=tmp_path)
    assert (work / "clean-noise-0.01.zarr.eval" / "eval.json").is_file()
    benchmark("xpred_sampler.py", str(run), "--num", "4", "--calibration", results=tmp_path)
    calibration = json.loads((tmp_path / "xpred_calibration.json").read_text())["rows"]
    assert len(calibration) == 4 and all(len(r["ratio_by_position"]) == 4 for r in calibration)
