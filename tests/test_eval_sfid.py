"""sFID end to end: ``prakit reference`` writes Inception's spatial statistics beside the pool3 ones,
``prakit eval RUN --evaluators fid,sfid`` reports both from one pass over the samples, and a
reference without spatial statistics is a one-line error. Inception runs on random weights,
accepted in place of the published file."""

import hashlib
import json

import numpy as np
import pytest
import torch
from helpers import QUICKSTART, small_run
from prakit_eval import inception
from prakit_eval.inception import WEIGHTS_ENV, InceptionV3

from prakit.cli import main
from prakit.config import load_config
from prakit.eval.features import Moments, moments
from prakit.eval.frechet import frechet_distance
from prakit.training.loop import train

pytestmark = pytest.mark.slow  # Inception on the CPU


@pytest.fixture
def random_inception(tmp_path, monkeypatch):
    path = tmp_path / "inception.pth"
    torch.save(InceptionV3.with_random_weights(seed=0).state_dict(), path)
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setenv(WEIGHTS_ENV, str(path))


def test_prakit_eval_reports_sfid_against_a_reference_prakit_wrote(store, tmp_path, random_inception, capsys):
    run = tmp_path / "run"
    train(load_config(QUICKSTART, small_run(store, "train.steps=2", 'eval.features.name="inception"')), run,
          progress=False)
    ref = tmp_path / "digits-inception.npz"
    assert main(["reference", str(store), "--out", str(ref), "--features", "inception", "--count", "16",
                 "--no-progress"]) == 0
    with np.load(ref) as data:
        assert data["mu"].shape == (2048,) and data["mu_s"].shape == (2023,) and data["sigma_s"].shape == (2023, 2023)
        pool, spatial = (Moments(data[mu], data[sigma], 16) for mu, sigma in (("mu", "sigma"), ("mu_s", "sigma_s")))

    assert main(["eval", str(run), "--ref", str(ref), "--evaluators", "fid,sfid", "--num", "8", "--no-progress"]) == 0
    numbers = json.loads((run / "eval.json").read_text())["numbers"]
    [cache] = (run / "samples").glob("*.zarr.features/inception-*")  # one pass gave both
    features, spatial_features = np.load(cache / "features.npy"), np.load(cache / "spatial.npy")
    assert features.shape == (8, 2048) and spatial_features.shape == (8, 2023)
    assert numbers["fid"] == pytest.approx(frechet_distance(moments(features), pool), rel=1e-9)
    assert numbers["sfid"] == pytest.approx(frechet_distance(moments(spatial_features), spatial), rel=1e-9)
    assert numbers["sfid"] > 0 and numbers["sfid"] != pytest.approx(numbers["fid"], rel=1e-2)

    adm = tmp_path / "adm_stats.npz"  # pool3 statistics only, as MAR's adm_in256_stats.npz
    np.savez(adm, mu=pool.mu, sigma=pool.sigma)
    capsys.readouterr()
    # without --num it would draw 1,000 new samples; the reference fails before any is drawn
    assert main(["eval", str(run), "--ref", str(adm), "--evaluators", "sfid", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error == (f"prakit: error: {adm} holds no spatial statistics (mu_s, sigma_s), which sfid needs: use the "
                     "ADM reference batch as published, which has them, or a store of real images as the reference\n")
    assert [path.name for path in (run / "samples").glob("*.zarr")] == [cache.parent.name.removesuffix(".features")]
