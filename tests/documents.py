"""The commands README.md and docs/*.md show: every ``$ `` line of a ``console`` block, with the
output shown under it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


class Shown(NamedTuple):
    document: str  #: the file name, e.g. ``training.md``
    command: str  #: the command as shown, without ``$`` and without its trailing comment
    output: list[str]  #: the lines shown under it


def shown_commands(documents=DOCUMENTS) -> list[Shown]:
    found: list[Shown] = []
    for doc in documents:
        for block in re.findall(r"```console\n(.*?)```", doc.read_text(), re.S):
            current = None
            for line in block.splitlines():
                if line.startswith("$ "):
                    current = Shown(doc.name, re.sub(r"\s+#\s.*$", "", line[2:]).strip(), [])
                    found.append(current)
                elif current is not None:
                    current.output.append(line)
    return found
