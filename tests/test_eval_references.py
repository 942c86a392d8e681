"""References and evaluations that cannot give a number are refused in one line naming the file:
too few images, damaged or mismatched statistics, another image size or class count."""

import json

import numpy as np
import pytest
from helpers import QUICKSTART, prakit
from toys import ToyFeatures, ToyFeaturesConfig

from prakit.config import SampleConfig, load_config
from prakit.errors import PrakitError
from prakit.eval.evaluate import Target, evaluate, resolve
from prakit.eval.features import moments
from prakit.eval.frechet import frechet_distance
from prakit.eval.reference import StoreReference, open_reference, reference_count, write_reference
from prakit.io import DamagedFileError
from prakit.testing.contracts import labelled_images, write_images


@pytest.fixture
def toy_store(tmp_path, toy_plugin):
    images, labels = labelled_images(20, seed=5)
    return write_images(tmp_path / "real.zarr", images, labels, ("dark", "light"))


@pytest.fixture
def network(toy_store):
    return ToyFeatures(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)


@pytest.fixture
def reference(tmp_path, toy_store, network):
    return write_reference(StoreReference(toy_store), network, "toy", tmp_path / "ref.npz")


def rewrite(path, **arrays):
    """``path`` with some arrays replaced."""
    with np.load(path) as data:
        kept = {key: data[key] for key in data.files}
    np.savez(path, **{**kept, **arrays})


def test_moments_of_fewer_than_two_images_name_what_they_are_of_and_the_fix():
    with pytest.raises(PrakitError) as error:
        moments(np.zeros((1, 4)), of="the samples s.zarr", fix="evaluate more of them (--num)")
    assert str(error.value) == ("the samples s.zarr: feature moments need at least 2 images, got 1; "
                                "evaluate more of them (--num)")


@pytest.mark.parametrize("count", [0, 1, -1])
def test_a_reference_over_fewer_than_two_images_is_refused(toy_store, count):
    with pytest.raises(PrakitError, match=rf"--count must be at least 2 \(.*\), got {count}$"):
        reference_count(toy_store, count)
    assert reference_count(toy_store, None) == 20 and reference_count(toy_store, 99) == 20


def test_a_store_of_one_image_makes_no_reference(tmp_path, toy_plugin):
    images, labels = labelled_images(1, seed=5)
    one = write_images(tmp_path / "one.zarr", images, labels, ("dark", "light"))
    with pytest.raises(PrakitError, match="one.zarr holds only 1 image.*needs at least 2: give a store of more"):
        reference_count(one, None)


@pytest.mark.slow
def test_the_cli_refuses_a_count_before_building_the_feature_network(toy_store, tmp_path):
    done = prakit("reference", str(toy_store.path), "--out", str(tmp_path / "r.npz"), "--count", "1",
                  "--features", "featnet")  # featnet would first train on the store
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("prakit: error: --count must be at least 2") and not (tmp_path / "r.npz").exists()


@pytest.mark.parametrize("arrays, problem", [
    ({"mu": np.full(12, np.nan)}, "mu holds NaN or infinity"),
    ({"sigma": np.where(np.eye(12) > 0, np.inf, 0.0)}, "sigma holds NaN or infinity"),
    ({"sigma": np.pad(np.eye(12), ((0, 0), (0, 1)))}, r"sigma has shape \(12, 13\), not the \(12, 12\) of its mu"),
    ({"sigma": np.eye(11)}, r"sigma has shape \(11, 11\), not the \(12, 12\) of its mu"),
    ({"mu": np.zeros((12, 1))}, r"mu has shape \(12, 1\), not \(D,\)"),
    ({"mu": np.array(["a"] * 12)}, "mu cannot be read as numbers"),
])
def test_damaged_statistics_are_refused_before_any_linear_algebra(reference, network, arrays, problem):
    rewrite(reference, **arrays)
    with pytest.raises(DamagedFileError, match=f"^{reference} is damaged: {problem}.*; write it again with "
                                               f"`prakit reference .* --out {reference} --features toy`$"):
        open_reference(reference).moments(network, "toy", count=None)


