"""The numbers themselves: KID, precision/recall, the probe and the rollout gap, checked against
their definitions (the Frechet distance in test_frechet.py), and the features they are computed
from (streaming, caching, reference files)."""

import json

import numpy as np
import pytest
import torch
from prakit_eval.distribution import KIDConfig, precision_recall
from prakit_eval.model_metrics import RolloutGapConfig, probe_accuracy
from toys import ToyFeatures, ToyFeaturesConfig

from prakit import registry
from prakit.config import EvalConfig, ModelConfig, SampleConfig
from prakit.errors import PrakitError
from prakit.eval import EvalContext
from prakit.eval.features import cached_features, extract, moments
from prakit.eval.frechet import frechet_distance
from prakit.eval.reference import FileReference, NpzImages, StoreImages, StoreReference, open_reference, write_reference
from prakit.model import ARModel
from prakit.testing.contracts import labelled_images, write_images


def test_moments_are_the_float64_mean_and_unbiased_covariance():
    features = np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32)
    stats = moments(features, chunk=97)  # streamed in uneven chunks
    np.testing.assert_allclose(stats.mu, features.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)
    assert stats.count == 1000


def kid(fake: np.ndarray, real: np.ndarray, seed: int = 0, subsets: int = 50) -> float:
    from prakit_eval.distribution import KID

    class Stub:  # what KID reads of the context
        def features(self, which, cfg=None):
            from prakit.eval.features import Features

            values = fake if which == "samples" else real
            return Features(values, None, np.zeros(len(values), np.int64), "stub")

    return KID(KIDConfig(subsets=subsets, subset_size=100, seed=seed)).evaluate(Stub())["kid"]


def test_kid_is_unbiased_on_equal_distributions():
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(8, 8))

    def draw(shift=0.0):
        return rng.normal(size=(300, 8)) @ mixing + shift

    equal = np.array([kid(draw(), draw(), seed=s) for s in range(12)])
    # an unbiased estimate of 0 scatters around 0 (a biased one would always be positive)
    assert (equal < 0).any() and (equal > 0).any()
    assert abs(equal.mean()) < 3 * equal.std() / np.sqrt(len(equal))
    shifted = kid(draw(shift=3.0), draw())  # a shift of about one standard deviation
    assert shifted > 10 * np.abs(equal).max()


def test_precision_and_recall_of_identical_and_disjoint_sets():
    points = torch.from_numpy(np.random.default_rng(2).normal(size=(300, 16))).float()
    assert precision_recall(points, points.clone(), k=3, block=64) == (1.0, 1.0)
    far = points + 100.0
    precision, recall = precision_recall(points, far, k=3, block=64)
    assert precision == 0.0 and recall == 0.0
    # half of the samples on the reference manifold, half far away: precision 1/2, recall stays high
    half = torch.cat([points[:150], far[150:]])
    precision, recall = precision_recall(points, half, k=3, block=64)
    assert precision == pytest.approx(0.5, abs=0.02) and recall > 0.4


def test_precision_recall_blocks_do_not_change_the_result():
    rng = np.random.default_rng(3)
    real, fake = (torch.from_numpy(rng.normal(size=(257, 5))).float() for _ in range(2))
    assert precision_recall(real, fake, block=1000) == precision_recall(real, fake, block=33)


def test_the_linear_probe_separates_linearly_separable_features():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(5, 32)) * 3
    labels = rng.integers(0, 5, 1000)
    x = torch.from_numpy(centres[labels] + rng.normal(size=(1000, 32))).float()
    y = torch.from_numpy(labels)
    assert probe_accuracy(x[:800], y[:800], x[800:], y[800:]) > 0.97
    shuffled = y[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]  # no signal: chance
    assert probe_accuracy(x[:800], shuffled[:800], x[800:], shuffled[800:]) < 0.4


@pytest.fixture
def toy_store(tmp_path, toy_plugin):
    images, labels = labelled_images(50, seed=5)
    return write_images(tmp_path / "real.zarr", images, labels, ("dark", "light"))


