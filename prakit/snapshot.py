"""The code a job runs is the code at its submission.

A job can wait in the queue for hours and be requeued days later; by then the checkout may hold
other code. While jobs are submitted, :func:`frozen_code` copies the checkout's ``prakit/`` and
``plugins/`` into a folder named by their digest (shared by every submission of the same code)
and puts it first on the jobs' ``PYTHONPATH``; ``PYTHONSAFEPATH`` keeps the working directory,
often the checkout itself, off the front of their ``sys.path``. A prakit installed as a package
(not from a checkout) is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import prakit

#: The folders of a checkout that hold the code jobs import.
CODE = ("prakit", "plugins")


def source_root() -> Path | None:
    """The checkout prakit is imported from, or None if prakit is installed as a package."""
    root = Path(prakit.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and all((root / d).is_dir() for d in CODE) else None


def code_files(root: Path) -> list[Path]:
    """The files of the code folders, relative to ``root``, without bytecode caches."""
    return sorted(p.relative_to(root) for d in CODE for p in (root / d).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def snapshot(root: Path, folder: Path) -> Path:
    """A copy of ``root``'s code in ``folder/<digest>`` (made once per digest, atomically)."""
    files = code_files(root)
    digest = hashlib.blake2b(digest_size=8)
    for path in files:
        digest.update(f"{path}\0".encode() + (root / path).read_bytes() + b"\0")
    target = folder / digest.hexdigest()
    if target.is_dir():
        return target
    temporary = folder / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    for path in files:
        (temporary / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, temporary / path)
    try:
        temporary.rename(target)
    except OSError:  # another submission made the same copy first
        shutil.rmtree(temporary)
    return target


@contextlib.contextmanager
def frozen_code(folder: str | os.PathLike) -> Iterator[Path | None]:
    """Within: processes started (jobs submitted) import prakit and the built-in plugins from a
    snapshot of the checkout in ``folder``; yields the snapshot (None outside a checkout)."""
    root = source_root()
    if root is None:
        yield None
        return
    copy = snapshot(root, Path(folder).resolve())
    paths = [str(copy), str(copy / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
    with environment(PYTHONPATH=os.pathsep.join(paths), PYTHONSAFEPATH="1"):
        yield copy


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Within: these environment variables set (processes started then inherit them); restored after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
