"""Paths on the command line: where a config's run goes by default, and outputs checked before
any work is done."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prakit.errors import PrakitError

#: The arguments that name something a command writes.
OUTPUT_ARGUMENTS = ("out", "npz", "grid", "run_dir", "runs_in")
#: Those of them that name a file, where a folder cannot go, with the file's extension.
FILE_ARGUMENTS = {"npz": ".npz", "grid": ".png"}


def default_run_dir(config: str | Path, runs_in: str | Path = "runs") -> Path:
    """``runs/<config name>``: where ``prakit train`` and ``prakit submit`` run a config."""
    return Path(runs_in) / Path(config).stem


def check_output(value: str | Path, file: str | None = None) -> None:
    """Refuse an output path that cannot be written: its nearest existing folder must accept a new
    file; where it names a ``file`` (of that extension), an existing folder is refused too."""
    path = Path(value).expanduser()
    if file and path.is_dir():
        raise PrakitError(f"cannot write {value}: it is a folder, and a file goes there; name a file, such as "
                          f"{Path(value) / ('samples' + file)}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise PrakitError(f"cannot write {value}: {folder} is a file, not a folder; choose another path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise PrakitError(
            f"cannot write {value}: {folder} does not accept new files ({exc.strerror}); choose a folder this user may write"
        ) from None
