import pytest

from prakit import plugins


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
    """Put a real distribution (dist-info with entry points, plus modules) on sys.path."""

    def install(name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        site = tmp_path / f"site-{name}"
        info = site / f"{name.replace('-', '_')}-0.1.dist-info"  # a dash would end the name
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[prakit]\n{lines}")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(source)
        fresh_plugins.syspath_prepend(str(site))
        plugins.reset()

    return install
