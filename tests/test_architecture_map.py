"""docs/architecture.md is the map: its tree names every module of the core and the built-in plugins."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.relative_to(ROOT) for folder in ("prakit", "plugins") for p in (ROOT / folder).rglob("*.py")
                 if not p.name.startswith("__"))


def tree() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return re.search(r"```\n(prakit/.*?)```", text, re.S)[1].splitlines()


def section(lines: list[str], folder: str) -> list[str]:
    """The lines of ``folder/``'s entry: its own line and the more indented ones below it."""
    for i, line in enumerate(lines):
        if line.split()[:1] == [folder + "/"]:
            indent = len(line) - len(line.lstrip())
            rest = lines[i + 1:]
            end = next((j for j, m in enumerate(rest) if len(m) - len(m.lstrip()) <= indent), len(rest))
            return [line, *rest[:end]]
    return []


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_the_map_names_every_module(module):
    lines = tree()
    for folder in module.parts[:-1]:
        lines = section(lines, folder)
        assert lines, f"docs/architecture.md has no entry for {folder}/ (on the way to {module})"
    assert re.search(rf"(?<![\w.]){re.escape(module.name)}\b", "\n".join(lines)), f"docs/architecture.md does not name {module}"


def test_the_kinds_table_of_the_map_is_prakit_kinds():
    from prakit.kinds import KINDS

    rows = re.findall(r"^\| (\w+) \| `([\w.]+)` \| `(\w+)` \| (.+?) \|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    shown = {kind: (key, interface, built_with) for kind, key, interface, built_with in rows}
    for kind in KINDS.values():
        if kind.name != "dataset":  # named in the sentence under the table
            built_with = f"`{', '.join(kind.built_with)}`" if kind.built_with else "the config"
            assert shown[kind.name] == (kind.key, kind.interface_name, built_with), kind.name
