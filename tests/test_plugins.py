"""Plugin discovery through real entry points: loading, failures, environment switches."""

import ast
import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from conftest import write_distribution
from toys import ToyPlugin

from prakit import hookspecs, plugins, registry
from prakit.errors import DuplicateComponentError, PluginError
from prakit.kinds import KINDS
from prakit.presets import model_presets

ROOT = Path(__file__).resolve().parents[1]
SPECS = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "prakit_spec")]
#: The hooks that add components, one per kind (the other declares model presets).
COMPONENT_HOOKS = [name for name in SPECS if name.startswith("register_")]


def test_builtins_are_registered_by_their_plugin(fresh_plugins):
    assert registry.get("decoder").entry("identity").plugin == "baselines"
    assert registry.get("decoder").entry("mlp").plugin == "pra"
    assert registry.get("rollout").entry("pra").plugin == "pra"
    assert registry.get("backbone").entry("transformer").plugin == "models"
    assert registry.get("generator").entry("diffusion").plugin == "models"


def test_importing_prakit_loads_no_plugin():
    code = "import prakit, sys; print(sorted(m for m in sys.modules if m.startswith('prakit_')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_points_load_once(fresh_plugins):
    manager = plugins.get_plugin_manager()
    assert plugins.get_plugin_manager() is manager
    assert registry.registries() is registry.registries()


def test_registries_follow_the_plugin_manager(fresh_plugins):
    assert "toy" not in registry.get("decoder")
    plugins.get_plugin_manager().register(ToyPlugin(), name="toys")  # not through register_plugin
    assert "toy" in registry.get("decoder")
    plugins.unregister_plugin("toys")
    assert "toy" not in registry.get("decoder")


def test_the_plugin_manager_does_not_import_the_registry():
    """The registry is built from the plugin manager, so the manager must not import it back."""
    imported = set()
    for node in ast.walk(ast.parse((ROOT / "prakit" / "plugins.py").read_text())):  # function bodies too
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert "prakit.registry" not in imported


def test_every_hook_receives_the_registrar_it_is_typed_with(fresh_plugins):
    received = []

    class Recorder:
        pass

    for name in COMPONENT_HOOKS:
        setattr(Recorder, name, plugins.hookimpl(lambda self, registrar: received.append(registrar)))
    plugins.register_plugin(Recorder(), name="recorder")
    registry.registries()
    namespace = {**vars(hookspecs), "Registrar": registry.Registrar}  # hookspecs imports it for type checkers only
    for name in COMPONENT_HOOKS:
        assert typing.get_type_hints(getattr(hookspecs, name), namespace)["registrar"] is registry.Registrar
    assert len(received) == len(COMPONENT_HOOKS) and all(type(r) is registry.Registrar for r in received)


BROKEN_IMPORT = "raise RuntimeError('boom at import')\n"
MISSPELLED = """
from prakit import hookimpl

@hookimpl
def register_decoder(registrar):
    pass
"""


def test_a_plugin_failing_to_import_is_one_warning_and_the_rest_load(install_distribution):
    install_distribution(
        "prakit-broken",
        {"broken": "prakit_broken_boom", "missing": "prakit_no_such_module"},
        {"prakit_broken_boom": BROKEN_IMPORT},
    )
    with pytest.warns(plugins.PluginLoadWarning) as caught:
        names = registry.list_components("decoder")
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "'broken' (prakit_broken_boom)" in messages[0] and "RuntimeError: boom at import" in messages[0]
    assert "'missing' (prakit_no_such_module)" in messages[1] and "ModuleNotFoundError" in messages[1]
    assert {"identity", "mlp"} <= set(names)


def test_a_misspelled_hook_is_an_error_naming_it(install_distribution):
    install_distribution("prakit-typo", {"typo": "prakit_typo_plugin"}, {"prakit_typo_plugin": MISSPELLED})
    with pytest.raises(PluginError, match=r"'typo' implements unknown hook 'register_decoder' \(did you mean 'register_decoders'"):
        registry.registries()


def test_autoload_can_be_disabled(fresh_plugins, toy_plugin):
    fresh_plugins.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    plugins.reset()
    assert all(len(r) == 0 for r in registry.registries().values())
    plugins.register_plugin(ToyPlugin(), name="toys")
    assert registry.list_components("decoder") == ["toy"]


def test_only_the_named_plugins_load(fresh_plugins):
    fresh_plugins.setenv(plugins.ONLY_ENV, "baselines")
    plugins.reset()
    assert registry.list_components("decoder") == ["identity"]
    assert registry.list_components("backbone") == []


