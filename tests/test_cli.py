"""The ``prakit`` command line, run as a real subprocess."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prakit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "experiments" / "quickstart.toml")


def prakit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prakit", *args], capture_output=True, text=True)


def command_paths(parser: argparse.ArgumentParser, prefix=()):
    """Every command and subcommand of the parser, e.g. ('config', 'show')."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, prefix + (name,))


COMMANDS = list(command_paths(build_parser()))


def test_the_command_tree_has_the_documented_commands():
    assert {("plugins", "list"), ("config", "show"), ("config", "validate"), ("model", "summary"), ("eval",),
            ("reference",), ("compare",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "prakit")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([*command, "--help"])
    assert exit.value.code == 0
    assert "usage: prakit" in capsys.readouterr().out


def test_plugins_list_shows_kind_name_plugin_and_description():
    out = prakit("plugins", "list")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "PLUGIN", "DESCRIPTION"]
    assert any(r.split()[:3] == ["decoder", "mlp", "pra"] for r in rows)
    assert any(r.split()[:3] == ["backbone", "transformer", "models"] for r in rows)


def test_plugins_list_json_filters_by_kind():
    out = prakit("plugins", "list", "--kind", "rollout", "--json")
    rows = json.loads(out.stdout)
    assert {r["kind"] for r in rows} == {"rollout"}
    assert {"teacher_forcing", "noise_injection", "pra"} <= {r["name"] for r in rows}
    assert all(r["plugin"] and r["description"] for r in rows)


def test_an_unknown_kind_is_a_clean_error():
    out = prakit("plugins", "list", "--kind", "decodr")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "prakit: error: unknown component kind 'decodr'; did you mean 'decoder'? "
        "known: backbone, dataset, decoder, evaluator, features, generator, rollout"
    )


def test_building_the_command_line_does_not_import_torch():
    check = "import sys; from prakit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help stays instant


def test_config_show_prints_the_resolved_config():
    out = prakit("config", "show", QUICKSTART, "model.rollout.sigma_max=0.3")
    assert out.returncode == 0, out.stderr
    assert "sigma_max = 0.3" in out.stdout
    assert "[launch]" in out.stdout  # defaults are filled in


def test_config_validate_reports_success_and_every_problem():
    ok = prakit("config", "validate", QUICKSTART)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ")
    bad = prakit("config", "validate", QUICKSTART, "model.decoder.stat_dim=3", "model.rollout.name=pr")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "model.decoder.stat_dim: extra key" in bad.stderr
    assert "model.rollout.name: unknown rollout 'pr'; did you mean 'pra'?" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("prakit")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("prakit ")


def test_model_summary_counts_parameters_and_flops():
    out = prakit("model", "summary", QUICKSTART, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    params = summary["parameters"]
    assert params["total"] == sum(params[k] for k in ("backbone", "generator", "decoder", "rollout"))
    assert 3e6 < params["total"] < 8e6
    assert (summary["seq_len"], summary["token_dim"], summary["state_dim"]) == (16, 48, 16)
    flops = summary["flops"]
    assert flops["train_per_step"] == 64 * flops["train_per_image"] > 0
    # 50 head steps, guided: the head dominates sampling
    assert flops["sample_per_image"] > 50 * 2 * 16 * 2 * 3 * 256 * 256
    table = prakit("model", "summary", QUICKSTART, "--no-flops")
    assert "backbone   transformer" in table.stdout and "FLOPs" not in table.stdout
