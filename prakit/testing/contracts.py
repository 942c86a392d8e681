"""Contract tests every component of a kind must pass. Subclass one in a test module::

    from prakit.testing import DecoderContract

    class TestMyDecoder(DecoderContract):
        config = MyDecoderConfig(state_dim=8)

pytest then runs every ``test_*`` method against the registered component built from
``config``. Sizes are tiny so a whole contract runs in about a second on a CPU. A check that does
not apply to a component (``per_token = False``, no trainable parameters, ...) is skipped, saying why.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from prakit import registry
from prakit.config import ModelConfig, SampleConfig, structure, unstructure
from prakit.data import open_store
from prakit.kinds import ComponentConfig
from prakit.model import ARModel
from prakit.testing.standins import register_stand_ins, remove_stand_ins, stand_in_model_config


class ComponentContract:
    """Checks shared by every kind: registration, config round trip, seeded construction."""

    kind: ClassVar[str]
    config: ClassVar[ComponentConfig]
    seed: ClassVar[int] = 0

    @pytest.fixture(autouse=True)
    def _stand_ins(self):
        """The stand-ins a check registers are gone after it, so they never show in a registry listing."""
        yield
        remove_stand_ins()

    def deps(self) -> dict[str, Any]:
        """The dependencies the component is built with."""
        return {}

    def build(self, seed: int | None = None) -> Any:
        torch.manual_seed(self.seed if seed is None else seed)
        return registry.get(self.kind).build(self.config, **self.deps())

    def test_registered_under_its_name(self):
        entry = registry.get(self.kind).entry(self.config.name)
        assert entry.config_class is type(self.config)

    def test_config_round_trips(self):
        data = unstructure(self.config)
        assert data["name"] == self.config.name
        base = registry.get(self.kind).kind.config
        assert structure(data, base) == self.config

    def test_construction_is_deterministic_under_a_seed(self):
        a, b = self.build(), self.build()
        assert type(a) is type(b)
        self.assert_same_build(a, b)

    def assert_same_build(self, a: Any, b: Any) -> None:
        """Fail unless ``a`` and ``b``, built under one seed, are alike: the same parameters and buffers."""
        _assert_same_state(a, b)


class ModuleContract(ComponentContract):
    """Checks for components that are ``nn.Module``s with parameters."""

    def loss(self, module: Any) -> torch.Tensor:
        """A scalar that should depend on every trainable parameter."""
        raise NotImplementedError

    def assert_same_build(self, a, b):
        """The same parameters and buffers, and the same loss (where a tensor kept outside both shows)."""
        super().assert_same_build(a, b)
        torch.testing.assert_close(_seeded(self.seed, self.loss, a), _seeded(self.seed, self.loss, b))

    def test_gradients_reach_every_parameter(self):
        module = self.build()
        perturb_parameters(module)  # zero-initialised gates would hide a broken gradient path
        loss = self.loss(module)
        if not any(p.requires_grad for p in module.parameters()):
            assert not loss.requires_grad  # nothing to train, nothing may pretend otherwise
            pytest.skip(f"{type(module).__qualname__} has no trainable parameters")
        loss.backward()
        missing = [
            n for n, p in module.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
        ]
        assert not missing, f"no gradient reaches {missing}"


class DecoderContract(ModuleContract):
    """Codes batches of 2 x 5 tokens of ``patch_size`` x ``patch_size`` pixels with ``channels``
    channels (12 values by default)."""

    kind = "decoder"
    patch_size: ClassVar[int] = 2
    channels: ClassVar[int] = 3
    per_token: ClassVar[bool] = True

    @property
    def token_dim(self) -> int:
        return self.patch_size**2 * self.channels

    def deps(self):
        return {"token_dim": self.token_dim, "patch_size": self.patch_size, "channels": self.channels}

    def tokens(self, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(2, 5, self.token_dim, generator=g) * 2 - 1

    def loss(self, decoder):
        return decoder.reconstruction_loss(self.tokens())

    def test_shapes_and_dtype(self):
        decoder, x = self.build().eval(), self.tokens()
        z = decoder.encode(x)
        assert z.shape == (2, 5, decoder.state_dim) and z.dtype == x.dtype
        assert decoder.decode(z).shape == x.shape and decoder.decode(z).dtype == x.dtype
        assert decoder.token_dim == self.token_dim

    def test_deterministic(self):
        decoder, x = self.build().eval(), self.tokens()
        torch.testing.assert_close(decoder.decode(decoder.encode(x)), decoder.decode(decoder.encode(x)))

    def test_tokens_are_coded_independently(self):
        """Changing token 2 changes no other token's state nor decoding, in training (where a norm
        over the batch's tokens shows) and in eval mode."""
        if not self.per_token:
            pytest.skip("per_token = False: the decoder reads neighbouring tokens")
        decoder, x = self.build(), self.tokens()
        y = x.clone()
        y[:, 2] = -x[:, 2]
        others = [0, 1, 3, 4]
        for mode in ("training", "eval"):
            decoder.train(mode == "training")
            with torch.no_grad():  # the same seed for both calls: the same dropout masks
                z, z2 = _seeded(self.seed, decoder.encode, x), _seeded(self.seed, decoder.encode, y)
                x_, y_ = _seeded(self.seed, decoder.decode, z), _seeded(self.seed, decoder.decode, z2)
            torch.testing.assert_close(z[:, others], z2[:, others], msg=f"encode couples the tokens in {mode} mode")
            torch.testing.assert_close(x_[:, others], y_[:, others], msg=f"decode couples the tokens in {mode} mode")

    def test_reconstruction_loss_is_a_finite_scalar(self):
        loss = self.loss(self.build())
        assert loss.shape == () and torch.isfinite(loss)

    def test_states_lie_within_the_declared_bound(self):
        """``state_bound``, where declared, bounds every component of an encoded state (heads clip to it)."""
        decoder = self.build().eval()
        if decoder.state_bound is None:
            pytest.skip("state_bound = None: unbounded states")
        assert decoder.state_bound > 0
        with torch.no_grad():
            largest = max(decoder.encode(self.tokens(seed)).abs().max().item() for seed in range(3))
        assert largest <= decoder.state_bound * (1 + 1e-5), f"a state reaches {largest}, beyond state_bound"

    def test_project_keeps_encoded_states_and_is_idempotent(self):
        """``project`` maps a generated state onto the set ``encode`` produces: encoded states stay
        where they are, and projecting twice is projecting once."""
        decoder = self.build().eval()
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            z = decoder.encode(self.tokens())
            torch.testing.assert_close(decoder.project(z), z, atol=1e-4, rtol=1e-4, msg="project moves an encoded state")
            projected = decoder.project(3 * torch.randn(z.shape, generator=g))
            assert projected.shape == z.shape and projected.dtype == z.dtype
            torch.testing.assert_close(decoder.project(projected), projected, atol=1e-4, rtol=1e-4,
                                       msg="project is not idempotent")