def test_statistics_of_another_width_are_from_another_network(tmp_path, network):
    np.savez(tmp_path / "VIRTUAL.npz", mu=np.zeros(5), sigma=np.eye(5))

    class ReadsADMStatistics(ToyFeatures):
        reads_adm_statistics = True

    adm = ReadsADMStatistics(ToyFeaturesConfig(), store=None, device=None, progress=False)
    with pytest.raises(PrakitError, match=r"holds statistics of 5 features; the feature network 'inception' gives 12, "
                                          "so it was made with another network: download the ADM reference batch again"):
        open_reference(tmp_path / "VIRTUAL.npz").moments(adm, "inception", count=None)


def test_a_damaged_prakit_entry_is_named(reference):
    rewrite(reference, prakit=np.array(json.dumps({"network": "toy"})))
    with pytest.raises(DamagedFileError, match=f"{reference} is damaged: prakit.network_fingerprint is missing"):
        open_reference(reference)
    rewrite(reference, prakit=np.array("{cut"))
    with pytest.raises(DamagedFileError, match=f"{reference} is damaged: not JSON"):
        open_reference(reference)
    rewrite(reference, prakit=np.array(json.dumps({"network": "toy", "network_fingerprint": "0", "source": "s",
                                                   "count": 20, "image_shape": "16x16x3", "classes": 2})))
    with pytest.raises(DamagedFileError, match=f"{reference} is damaged: prakit.image_shape is a string where a list"):
        open_reference(reference)


def test_the_frechet_distance_refuses_non_finite_moments_before_lapack():
    good = moments(np.random.default_rng(0).normal(size=(10, 3)))
    bad = type(good)(good.mu, np.where(np.eye(3) > 0, np.nan, good.sigma), 10)
    with pytest.raises(PrakitError, match="needs finite moments, got NaN or infinity"):
        frechet_distance(good, bad)


def test_a_reference_of_other_images_is_refused(reference, toy_store):
    shape = toy_store.image_shape
    for ref in (open_reference(reference), StoreReference(toy_store)):
        ref.fits(shape, 2)
        with pytest.raises(PrakitError, match=rf"is a reference of {shape[0]}x{shape[1]}x3 images in 2 classes; "
                                              r"the samples are 16x16x3 images in 10 classes: give a reference made"):
            ref.fits((16, 16, 3), 10)


def test_an_evaluation_checks_its_reference_before_drawing_samples(reference, tmp_path):
    cfg = load_config(QUICKSTART, ["data.image_size=16", "data.num_classes=10"])
    target = Target(cfg, tmp_path / "never.zarr", None, SampleConfig(), 4, tmp_path / "out")
    with pytest.raises(PrakitError, match="the samples are 16x16x3 images in 10 classes"):
        evaluate(target, evaluators=["fid"], reference=str(reference), progress=False)
    assert not (tmp_path / "never.zarr").exists() and not (tmp_path / "out").exists()


def test_an_evaluation_of_one_sample_is_refused_first(tmp_path):
    with pytest.raises(PrakitError, match=r"--num must be at least 2 \(feature moments need 2 samples\), got 1"):
        resolve(tmp_path / "no-such-run", num=1)


def test_a_damaged_feature_cache_is_extracted_again(toy_store, network):
    from prakit.eval.features import cache_folder, cached_features
    from prakit.eval.reference import StoreImages

    first = np.array(cached_features(StoreImages(toy_store), network, "toy").features)
    (meta,) = cache_folder(StoreImages(toy_store)).glob("*/meta.json")
    meta.write_text('{"images": ')
    again = cached_features(StoreImages(toy_store), network, "toy").features
    np.testing.assert_array_equal(again, first)
    assert json.loads(meta.read_text())["count"] == 20
