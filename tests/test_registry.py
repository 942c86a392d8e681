"""Registries: timm-style listing and building, and their errors."""

import attrs
import pytest
from prakit_pra.mlp_decoder import MLPDecoder, MLPDecoderConfig

from prakit import plugins, registry
from prakit.config import ModelConfig
from prakit.errors import PluginError, UnknownNameError
from prakit.kinds import DecoderConfig
from prakit.model import ARModel


def test_list_with_a_glob_pattern():
    assert registry.list_components("rollout", "*_*") == [
        "exact_rollout", "noise_injection", "pra_selfsample", "teacher_forcing"
    ]
    assert registry.list_components("decoder") == sorted(registry.list_components("decoder"))
    assert registry.list_components("decoder", "nothing*") == []


def test_build_by_name_and_by_config():
    reg = registry.get("decoder")
    by_name = reg.build("mlp", token_dim=48, patch_size=4, channels=3)
    assert isinstance(by_name, MLPDecoder) and by_name.state_dim == 16
    cfg = reg.config("mlp", state_dim=8, width=32)
    assert cfg == MLPDecoderConfig(state_dim=8, width=32)
    built = registry.build(cfg, token_dim=48, patch_size=4, channels=3)
    assert built.state_dim == 8 and built.encoder[0].out_features == 32


def test_a_model_builds_its_decoder_with_the_patch_layout(toy_plugin):
    toys = {kind: registry.get(kind).config("toy") for kind in ("backbone", "generator", "decoder", "rollout")}
    decoder = ARModel(ModelConfig(**toys, patch_size=2), image_size=4, channels=1, num_classes=2).decoder
    assert (decoder.token_dim, decoder.patch_size, decoder.channels) == (4, 2, 1)


def test_an_unknown_name_lists_close_matches_and_the_installed_names():
    with pytest.raises(UnknownNameError) as excinfo:
        registry.get("decoder").build("mpl", token_dim=4)
    message = str(excinfo.value)
    assert message.startswith("unknown decoder 'mpl'; did you mean 'mlp'?")
    assert "known: identity, mlp" in message
    with pytest.raises(UnknownNameError, match="did you mean 'decoder'"):
        registry.get("decodr")


def test_a_config_of_another_class_is_refused():
    @attrs.frozen
    class Impostor(DecoderConfig):
        name = "mlp"

    with pytest.raises(TypeError, match="expects a MLPDecoderConfig"):
        registry.build(Impostor(), token_dim=4)


@pytest.mark.parametrize(
    "config_class, message",
    [
        (dict, "must subclass DecoderConfig"),
        (type("Plain", (DecoderConfig,), {"name": "plain"}), "must be decorated with @attrs.frozen"),
        (attrs.frozen(type("Nameless", (DecoderConfig,), {})), "must set `name: ClassVar"),
    ],
)
def test_bad_registrations_are_plugin_errors(fresh_plugins, config_class, message):
    class Bad:
        @plugins.hookimpl
        def register_decoders(self, registrar):
            registrar.add(config_class, MLPDecoder)

    plugins.register_plugin(Bad(), name="bad")
    with pytest.raises(PluginError, match=message):
        registry.registries()


def test_a_builder_must_return_the_kind_interface(fresh_plugins):
    @attrs.frozen
    class NotADecoderConfig(DecoderConfig):
        name = "not_a_decoder"

    class Bad:
        @plugins.hookimpl
        def register_decoders(self, registrar):
            registrar.add(NotADecoderConfig, lambda cfg, **deps: object())

    plugins.register_plugin(Bad(), name="bad")
    with pytest.raises(PluginError, match="built a object, which is not a PixelDecoder"):
        registry.build(NotADecoderConfig(), token_dim=4, patch_size=1, channels=4)


def test_a_hook_that_raises_is_a_plugin_error_naming_the_plugin(fresh_plugins):
    class Crashing:
        @plugins.hookimpl
        def register_rollouts(self, registrar):
            raise RuntimeError("oops")

    plugins.register_plugin(Crashing(), name="crashing")
    with pytest.raises(PluginError, match="plugin 'crashing' failed in register_rollouts: RuntimeError: oops"):
        registry.registries()


def test_a_component_is_built_with_exactly_what_its_kind_is_built_with():
    with pytest.raises(TypeError, match="a decoder is built with token_dim, patch_size, channels; got token_dim"):
        registry.get("decoder").build("mlp", token_dim=48)
    with pytest.raises(TypeError, match="a rollout is built with nothing besides its config; got step"):
        registry.get("rollout").build("pra", step=0)