def test_streamed_features_equal_in_memory_features(toy_store):
    network = ToyFeatures(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)
    whole = network(torch.from_numpy(toy_store.images[:]))[0].numpy()
    batches = extract(StoreImages(toy_store), network, np.arange(50), batch_size=7)
    streamed = np.concatenate([outputs["features"] for _, outputs, _ in batches])
    np.testing.assert_allclose(streamed, whole, rtol=1e-6)
    cached = cached_features(StoreImages(toy_store), network, "toy", batch_size=7)
    np.testing.assert_allclose(cached.features, whole, rtol=1e-6)
    assert cached.labels.tolist() == toy_store.all_labels().tolist()


class CountingFeatures(ToyFeatures):
    calls = 0

    def forward(self, images):
        type(self).calls += len(images)
        return super().forward(images)


def test_the_feature_cache_is_reused_and_invalidated_when_the_store_changes(toy_store, tmp_path):
    network = CountingFeatures(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)
    first = cached_features(StoreImages(toy_store), network, "toy").features.copy()
    assert CountingFeatures.calls == 50
    again = cached_features(StoreImages(toy_store), network, "toy").features
    assert CountingFeatures.calls == 50  # read from the cache
    np.testing.assert_array_equal(first, again)
    assert (tmp_path / "real.zarr.features").is_dir()
    # the same path, other images: extracted again
    import shutil

    shutil.rmtree(tmp_path / "real.zarr")
    images, labels = labelled_images(50, seed=6)
    changed = write_images(tmp_path / "real.zarr", images, labels, ("dark", "light"))
    fresh = cached_features(StoreImages(changed), network, "toy").features
    assert CountingFeatures.calls == 100
    assert not np.allclose(fresh, first)
    # a subset is its own cache entry, spread over the store
    part = cached_features(StoreImages(changed), network, "toy", count=10)
    assert len(part) == 10 and CountingFeatures.calls == 110


def test_spatial_features_are_cached_beside_the_features_from_the_same_pass(toy_store, tmp_path):
    network = CountingFeatures(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)
    before = CountingFeatures.calls
    plain = cached_features(StoreImages(toy_store), network, "toy", batch_size=7)  # kept although not asked for
    assert CountingFeatures.calls == before + 50
    both = cached_features(StoreImages(toy_store), network, "toy", spatial=True)
    assert CountingFeatures.calls == before + 50  # no second pass
    pixels = torch.from_numpy(toy_store.images[:]).permute(0, 3, 1, 2).float() / 255
    expected = torch.nn.functional.adaptive_avg_pool2d(pixels, 3).flatten(1).numpy()
    assert both.spatial.shape == (50, network.num_spatial) == (50, 27)
    np.testing.assert_allclose(both.spatial, expected, rtol=1e-6)
    np.testing.assert_array_equal(both.features, plain.features)
    folder = next((tmp_path / "real.zarr.features").iterdir())
    (folder / "spatial.npy").unlink()  # a cache from before spatial features were kept
    assert cached_features(StoreImages(toy_store), network, "toy").spatial is None
    assert CountingFeatures.calls == before + 50  # still serves the features
    again = cached_features(StoreImages(toy_store), network, "toy", spatial=True)
    assert CountingFeatures.calls == before + 100 and (folder / "spatial.npy").exists()
    np.testing.assert_allclose(again.spatial, expected, rtol=1e-6)


class PoolOnly(ToyFeatures):
    """The toy network (and fingerprint) without its spatial features."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_spatial = 0


def test_asking_a_network_without_spatial_features_for_them_is_a_clear_error(toy_store):
    network = PoolOnly(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)
    assert cached_features(StoreImages(toy_store), network, "pool_only").spatial is None
    with pytest.raises(PrakitError, match="'pool_only' gives no spatial features") as error:
        cached_features(StoreImages(toy_store), network, "pool_only", spatial=True)
    assert "\n" not in str(error.value)


def write_adm_npz(path, images, mu, sigma, labels=None, **spatial):
    """An npz laid out as the ADM suite's reference batches (``spatial``: its mu_s and sigma_s)."""
    arrays = {"arr_0": images, "mu": mu, "sigma": sigma, **spatial}
    if labels is not None:
        arrays["arr_1"] = labels
    np.savez(path, **arrays)


class ReadsADMStatistics(ToyFeatures):  # as inception declares
    reads_adm_statistics = True