def test_a_duplicate_name_is_an_error_naming_both_plugins(fresh_plugins):
    from prakit_pra.mlp_decoder import MLPDecoder, MLPDecoderConfig

    class Copycat:
        @plugins.hookimpl
        def register_decoders(self, registrar):
            registrar.add(MLPDecoderConfig, MLPDecoder)

    plugins.register_plugin(Copycat(), name="copycat")
    with pytest.raises(DuplicateComponentError, match="'mlp' is registered twice: by plugin 'pra' and by plugin 'copycat'"):
        registry.registries()


def test_every_hook_is_documented_and_implemented_by_the_toy_plugin(toy_plugin):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert len(COMPONENT_HOOKS) == len(KINDS) == 8 and set(SPECS) - set(COMPONENT_HOOKS) == {"model_presets"}
    for name in SPECS:
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"
        assert f"`{name}`" in docs, f"{name} is not documented in docs/plugins.md"
    manager = plugins.get_plugin_manager()
    for kind, reg in registry.registries().items():
        assert "toy" in reg, f"the toy plugin registered no {kind}"
        assert reg.entry("toy").plugin == "toys"
        assert any(impl.plugin_name == "toys" for impl in getattr(manager.hook, reg.kind.hook).get_hookimpls())
    assert model_presets()["toy"]["backbone"] == {"name": "toy"}


@pytest.mark.slow
def test_plugin_load_warnings_reach_the_cli_as_one_line(tmp_path):
    site = write_distribution(tmp_path, "prakit-gone", {"gone": "prakit_gone_module"})
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-m", "prakit", "plugins", "list", "--kind", "decoder"],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0
    assert out.stderr.startswith("prakit: warning: prakit plugin 'gone' (prakit_gone_module) failed to load")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "mlp" in out.stdout


def test_a_preset_named_by_two_plugins_is_refused_naming_both(toy_plugin):
    class Twin:
        @plugins.hookimpl
        def model_presets(self):
            return {"toy": {}}

    plugins.register_plugin(Twin(), name="twin")
    with pytest.raises(PluginError, match="plugins 'toys' and 'twin' both define the model preset 'toy'|"
                                          "plugins 'twin' and 'toys' both define the model preset 'toy'"):
        model_presets()


def test_plugins_import_prakit_only_through_its_plugin_api():
    """The built-in plugins and the example one import from prakit.plugin_api alone, as docs/plugins.md asks."""
    found = []
    for path in [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "docs" / "examples" / "linear-decoder").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prakit":
                if node.module not in ("prakit.plugin_api", "prakit.testing"):
                    found.append(f"{path.relative_to(ROOT)}: from {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names if a.name.split(".")[0] == "prakit"]
    assert not found


def test_the_hooks_and_the_plugin_docs_say_what_the_kinds_table_says():
    rows = re.findall(r"^\| `(register_\w+)` \| `(\w+)` \(`([\w.]+)`\) \| `prakit\.components\.(\w+)` \| (.+?) \|$",
                      (ROOT / "docs" / "plugins.md").read_text(), re.M)
    table = {hook: (kind, key, interface, with_) for hook, kind, key, interface, with_ in rows}
    for kind in KINDS.values():
        built_with = ", ".join(kind.built_with) or "the config alone"
        assert table[kind.hook] == (kind.name, kind.key, kind.interface_name, f"`{built_with}`" if kind.built_with
                                    else built_with), kind.name
        doc = inspect.getdoc(getattr(hookspecs, kind.hook))
        assert f"prakit.components.{kind.interface_name}" in doc and built_with in doc, kind.hook
    assert len(table) == len(KINDS)


def test_importing_the_config_layer_loads_no_torch():
    code = "import prakit.config, prakit.kinds, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_rollout_shown_in_one_file_passes_its_contract_with_only_its_plugin(monkeypatch):
    """docs/plugins.md's one-file rollout and its contract test, run as shown, with no other plugin loaded."""
    import types

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S)
    source = next(block for block in blocks if "class Smeared(" in block)
    test = next(block for block in blocks if "class TestSmeared(" in block)
    module = types.ModuleType("smeared")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    exec(compile(test, "docs/plugins.md", "exec"), module.__dict__)
    monkeypatch.setenv(plugins.ONLY_ENV, "")
    plugins.reset()
    try:
        plugins.register_plugin(module, name="smeared")
        assert registry.list_components("rollout") == ["smeared"]
        case = module.TestSmeared()
        checks = [name for name in dir(case) if name.startswith("test_")]
        assert len(checks) >= 6
        for check in checks:
            getattr(case, check)()
    finally:
        plugins.reset()
