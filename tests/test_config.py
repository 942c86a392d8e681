"""Experiment configs: files, overrides, errors by path, round trips, fuzzing."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prakit import registry
from prakit.config import ExperimentConfig, dumps, from_data, load_config, read_file, structure, unstructure
from prakit.errors import ConfigError, PrakitError
from prakit.kinds import KINDS
from prakit.presets import model_presets
from prakit.testing.strategies import configs, field_values, mutations

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.toml"))
QUICKSTART = ROOT / "experiments" / "quickstart.toml"


def problems(excinfo) -> dict[str, str]:
    return dict(excinfo.value.problems)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_experiment_file_round_trips(path, tmp_path):
    cfg = load_config(path)
    out = tmp_path / "resolved.toml"
    out.write_text(dumps(cfg))
    again = load_config(out)
    assert again == cfg
    assert dumps(again) == dumps(cfg)


def test_json_and_yaml_files_load_the_same_config(tmp_path):
    data = read_file(QUICKSTART)
    (tmp_path / "c.json").write_text(json.dumps(data))
    yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(QUICKSTART)
    assert load_config(tmp_path / "c.json") == cfg == load_config(tmp_path / "c.yaml")


def test_overrides_use_dotted_keys_and_toml_values():
    cfg = load_config(QUICKSTART, ["model.rollout.sigma_max=0.3", "optim.betas=[0.9, 0.99]", "train.compile=true"])
    assert cfg.model.rollout.sigma_max == 0.3
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.train.compile is True


def test_changing_a_component_name_resets_it_to_the_new_defaults():
    base = load_config(QUICKSTART)
    assert base.model.decoder.name == "mlp" and base.model.decoder.width == 256
    cfg = load_config(QUICKSTART, ["model.decoder.state_dim=8", "model.decoder.name=mlp"])
    assert cfg.model.decoder == registry.get("decoder").config("mlp", state_dim=8)
    swapped = load_config(QUICKSTART, ["model.rollout.name=noise_injection", "model.rollout.sigma_max=0.2"])
    assert swapped.model.rollout == registry.get("rollout").config("noise_injection", sigma_max=0.2)
    assert swapped.model.decoder == base.model.decoder  # nothing else moved


@pytest.mark.parametrize(
    "overrides, path, message",
    [
        (["model.decoder.stat_dim=3"], "model.decoder.stat_dim", "unknown key 'stat_dim'; did you mean 'state_dim'?"),
        (["trian.steps=3"], "trian", "unknown key 'trian'; did you mean 'train'?"),
        (["train.steps=abc"], "train.steps", "expected an integer, got 'abc'"),
        (["train.steps=0"], "train.steps", "must be > 0"),
        (["train.compile=1"], "train.compile", "expected true or false"),
        (["optim.lr=-1.0"], "optim.lr", "must be > 0.0"),
        (["optim.betas=[0.9]"], "optim.betas", "Not enough values"),
        (["optim.ema_decays=0.99"], "optim.ema_decays", "expected a list"),
        (["launch.cluster=aws"], "launch.cluster", "must be in ('local', 'debug', 'slurm')"),
        (["model.rollout.name=pr"], "model.rollout.name", "unknown rollout 'pr'; did you mean 'pra'?"),
        (["model.decoder=3"], "model.decoder", "expected a table with a 'name' key"),
        (["train=3"], "train", "expected a table"),
        (["model.rollout.sigma_min=0.6"], "model.rollout.sigma_max", "must be >= sigma_min"),
        (['model.rollout={name="exact_rollout",window=2.5}'], "model.rollout.window",
         "expected an integer or a string, got 2.5"),
        (['model.rollout={name="exact_rollout",window="all"}'], "model.rollout.window",
         "must be a positive number of tokens or \"rest\""),
    ],
)
def test_errors_name_their_path(overrides, path, message):
    with pytest.raises(ConfigError) as excinfo:
        load_config(QUICKSTART, overrides)
    found = problems(excinfo)
    assert path in found, found
    assert message in found[path]


def test_a_field_of_scalar_types_takes_each_as_itself():
    for window in (3, "rest"):
        cfg = load_config(QUICKSTART, [f'model.rollout={{name="exact_rollout",window={json.dumps(window)}}}'])
        assert cfg.model.rollout.window == window
        assert from_data(tomllib.loads(dumps(cfg))) == cfg


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as excinfo:
        load_config(QUICKSTART, ["train.steps=-1", "data.colour=1", "model.decoder.name=mpl"])
    assert set(problems(excinfo)) == {"train.steps", "data.colour", "model.decoder.name"}
    assert str(QUICKSTART) in str(excinfo.value)


def test_a_typo_or_a_type_error_does_not_hide_the_other_problems_of_its_table():
    with pytest.raises(ConfigError) as excinfo:
        load_config(QUICKSTART, ["model.backbone.widht=3", "model.backbone.depth=-1", "model.backbone.heads=0",
                                 'model.backbone.mlp_ratio="x"', "optim.ema_decays=3", "optim.betas=[2, 0.5]"])
    found = problems(excinfo)
    assert found == {
        "model.backbone.widht": found["model.backbone.widht"], "model.backbone.depth": "must be > 0: -1",
        "model.backbone.heads": "must be > 0: 0", "model.backbone.mlp_ratio": "expected a number, got 'x'",
        "optim.ema_decays": "expected a list, got 3", "optim.betas": "must be < 1.0: 2.0",
    }
    assert "did you mean 'width'? known: depth, heads" in found["model.backbone.widht"]


@pytest.mark.parametrize("width", [0, -8])
def test_a_width_below_one_is_reported_as_itself(width):
    with pytest.raises(ConfigError) as excinfo:
        load_config(QUICKSTART, [f"model.backbone.width={width}"])
    assert problems(excinfo) == {"model.backbone.width": f"must be > 0: {width}"}


def test_missing_sections_and_names_are_reported():
    with pytest.raises(ConfigError) as excinfo:
        from_data({"model": {"backbone": {"width": 3}}})
    found = problems(excinfo)
    assert found["data"] == "missing required key"
    assert found["model.generator"] == "missing required key"
    assert found["model.backbone"].startswith("missing 'name' (one of: ")


def test_bad_files_are_config_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("[model\n")
    (tmp_path / "c.ini").write_text("")
    for path in (tmp_path / "bad.toml", tmp_path / "c.ini", tmp_path / "absent.toml"):
        with pytest.raises(ConfigError, match=str(path.name)):
            load_config(path)


def test_malformed_overrides_are_config_errors():
    for override in ("train.steps", "=3", "train..steps=3", "train.steps.x=1"):
        with pytest.raises(ConfigError):
            load_config(QUICKSTART, [override])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_registered_config_round_trips(kind):
    base = KINDS[kind].config
    for entry in registry.get(kind).entries():

        @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(configs(entry.config_class))
        def round_trip(cfg):
            data = unstructure(cfg)
            assert data["name"] == entry.name
            assert structure(data, base) == cfg
            assert structure(tomllib.loads(_toml(data)), base) == cfg

        round_trip()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_registered_config_s_fields_are_drawn_valid_at_least_a_quarter_of_the_time(kind):
    """configs() redraws what a validator refuses, and gives an example up after some tries: a
    field whose bounds a validator hides from the strategy would make hypothesis reject most examples."""
    for entry in registry.get(kind).entries():
        outcomes = []

        @settings(max_examples=100, deadline=None, derandomize=True, database=None)
        @given(field_values(entry.config_class))
        def construct(values):
            try:
                entry.config_class(**values)
                outcomes.append(True)
            except (ValueError, TypeError):
                outcomes.append(False)

        construct()
        assert sum(outcomes) >= len(outcomes) / 4, f"{entry.name}: {sum(outcomes)} of {len(outcomes)} drawn valid"


def _toml(data) -> str:
    import tomli_w

    return tomli_w.dumps(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(ExperimentConfig))
def test_random_experiment_configs_round_trip_through_toml(cfg):
    assert load_text(dumps(cfg)) == cfg


def load_text(text: str) -> ExperimentConfig:
    return from_data(tomllib.loads(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(read_file(QUICKSTART)))
def test_fuzzed_config_files_fail_cleanly(data):
    try:
        cfg = from_data(data)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and m for p, m in exc.problems)
    else:
        assert isinstance(cfg, ExperimentConfig)


def test_configs_are_frozen():
    cfg = load_config(QUICKSTART)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.train.steps = 3  # type: ignore[misc]


@given(st.data())
@settings(max_examples=20, deadline=None)
def test_fuzzed_overrides_fail_cleanly(data):
    key = data.draw(st.sampled_from(["train.steps", "model.decoder.state_dim", "optim.betas", "launch", "model.rollout.name"]))
    value = data.draw(st.text(max_size=10))
    try:
        load_config(QUICKSTART, [f"{key}={value}"])
    except ConfigError:
        pass


def test_extends_merges_tables_and_replaces_a_renamed_component(tmp_path):
    (tmp_path / "child.toml").write_text(
        f'extends = "{QUICKSTART}"\n[train]\nsteps = 7\n[model]\n'
        'decoder = { name = "identity" }\nrollout = { sigma_max = 0.25 }\n'
    )
    base, child = load_config(QUICKSTART), load_config(tmp_path / "child.toml")
    assert child.train.steps == 7 and child.train.batch_size == base.train.batch_size
    assert child.model.decoder == registry.get("decoder").config("identity")
    assert child.model.rollout == attrs.evolve(base.model.rollout, sigma_max=0.25)


def test_circular_extends_is_a_config_error(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.toml")


def test_an_extends_holding_a_nul_byte_is_a_config_error(tmp_path):
    (tmp_path / "child.toml").write_text('extends = "base\\u0000.toml"\n')
    with pytest.raises(ConfigError, match=r"child\.toml:\n  extends: expected a file name, got 'base\\x00\.toml'"):
        load_config(tmp_path / "child.toml")


def test_a_symlink_loop_is_a_config_error_directly_or_by_extends(tmp_path):
    (tmp_path / "a.toml").symlink_to(tmp_path / "b.toml")
    (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
    (tmp_path / "child.toml").write_text('extends = "a.toml"\n')
    for path in (tmp_path / "a.toml", tmp_path / "child.toml"):
        with pytest.raises(ConfigError, match=r"a\.toml:\n  <root>: cannot read the file: a symlink loop at "):
            load_config(path)


@pytest.mark.parametrize("command", [["config", "validate"], ["sweep", "--out", "sweep"]], ids=" ".join)
def test_the_cli_reports_a_symlink_loop_in_one_error(tmp_path, command):
    (tmp_path / "a.toml").symlink_to(tmp_path / "a.toml")
    out = subprocess.run([sys.executable, "-m", "prakit", *command, "a.toml"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr == (f"prakit: error: invalid config {tmp_path / 'a.toml'}:\n  <root>: cannot read the file: "
                          f"a symlink loop at {tmp_path / 'a.toml'}; point the link at a real file or folder\n")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, suffix):
    text = f'extends = "{QUICKSTART}"\n' if suffix == ".toml" else json.dumps({"extends": str(QUICKSTART)})
    (tmp_path / f"bom{suffix}").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(tmp_path / f"bom{suffix}") == load_config(QUICKSTART)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\x80", "[train]\nname = 'café'\n".encode("latin-1")],
                         ids=["binary", "latin-1"])
def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path, content):
    (tmp_path / "bad.toml").write_bytes(content)
    (tmp_path / "child.toml").write_text('extends = "bad.toml"\n')
    for path in (tmp_path / "bad.toml", tmp_path / "child.toml"):
        with pytest.raises(ConfigError, match=r"bad\.toml.*\n.*not UTF-8 text \(byte 0x[0-9a-f]{2} at offset \d+\)"):
            load_config(path)


@pytest.mark.parametrize("name, text", [
    ("deep.toml", "x = " + "[" * 5000 + "]" * 5000),
    ("deep.json", '{"x": ' + "[" * 5000 + "]" * 5000 + "}"),
    ("deeper_than_a_copy.json", '{"x": ' + "[" * 900 + "]" * 900 + "}"),
])
def test_deeply_nested_lists_are_a_config_error(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=f"{name}.*\n.*nested too deeply"):
        load_config(tmp_path / name)


def test_a_long_extends_chain_loads(tmp_path):
    for i in range(1200):
        (tmp_path / f"c{i}.toml").write_text(f'extends = "c{i + 1}.toml"\n[train]\nsteps = {i + 1}\n')
    (tmp_path / "c1200.toml").write_text(f'extends = "{QUICKSTART}"\n')
    assert load_config(tmp_path / "c0.toml").train.steps == 1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".toml", ".json"]))
def test_fuzzed_file_bytes_fail_cleanly(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"config{suffix}"
    path.write_bytes(content)
    try:
        load_config(path)
    except PrakitError:
        pass


def test_cli_reports_a_bad_file_in_one_error(tmp_path):
    (tmp_path / "bad.toml").write_bytes(b"\x80")
    out = subprocess.run([sys.executable, "-m", "prakit", "config", "validate", str(tmp_path / "bad.toml")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (f"prakit: error: invalid config {tmp_path / 'bad.toml'}:\n"
                          "  <root>: not UTF-8 text (byte 0x80 at offset 0); save it as UTF-8\n")


PAPER_SIZES = ROOT / "experiments" / "imagenet256" / "pra-S.toml"


@pytest.mark.parametrize("name", list(model_presets()))
def test_a_preset_is_the_model_section_it_names(name):
    cfg = load_config(QUICKSTART, [f"model.preset={name}"])
    data = unstructure(cfg.model)
    for kind, component in model_presets()[name].items():
        assert data[kind].items() >= component.items()


def test_keys_beside_a_preset_override_it_and_a_renamed_component_replaces_it():
    cfg = load_config(QUICKSTART, ["model.preset=micro", "model.backbone.depth=3", "model.decoder.name=identity"])
    assert (cfg.model.backbone.width, cfg.model.backbone.depth) == (32, 3)
    assert cfg.model.decoder == registry.get("decoder").config("identity")
    assert cfg.model.patch_size == 4  # the file's own key, beside the preset


@pytest.mark.parametrize("size", ["B", "L"])
def test_the_paper_sizes_are_their_presets(size):
    by_file = load_config(ROOT / "experiments" / "imagenet256" / f"pra-{size}.toml")
    assert by_file.model == load_config(PAPER_SIZES, [f"model.preset=pra-{size}"]).model


@pytest.mark.parametrize("value, message", [
    ('"pra-s"', "unknown preset 'pra-s'; did you mean 'pra-S'"), ("[1]", "unknown preset '[1]'"),
])
def test_an_unknown_preset_is_a_config_error_with_its_close_match(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as excinfo:
        load_config(QUICKSTART, [f"model.preset={value}"])
    assert list(problems(excinfo)) == ["model.preset"] and str(QUICKSTART) in str(excinfo.value)


def test_the_documented_preset_table_gives_each_preset_s_parameters():
    from prakit.model import parameter_counts
    from prakit.summary import meta_model, si

    rows = re.findall(r"^\| `([\w-]+)` \|.*\| ([\d.]+[KM]) ", (ROOT / "docs" / "configs.md").read_text(), re.M)
    assert [name for name, _ in rows] == list(model_presets())
    for name, shown in rows:
        base = PAPER_SIZES if name.startswith("pra-") else QUICKSTART
        assert si(parameter_counts(meta_model(load_config(base, [f"model.preset={name}"])))["total"]) == shown