def test_an_adm_reference_batchs_spatial_statistics_serve_sfid(tmp_path):
    images, _ = labelled_images(10, seed=7)
    mu_s, sigma_s = np.linspace(0, 1, 27), np.diag(np.linspace(1, 2, 27))
    write_adm_npz(tmp_path / "VIRTUAL_toy.npz", images, np.zeros(12), np.eye(12), mu_s=mu_s, sigma_s=sigma_s)
    network = ReadsADMStatistics(ToyFeaturesConfig(), store=None, device=None, progress=False)
    stats = open_reference(tmp_path / "VIRTUAL_toy.npz").moments(network, "inception", count=None, spatial=True)
    np.testing.assert_array_equal(stats.mu, mu_s)
    np.testing.assert_array_equal(stats.sigma, sigma_s)
    write_adm_npz(tmp_path / "pool_only.npz", images, np.zeros(12), np.eye(12))  # as MAR's adm_in256_stats.npz
    with pytest.raises(PrakitError) as error:
        open_reference(tmp_path / "pool_only.npz").moments(network, "inception", count=None, spatial=True)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'pool_only.npz'} holds no spatial statistics (mu_s, sigma_s), which sfid")
    assert "the ADM reference batch as published" in message and "\n" not in message


def test_an_adm_reference_batch_is_read_as_it_is(tmp_path, toy_store):
    images, labels = labelled_images(30, seed=7)
    mu, sigma = np.arange(12.0), np.eye(12) * 2
    write_adm_npz(tmp_path / "VIRTUAL_toy.npz", images, mu, sigma, labels)
    ref = open_reference(tmp_path / "VIRTUAL_toy.npz")
    assert isinstance(ref, FileReference) and ref.describe()["kind"] == "adm"
    npz = NpzImages(tmp_path / "VIRTUAL_toy.npz")
    picked, picked_labels = npz.read(np.array([0, 1, 2, 9, 17, 29]))
    np.testing.assert_array_equal(picked, images[[0, 1, 2, 9, 17, 29]])
    assert picked_labels.tolist() == labels[[0, 1, 2, 9, 17, 29]].tolist()
    network = ReadsADMStatistics(ToyFeaturesConfig(), store=None, device=None, progress=False)
    stats = ref.moments(network, "inception", count=None)  # mu and sigma exactly as stored
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)
    features = ref.features(network, "inception", count=None)  # KID and P/R use the images' features
    np.testing.assert_allclose(features.features, network(torch.from_numpy(images))[0].numpy(), rtol=1e-6)
    network = ToyFeatures(ToyFeaturesConfig(), store=None, device=None, progress=False)
    with pytest.raises(PrakitError, match="holds the ADM suite's Inception statistics; evaluating with 'toy'"):
        ref.moments(network, "toy", count=None)


def test_a_written_reference_round_trips_and_refuses_another_network(tmp_path, toy_store):
    network = ToyFeatures(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)
    out = write_reference(StoreReference(toy_store), network, "toy", tmp_path / "ref.npz")
    ref = open_reference(out)
    direct = moments(network(torch.from_numpy(toy_store.images[:]))[0].numpy())
    stats = ref.moments(network, "toy", count=None)
    np.testing.assert_allclose(stats.mu, direct.mu, rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, direct.sigma, rtol=1e-5, atol=1e-9)
    assert len(ref.features(network, "toy", count=None)) == 50 and stats.count == 50
    assert json.loads(str(np.load(out)["prakit"]))["source"] == str(toy_store.path)

    class Other(ToyFeatures):
        def fingerprint(self):
            return "0f" * 8

    with pytest.raises(PrakitError, match=r"was made with 'toy' .* make the reference again"):
        ref.moments(Other(ToyFeaturesConfig(), store=None, device=None, progress=False), "toy", count=None)


def test_a_written_reference_carries_the_spatial_statistics_where_the_network_gives_them(tmp_path, toy_store):
    pool_only = PoolOnly(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)
    without = write_reference(StoreReference(toy_store), pool_only, "toy", tmp_path / "pool_only.npz")
    assert "mu_s" not in np.load(without).files
    network = ToyFeatures(ToyFeaturesConfig(), store=toy_store, device=None, progress=False)  # the same fingerprint
    with pytest.raises(PrakitError) as error:
        open_reference(without).moments(network, "toy", count=None, spatial=True)
    assert str(error.value) == (f"{without} holds no spatial statistics (mu_s, sigma_s), which sfid needs: write it "
                                f"again with `prakit reference {toy_store.path} --out {without} --features toy`")
    out = write_reference(StoreReference(toy_store), network, "toy", tmp_path / "ref.npz")
    pixels = torch.from_numpy(toy_store.images[:]).permute(0, 3, 1, 2).float() / 255
    direct = moments(torch.nn.functional.adaptive_avg_pool2d(pixels, 3).flatten(1).numpy())
    stats = open_reference(out).moments(network, "toy", count=None, spatial=True)
    np.testing.assert_allclose(stats.mu, direct.mu, rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, direct.sigma, rtol=1e-5, atol=1e-9)
    assert stats.mu.shape == (27,) and stats.count == 50