class BackboneContract(ModuleContract):
    kind = "backbone"
    token_dim: ClassVar[int] = 12
    grid: ClassVar[tuple[int, int]] = (3, 3)
    num_classes: ClassVar[int] = 10

    @property
    def seq_len(self) -> int:
        return self.grid[0] * self.grid[1]

    def deps(self):
        return {
            "token_dim": self.token_dim,
            "seq_len": self.seq_len,
            "num_classes": self.num_classes,
            "grid": self.grid,
        }

    def inputs(self, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        tokens = torch.rand(3, self.seq_len - 1, self.token_dim, generator=g) * 2 - 1
        labels = torch.tensor([0, self.num_classes - 1, self.num_classes])  # incl. the null class
        return tokens, labels

    def loss(self, backbone):
        return backbone(*self.inputs()).square().mean()

    def test_shapes_and_dtype(self):
        backbone = self.build().eval()
        tokens, labels = self.inputs()
        for length in (0, 1, self.seq_len - 1):
            h = backbone(tokens[:, :length], labels)
            assert h.shape == (3, length + 1, backbone.width) and h.dtype == tokens.dtype

    def test_causal(self):
        backbone = self.build().eval()
        tokens, labels = self.inputs()
        j = self.seq_len // 2
        changed = tokens.clone()
        changed[:, j] += 1.0
        h, h2 = backbone(tokens, labels), backbone(changed, labels)
        torch.testing.assert_close(h[:, : j + 1], h2[:, : j + 1])
        assert not torch.allclose(h[:, j + 1], h2[:, j + 1])

    def test_class_conditions_the_output(self):
        backbone = self.build().eval()
        perturb_parameters(backbone)
        tokens, labels = self.inputs()
        assert not torch.allclose(backbone(tokens, labels), backbone(tokens, labels.roll(1)))

    def test_kv_cache_matches_full_forward(self):
        backbone = self.build().eval()
        perturb_parameters(backbone)
        tokens, labels = self.inputs()
        with torch.no_grad():
            full = backbone(tokens, labels)
            h, cache = backbone.start(labels)
            stepped = [h] + [backbone.step(tokens[:, i], cache) for i in range(tokens.shape[1])]
        torch.testing.assert_close(torch.stack(stepped, 1), full, atol=1e-5, rtol=1e-5)

    def test_prefill_matches_full_forward(self):
        backbone = self.build().eval()
        perturb_parameters(backbone)
        tokens, labels = self.inputs()
        read = tokens.shape[1] // 2
        with torch.no_grad():
            full = backbone(tokens, labels)
            _, cache = backbone.start(labels)
            prefilled = backbone.prefill(tokens[:, :read], cache)
            after = [backbone.step(tokens[:, i], cache) for i in range(read, tokens.shape[1])]
        torch.testing.assert_close(torch.stack([prefilled, *after], 1), full[:, read:], atol=1e-5, rtol=1e-5)


class GeneratorContract(ModuleContract):
    kind = "generator"
    state_dim: ClassVar[int] = 4
    cond_dim: ClassVar[int] = 16
    state_bound: ClassVar[float | None] = 3.0

    def deps(self):
        return {"state_dim": self.state_dim, "cond_dim": self.cond_dim, "state_bound": self.state_bound}

    def inputs(self, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(2, 3, self.cond_dim, generator=g), torch.randn(2, 3, self.state_dim, generator=g)

    def loss(self, generator):
        h, z = self.inputs()
        return generator.loss(h, z).mean()

    def test_loss_is_per_token_and_finite(self):
        h, z = self.inputs()
        torch.manual_seed(0)
        loss = self.build().loss(h, z)
        assert loss.shape == h.shape[:-1] and torch.isfinite(loss).all()

    def test_loss_reaches_the_condition(self):
        generator = self.build()
        perturb_parameters(generator)
        h, z = self.inputs()
        h.requires_grad_(True)
        generator.loss(h, z).mean().backward()
        assert h.grad is not None and torch.any(h.grad != 0)

    def test_sample_shape_and_seed(self):
        generator = self.build().eval()
        perturb_parameters(generator)
        h, _ = self.inputs()

        def draw(seed):
            with torch.no_grad():
                return generator.sample(h, temperature=1.0, rng=torch.Generator().manual_seed(seed))

        a, b, c = draw(0), draw(0), draw(1)
        assert a.shape == (2, 3, self.state_dim) and a.dtype == torch.float32
        torch.testing.assert_close(a, b)
        assert not torch.allclose(a, c)

    def test_sampling_state_stays_fp32_under_bf16_autocast(self):
        generator = self.build().eval()
        perturb_parameters(generator)
        h, _ = self.inputs()
        with torch.no_grad():
            full = generator.sample(h, rng=torch.Generator().manual_seed(0))
            with torch.autocast("cpu", dtype=torch.bfloat16):  # as on a GPU, where h arrives in bf16
                mixed = generator.sample(h.bfloat16(), rng=torch.Generator().manual_seed(0))
        assert mixed.dtype == torch.float32
        torch.testing.assert_close(mixed, full, atol=0.1, rtol=0.05)  # bf16 networks, fp32 state

    def test_rows_drawn_with_their_own_generators_do_not_depend_on_the_batch(self):
        generator = self.build().eval()
        perturb_parameters(generator)
        h = torch.randn(3, self.cond_dim, generator=torch.Generator().manual_seed(5))

        def gens(*seeds):
            return [torch.Generator().manual_seed(s) for s in seeds]

        with torch.no_grad():
            together = generator.sample(h, rng=gens(10, 11, 12))
            alone = [generator.sample(h[i : i + 1], rng=gens(10 + i)) for i in range(3)]
        torch.testing.assert_close(together, torch.cat(alone), atol=1e-5, rtol=1e-5)

    def test_guidance_at_scale_one_changes_nothing(self):
        generator = self.build().eval()
        perturb_parameters(generator)
        h, _ = self.inputs()
        h_uncond, _ = self.inputs(seed=2)

        def draw(**kwargs):
            with torch.no_grad():
                return generator.sample(h, rng=torch.Generator().manual_seed(0), **kwargs)

        plain = draw()
        torch.testing.assert_close(draw(h_uncond=h_uncond, cfg_scale=1.0), plain, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(draw(h_uncond=h_uncond, cfg_scale=3.0), plain)


class RolloutContract(ComponentContract):
    """The approximator runs on a tiny real model of 3 x 3 tokens (``model_config``; None: the
    kit's stand-in components around it, :func:`prakit.testing.standins.stand_in_model_config`),
    in training mode, as in a training step."""

    kind = "rollout"
    stops_gradient: ClassVar[bool] = True
    model_config: ClassVar[ModelConfig | None] = None
    sampling: ClassVar[SampleConfig] = SampleConfig(cfg_scale=2.0, steps=2)

    def model(self) -> ARModel:
        torch.manual_seed(123)
        cfg = self.model_config or stand_in_model_config()
        model = ARModel(cfg, image_size=3 * cfg.patch_size, channels=3, num_classes=2, sampling=self.sampling)
        perturb_parameters(model)  # as if trained a little: zero-initialised layers move
        return model.train()

    def inputs(self, model: ARModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1)
        x = torch.rand(2, model.seq_len, model.token_dim, generator=g) * 2 - 1
        return x, model.decoder.encode(x), torch.tensor([0, 1])

    def run(self, rollout: Any, seed: int = 0) -> torch.Tensor:
        """``rollout``'s output for a fresh model's batch at step 0, in training mode, under ``seed``."""
        model = self.model()
        x, z, labels = self.inputs(model)
        torch.manual_seed(seed)
        return rollout.train()(x, z, labels, model=model, step=0)

    def assert_same_build(self, a, b):
        """The same parameters and buffers, and the same output under one seed."""
        super().assert_same_build(a, b)
        torch.testing.assert_close(self.run(a, seed=3), self.run(b, seed=3))

    def test_shape_and_dtype(self):
        model = self.model()
        x, z, labels = self.inputs(model)
        out = self.build()(x, z, labels, model=model, step=0)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()

    def test_leaves_the_model_as_it_found_it(self):
        model = self.model()
        before = {name: value.clone() for name, value in model.state_dict().items()}
        x, z, labels = self.inputs(model)
        self.build().train()(x, z, labels, model=model, step=0)
        assert model.training
        for name, value in model.state_dict().items():
            torch.testing.assert_close(value, before[name], msg=f"the rollout changed {name}")

    def test_inputs_carry_no_gradient_into_the_model(self):
        if not self.stops_gradient:
            pytest.skip("stops_gradient = False: a differentiable rollout")
        assert not self.run(self.build()).requires_grad


def labelled_images(count: int, seed: int, size: int = 8, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random (size, size, 3) uint8 images whose class shows in their brightness."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    images = rng.integers(0, 128, (count, size, size, 3)) + 127 * labels[:, None, None, None] // max(classes - 1, 1)
    return images.astype(np.uint8), labels


def write_images(path, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]):
    """A finished store holding ``images`` and ``labels``."""
    from prakit.data import SampleStore

    store = SampleStore.open(path, num=len(images), image_shape=images.shape[1:], attrs={"class_names": list(class_names)})
    store.write(range(len(images)), images, labels)
    return open_store(path)


class FolderContract(ComponentContract):
    """A contract whose checks need files: pytest calls :meth:`setup` with a fresh folder first."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.setup(tmp_path)

    def setup(self, folder: Path) -> None:
        self.folder = Path(folder)


class EvaluatorContract(FolderContract):
    """Runs the evaluator on a tiny evaluation: 40 samples and 60 real images (8 x 8, two classes),
    the feature network ``features`` (the kit's stand-in by default:
    :class:`prakit.testing.standins.StandInFeatures`) and, if ``model_config`` is set, a tiny
    randomly initialised model with 2 x 2 tokens."""

    kind = "evaluator"
    features: ClassVar[dict[str, Any]] = {"name": "stand_in"}
    model_config: ClassVar[ModelConfig | None] = None

    def setup(self, folder: Path) -> None:
        super().setup(folder)
        register_stand_ins()
        names = ("dark", "light")
        write_images(self.folder / "real.zarr", *labelled_images(60, seed=0), names)
        write_images(self.folder / "samples.zarr", *labelled_images(40, seed=1), names)

    def context(self) -> Any:
        """A fresh evaluation context (the feature caches on disk are shared)."""
        from prakit.config import EvalConfig, SampleConfig
        from prakit.eval import EvalContext
        from prakit.eval.reference import StoreReference

        model = None
        if self.model_config is not None:
            torch.manual_seed(0)
            model = ARModel(self.model_config, image_size=8, channels=3, num_classes=2).eval()
        return EvalContext(structure({"features": self.features}, EvalConfig),
                           reference=StoreReference(open_store(self.folder / "real.zarr")),
                           samples=open_store(self.folder / "samples.zarr"), model=model,
                           sample_options=SampleConfig(steps=2, cfg_scale=2.0))

    def test_returns_named_numbers_and_curves(self):
        result = self.build().evaluate(self.context())
        assert result and all(isinstance(k, str) and k for k in result)
        for key, value in result.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            assert all(isinstance(v, (int, float)) and not math.isnan(v) for v in values), f"{key} = {value!r}"

    def test_declares_which_way_is_better(self):
        evaluator = self.build()
        numbers = [k.split("@")[0] for k, v in evaluator.evaluate(self.context()).items() if not isinstance(v, (list, tuple))]
        declared = [k for k in numbers if k in evaluator.higher_is_better]
        assert declared, "no number says which way is better (Evaluator.higher_is_better)"
        assert all(isinstance(evaluator.higher_is_better[k], bool) for k in declared)

    def assert_same_build(self, a, b):
        """``a`` and ``b`` return the same numbers (the same names only, if not ``deterministic``)."""
        first, second = a.evaluate(self.context()), b.evaluate(self.context())
        assert first.keys() == second.keys()
        if a.deterministic:
            assert dict(first) == dict(second)

    def test_deterministic(self):
        """Nothing carries over from one evaluation to the next."""
        evaluator = self.build()
        self.assert_same_build(evaluator, evaluator)


class FeatureNetworkContract(FolderContract):
    """Builds the network with a tiny store of real images (12 x 12, three classes) to fit to."""

    kind = "features"

    def setup(self, folder: Path) -> None:
        super().setup(folder)
        self.store = write_images(self.folder / "real.zarr", *labelled_images(48, seed=0, size=12, classes=3),
                                  ("a", "b", "c"))

    def deps(self) -> dict[str, Any]:
        return {"store": self.store, "device": torch.device("cpu"), "progress": False}

    def images(self) -> torch.Tensor:
        return torch.from_numpy(labelled_images(5, seed=2, size=12, classes=3)[0])

    def test_shapes_and_dtype(self):
        network = self.build().eval()
        with torch.no_grad():
            features, logits = network(self.images())
        assert features.shape == (5, network.num_features) and features.dtype == torch.float32
        if network.num_logits:
            assert logits.shape == (5, network.num_logits) and logits.dtype == torch.float32
        else:
            assert logits is None
        assert torch.isfinite(features).all()

    def test_spatial_features_come_with_the_same_features(self):
        network = self.build().eval()
        if not network.num_spatial:
            with pytest.raises(NotImplementedError, match="gives no spatial features"):
                network.forward_with_spatial(self.images())
            return
        with torch.no_grad():
            features, logits, spatial = network.forward_with_spatial(self.images())
            alone = network(self.images())
        assert spatial.shape == (5, network.num_spatial) and spatial.dtype == torch.float32
        assert torch.isfinite(spatial).all()
        torch.testing.assert_close(features, alone[0])
        if network.num_logits:
            torch.testing.assert_close(logits, alone[1])

    def test_images_are_read_one_by_one(self):
        network = self.build().eval()
        images = self.images()
        with torch.no_grad():
            together = network(images)[0]
            alone = torch.cat([network(images[i:i + 1])[0] for i in range(len(images))])
        torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)

    def assert_same_build(self, a, b):
        """The same parameters, buffers and fingerprint."""
        super().assert_same_build(a, b)
        assert a.fingerprint() == b.fingerprint()

    def test_fingerprint_is_a_hex_digest(self):
        fingerprint = self.build().fingerprint()
        assert len(fingerprint) >= 8 and int(fingerprint, 16) >= 0


class DatasetContract(ComponentContract):
    kind = "dataset"

    def test_items_are_uint8_images_with_valid_labels(self):
        dataset = self.build()
        assert len(dataset) > 0 and len(dataset.class_names) > 0
        for index in sorted({0, len(dataset) // 2, len(dataset) - 1}):
            image, label = dataset[index]
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] in (1, 3)
            assert 0 <= int(label) < len(dataset.class_names)

    def assert_same_build(self, a, b):
        """The same number of items, and the same first and last image and label."""
        assert len(a) == len(b)
        for index in (0, len(a) - 1):
            np.testing.assert_array_equal(a[index][0], b[index][0])
            assert a[index][1] == b[index][1]


class TrackerContract(ComponentContract):
    """A tracker takes a short run, its restart from a checkpoint and an evaluation, and its service
    ends up with every number at its step, a restart's value replacing the one it replays.

    A subclass says how to read its service back: :meth:`read_back`, the scalars by name and step.
    """

    kind = "tracker"

    @pytest.fixture(autouse=True)
    def _run_dir(self, tmp_path):
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()

    def deps(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir}

    def assert_same_build(self, a, b):
        assert (a.cfg, a.run_dir) == (b.cfg, b.run_dir)

    def read_back(self) -> dict[str, dict[int, float]]:
        """What the service holds: for each scalar, its last value at each step."""
        raise NotImplementedError(f"{type(self).__name__} must say how to read its tracker's service back")

    def test_a_run_its_restart_and_its_evaluation_arrive_whole(self):
        config = {"train": {"steps": 4, "trackers": [unstructure(self.config)]}}
        tracker = self.build()
        tracker.start(config, 0)
        for step in range(3):
            tracker.log_scalars({"loss": 1.0 / (step + 1), "lr": 0.001}, step)
        tracker.log_image("samples", np.full((8, 16, 3), 200, np.uint8), 2)
        tracker.finish()
        restarted = self.build()  # from the checkpoint at step 2, replaying step 2
        restarted.start(config, 2)
        restarted.log_scalars({"loss": 0.25, "lr": 0.001}, 2)
        restarted.log_scalars({"loss": 0.2, "lr": 0.001}, 3)
        restarted.finish()
        evaluation = self.build()
        evaluation.start(config, None)
        evaluation.log_scalars({"eval/fid": 3.5}, 4)
        evaluation.finish()
        got = self.read_back()
        assert got["loss"] == pytest.approx({0: 1.0, 1: 0.5, 2: 0.25, 3: 0.2})
        assert got["eval/fid"] == pytest.approx({4: 3.5}) and set(got["lr"]) == {0, 1, 2, 3}


def perturb_parameters(module: torch.nn.Module) -> None:
    """Move every parameter off its initial value (zero-initialised layers included)."""
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) * 0.05)


def _seeded(seed: int, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` right after seeding torch's global generator with ``seed``."""
    torch.manual_seed(seed)
    return fn(*args)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], equal_nan=True, msg=f"{key} differs between two seeded builds")
