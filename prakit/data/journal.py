"""The progress record of an unfinished store: JSON files in ``<store>/progress/``.

Each file is replaced atomically, so a kill leaves either the old record or the new one; the
folder is removed when the store is finished. Its presence is what marks a store unfinished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prakit.io import atomic_write_text

FOLDER = "progress"


def read(store: Path, name: str) -> dict[str, Any] | None:
    """The record ``name``, or None if it was never written."""
    try:
        return json.loads((Path(store) / FOLDER / f"{name}.json").read_text())
    except FileNotFoundError:
        return None


def write(store: Path, name: str, record: dict[str, Any]) -> None:
    atomic_write_text(Path(store) / FOLDER / f"{name}.json", json.dumps(record))


def exists(store: Path) -> bool:
    return (Path(store) / FOLDER).is_dir()


def clear(store: Path) -> None:
    shutil.rmtree(Path(store) / FOLDER, ignore_errors=True)
