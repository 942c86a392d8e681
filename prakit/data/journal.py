"""The progress record of an unfinished store: JSON files in ``<store>/progress/``.

Each file is replaced atomically, so a kill leaves either the old record or the new one; the
folder is removed when the store is finished. Its presence is what marks a store unfinished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prakit.io import Shape, atomic_write_text, read_json

FOLDER = "progress"


def read(store: Path, name: str, shape: Shape) -> dict[str, Any] | None:
    """The record ``name`` with the keys of ``shape``, or None if it was never written; a damaged
    one is a :class:`prakit.io.DamagedFileError`."""
    path = Path(store) / FOLDER / f"{name}.json"
    if not path.exists():
        return None
    return read_json(path, f"delete {store} and run the command that made it again", shape)


def write(store: Path, name: str, record: dict[str, Any]) -> None:
    atomic_write_text(Path(store) / FOLDER / f"{name}.json", json.dumps(record))


def exists(store: Path) -> bool:
    return (Path(store) / FOLDER).is_dir()


def clear(store: Path) -> None:
    shutil.rmtree(Path(store) / FOLDER, ignore_errors=True)
