"""A separately installed plugin package (docs/examples/linear-decoder) adds a decoder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from prakit import plugins, registry
from prakit.config import apply_overrides, load_config, read_file

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
    assert {"identity", "mlp"} <= set(rows)


def test_a_config_file_builds_the_plugin_decoder_by_name(installed, tmp_path, fresh_plugins):
    config = quickstart_with_linear_decoder(tmp_path)
    out = run(["-m", "prakit", "config", "validate", str(config)], installed)
    assert out.returncode == 0, out.stderr
    assert "decoder=linear" in out.stdout

    fresh_plugins.syspath_prepend(str(installed))
    plugins.reset()
    cfg = load_config(config, ["model.decoder.state_dim=8"])
    decoder = registry.build(cfg.model.decoder, token_dim=192)
    assert type(decoder).__module__ == "prakit_linear_decoder"
    assert decoder.state_dim == 8 and decoder.token_dim == 192


def test_the_plugin_passes_its_own_contract_tests(installed):
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "test_linear_decoder.py")], installed, cwd=EXAMPLE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "failed" not in out.stdout


def test_the_docs_show_the_example_package_verbatim():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in ("pyproject.toml", "prakit_linear_decoder.py", "test_linear_decoder.py"):
        assert (EXAMPLE / name).read_text().strip() in docs, f"docs/plugins.md is out of date with {name}"
