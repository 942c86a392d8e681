import os
import shutil
import subprocess
from pathlib import Path

import pytest

from prakit import plugins


def write_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str] | None = None) -> Path:
    """A real distribution in ``site``: a dist-info with ``prakit`` entry points, plus modules."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"  # a dash would end the name
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[prakit]\n{lines}")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(source)
    return site


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Reload plugins from the entry points for this test, and again after it."""
    plugins.reset()
    yield monkeypatch
    plugins.reset()


@pytest.fixture
def toy_plugin(fresh_plugins):
    """The toy components of every kind, registered as the plugin 'toys'."""
    from toys import ToyPlugin

    plugins.register_plugin(ToyPlugin(), name="toys")
    return "toys"


@pytest.fixture
def install_distribution(tmp_path, fresh_plugins):
    """Put a real distribution on sys.path for this test."""

    def install(name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        fresh_plugins.syspath_prepend(str(write_distribution(tmp_path / f"site-{name}", name, entry_points, modules)))
        plugins.reset()

    return install


@pytest.fixture(scope="session")
def toy_distribution(tmp_path_factory) -> str:
    """A PYTHONPATH under which subprocesses discover the toy plugin through a real entry point."""
    site = write_distribution(tmp_path_factory.mktemp("toy-site"), "prakit-toys", {"toys": "toys:toy_plugin"})
    return f"{site}{os.pathsep}{Path(__file__).parent}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The digits dataset at 8x8, prepared once for this module."""
    from prakit import registry
    from prakit.data import prepare

    path = tmp_path_factory.mktemp("data") / "digits-8.zarr"
    prepare(registry.get("dataset").config("digits"), path, size=8, progress=False)
    return path


@pytest.fixture(scope="module")
def slurm():
    """A running SLURM cluster; without one, skipped here and an error where it is required."""
    up = shutil.which("scontrol") and subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout
    if up and "UP" in up:
        return
    message = "no SLURM cluster is running; start one with `bash .ci/slurm.sh start` (as root)"
    if os.environ.get("PRAKIT_TEST_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)