def sfid_context(tmp_path, features, samples=None) -> EvalContext:
    images, labels = labelled_images(40, seed=9)
    real = write_images(tmp_path / "real.zarr", images[:24], labels[:24], ("dark", "light"))
    samples = samples or write_images(tmp_path / "samples.zarr", images[24:], labels[24:], ("dark", "light"))
    return EvalContext(EvalConfig(features=features), reference=StoreReference(real), samples=samples)


def test_sfid_is_the_frechet_distance_of_the_spatial_features(tmp_path, toy_plugin):
    from prakit_eval.distribution import FID, SFID, FIDConfig, SFIDConfig

    ctx = sfid_context(tmp_path, ToyFeaturesConfig())
    sfid = SFID(SFIDConfig()).evaluate(ctx)

    def spatial_moments(store):
        pixels = torch.from_numpy(store.images[:]).permute(0, 3, 1, 2).float() / 255
        return moments(torch.nn.functional.adaptive_avg_pool2d(pixels, 3).flatten(1).numpy())

    expected = frechet_distance(spatial_moments(ctx.samples), spatial_moments(ctx.real))
    assert sfid == {"sfid": pytest.approx(expected, rel=1e-5)}
    assert sfid["sfid"] > 0 and FID(FIDConfig()).evaluate(ctx)["fid"] != pytest.approx(sfid["sfid"], rel=1e-3)
    named = SFID(SFIDConfig(features=ToyFeaturesConfig())).evaluate(ctx)
    assert named == {"sfid@toy": sfid["sfid"]}


def test_sfid_with_a_network_without_spatial_features_fails_before_drawing_samples(tmp_path):
    from prakit_eval.distribution import SFID, SFIDConfig
    from prakit_eval.featnet import FeatNetConfig

    def draw():
        pytest.fail("sfid drew the samples before checking its feature network")

    ctx = sfid_context(tmp_path, FeatNetConfig(steps=5, width=8, features=8), samples=draw)
    with pytest.raises(PrakitError) as error:
        SFID(SFIDConfig()).evaluate(ctx)
    assert str(error.value) == ("sfid needs spatial features and the feature network 'featnet' gives none: evaluate "
                                'with inception (eval.features, or sfid\'s own features = { name = "inception" })')


