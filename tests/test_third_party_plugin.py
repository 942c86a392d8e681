"""A separately installed plugin package (docs/examples/linear-decoder) adds a decoder."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from helpers import shown_commands

from prakit import plugins, registry
from prakit.config import apply_overrides, load_config, read_file

pytestmark = pytest.mark.slow  # end to end, several processes or SLURM

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "linear-decoder"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the example package into its own directory, as a user would."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    assert any(p.name.startswith("prakit_linear_decoder-") for p in target.glob("*.dist-info"))
    return target


def run(args, site, **kw):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, **kw)


def quickstart_with_linear_decoder(tmp_path: Path) -> Path:
    data = apply_overrides(read_file(ROOT / "experiments" / "quickstart.toml"), ["model.decoder.name=linear"])
    path = tmp_path / "linear.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_the_cli_lists_the_plugin_decoder(installed):
    out = run(["-m", "prakit", "plugins", "list", "--kind", "decoder", "--json"], installed, check=True)
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["linear"]["plugin"] == "linear"
    assert rows["linear"]["description"] == "Linear encoder and decoder with a normalised low-dimensional state."
    assert rows["linear"]["module"] == "prakit_linear_decoder" and rows["mlp"]["module"] == "prakit_pra.mlp_decoder"
    assert {"identity", "mlp"} <= set(rows)


def test_a_config_file_builds_the_plugin_decoder_by_name(installed, tmp_path, fresh_plugins):
    config = quickstart_with_linear_decoder(tmp_path)
    out = run(["-m", "prakit", "config", "validate", str(config)], installed)
    assert out.returncode == 0, out.stderr
    assert "decoder=linear" in out.stdout

    fresh_plugins.syspath_prepend(str(installed))
    plugins.reset()
    cfg = load_config(config, ["model.decoder.state_dim=8"])
    decoder = registry.build(cfg.model.decoder, token_dim=192, patch_size=8, channels=3)
    assert type(decoder).__module__ == "prakit_linear_decoder"
    assert decoder.state_dim == 8 and decoder.token_dim == 192


def test_the_documented_commands_run_with_the_output_shown(installed):
    """docs/plugins.md's commands in order: the install (done by ``installed``, from the folder the
    command names), then each command with the package on the path, in the folder it assumes."""
    install, *commands = shown_commands([ROOT / "docs" / "plugins.md"])
    assert install.command == "pip install -e ./linear-decoder" and EXAMPLE == EXAMPLE.parent / "linear-decoder"
    for shown in commands:
        program, *args = shlex.split(shown.command)
        argv = {"prakit": ["-m", "prakit"], "pytest": ["-m", "pytest", "-q", "-p", "no:cacheprovider"]}[program]
        out = run([*argv, *args], installed, cwd=EXAMPLE if program == "pytest" else ROOT)
        assert out.returncode == 0, f"{shown.command}\n{out.stdout}{out.stderr}"
        assert out.stdout.splitlines()[:len(shown.output)] == shown.output, shown.command
        if program == "pytest":  # the package's own contract tests
            assert " passed" in out.stdout and "failed" not in out.stdout


def test_the_docs_show_the_example_package_verbatim():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in ("pyproject.toml", "prakit_linear_decoder.py", "test_linear_decoder.py"):
        assert (EXAMPLE / name).read_text().strip() in docs, f"docs/plugins.md is out of date with {name}"

