"""Files and folders that appear whole or not at all: the one way prakit writes what a kill could cut short."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", check: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """A file opened for writing that appears at ``path`` whole or not at all: written to a
    temporary file ``.NAME.*.tmp`` beside it, fsynced, passed to ``check`` (which may raise to
    refuse it) and renamed over ``path``, the rename made durable; removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A folder that appears at ``path`` whole or not at all: filled in a temporary folder
    ``.NAME.*.tmp`` beside it, its files fsynced, then renamed to ``path``; removed if anything
    fails. What was at ``path`` is set aside under such a name first and deleted after the rename.
    Leftovers of a killed earlier try are deleted first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for file in tmp.iterdir():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        fsync_directory(tmp)
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")) if path.exists() else None
        if aside:
            os.replace(path, aside)
        try:
            os.replace(tmp, path)
        except BaseException:
            if aside:
                os.replace(aside, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_directory(path.parent)
    if aside:
        shutil.rmtree(aside)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows cannot open directories)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