def test_a_file_that_is_not_a_reference_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "x.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(PrakitError, match="not a reference file: it has no 'mu' and 'sigma'"):
        open_reference(tmp_path / "x.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(PrakitError, match="cannot read the reference file"):
        open_reference(tmp_path / "junk.npz")
    with pytest.raises(PrakitError, match="no reference at"):
        open_reference(tmp_path / "missing.npz")


def constant_model(bias: float, weight: float = 0.0) -> ARModel:
    """Toy backbone and generator, identity decoder: the generator's mean is ``weight * h + bias``."""
    cfg = ModelConfig(backbone=registry.get("backbone").config("toy"), generator=registry.get("generator").config("toy"),
                      decoder=registry.get("decoder").config("identity"),
                      rollout=registry.get("rollout").config("teacher_forcing"), patch_size=2)
    torch.manual_seed(0)
    model = ARModel(cfg, image_size=4, channels=3, num_classes=2).eval()
    with torch.no_grad():
        model.generator.mean.weight.fill_(weight)
        model.generator.mean.bias.fill_(bias)
    return model


def rollout_gap(model, store) -> dict:
    from prakit_eval.model_metrics import RolloutGap

    ctx = EvalContext(EvalConfig(), reference=StoreReference(store), model=model, sample_options=SampleConfig())
    return RolloutGap(RolloutGapConfig(num=8, temperature=1e-9)).evaluate(ctx)


def test_the_rollout_gap_is_zero_when_the_samples_are_the_truth(tmp_path, toy_plugin):
    white = write_images(tmp_path / "white.zarr", np.full((8, 4, 4, 3), 255, np.uint8), np.arange(8) % 2, ("a", "b"))
    exact = rollout_gap(constant_model(bias=1.0), white)  # every generated pixel is 1: the truth
    assert exact["rollout_gap"] == pytest.approx(0.0, abs=1e-12)
    assert max(exact["error_reading_truth"]) < 1e-12 and len(exact["error_reading_own"]) == 4
    # a model whose tokens depend on what it read, and which is wrong, reads its own errors differently
    wrong = rollout_gap(constant_model(bias=0.2, weight=0.3), white)
    assert abs(wrong["rollout_gap"]) > 1e-4 and wrong["error_reading_truth"][0] > 0.1


def test_the_default_feature_network_is_inception_only_when_its_weights_are_named(monkeypatch):
    from prakit_eval.inception import WEIGHTS_ENV as INCEPTION_WEIGHTS_ENV

    from prakit.eval.context import default_features

    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    assert default_features(EvalConfig()).name == "featnet"
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, "/weights/pt_inception-2015-12-05-6726825d.pth")
    assert default_features(EvalConfig()).name == "inception"
    chosen = registry.get("features").config("featnet", steps=10)
    assert default_features(EvalConfig(features=chosen)) is chosen  # the config's choice wins


def test_a_plugin_network_that_ranks_itself_higher_becomes_the_default(fresh_plugins):
    from typing import ClassVar

    import attrs
    from toys import ToyFeatures, ToyFeaturesConfig

    from prakit import plugins
    from prakit.eval.context import default_features

    @attrs.frozen
    class PreferredConfig(ToyFeaturesConfig):
        name: ClassVar[str] = "preferred"

    class Preferred(ToyFeatures):
        @classmethod
        def default_rank(cls):
            return 5

    class Plugin:
        @plugins.hookimpl
        def register_feature_networks(self, registrar):
            registrar.add(PreferredConfig, Preferred)

    plugins.register_plugin(Plugin(), name="preferred")
    assert default_features(EvalConfig()).name == "preferred"


def test_featnet_reads_greyscale_as_rgb_and_refuses_what_it_cannot_read(tmp_path):
    from prakit_eval.featnet import FeatNet, FeatNetConfig

    images, labels = labelled_images(30, seed=8)
    rgb = write_images(tmp_path / "rgb.zarr", images, labels, ("a", "b"))
    grey = write_images(tmp_path / "grey.zarr", images[..., :1].copy(), labels, ("a", "b"))
    cfg = FeatNetConfig(steps=5, width=8, features=8)
    on_rgb, on_grey = FeatNet(cfg, store=rgb), FeatNet(cfg, store=grey)
    one = torch.from_numpy(images[:4, ..., :1].copy())
    with torch.no_grad():
        torch.testing.assert_close(on_rgb(one)[0], on_rgb(one.expand(-1, -1, -1, 3))[0])
        with pytest.raises(PrakitError, match=r"\(1-channel images\) and cannot read 3-channel images"):
            on_grey(torch.from_numpy(images[:4]))


def test_class_consistency_reads_the_evaluations_featnet_and_fits_it_once(tmp_path):
    from prakit_eval.featnet import FeatNetConfig
    from prakit_eval.model_metrics import ClassConsistency, ClassConsistencyConfig

    images, labels = labelled_images(30, seed=3)
    real = write_images(tmp_path / "real.zarr", images, labels, ("a", "b"))
    samples = write_images(tmp_path / "samples.zarr", images[:10], labels[:10], ("a", "b"))
    chosen = FeatNetConfig(steps=5, width=8, features=8)
    ctx = EvalContext(EvalConfig(features=chosen), reference=StoreReference(real), samples=samples)
    numbers = ClassConsistency(ClassConsistencyConfig()).evaluate(ctx)
    assert 0 <= numbers["class_consistency"] <= 1
    fitted = [torch.load(path, weights_only=True)["key"] for path in (tmp_path / "real.zarr.features").glob("*.pt")]
    assert [json.loads(key)["config"]["steps"] for key in fitted] == [5]  # the chosen featnet, no default one
