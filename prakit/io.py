"""Files and folders that appear whole or not at all, the one way prakit writes what a kill could
cut short; and the one way it reads its own JSON files back, checked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from prakit.errors import NO_SPACE, DiskFullError, PrakitError

#: A JSON object's expected shape: each key and what its value must be: a type (or a tuple of
#: types), a nested shape, or a one-item list holding the shape of every item. A key ending in
#: ``?`` may be absent.
Shape = Mapping[str, Any]


def out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from or while handling, is a full file system
    (torch's writer, say, raises a RuntimeError while handling the OSError)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def said_when_full(path: str | os.PathLike, kept: str = "") -> Iterator[None]:
    """Within: a full file system raises :class:`DiskFullError` naming ``path`` (and what is ``kept``)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if out_of_space(exc):
            raise DiskFullError(path, kept) from None
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", check: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """A file opened for writing that appears at ``path`` whole or not at all: written to a
    temporary file ``.NAME.*.tmp`` beside it, fsynced, passed to ``check`` (which may raise to
    refuse it) and renamed over ``path``, the rename made durable; removed if anything fails,
    a full file system a :class:`DiskFullError` naming ``path``."""
    path = Path(path)
    with said_when_full(path):
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
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            _name_target(exc, Path(tmp), path)
            raise
        fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A folder that appears at ``path`` whole or not at all: filled in a temporary folder
    ``.NAME.*.tmp`` beside it, its files fsynced, then renamed to ``path``; removed if anything
    fails, a full file system a :class:`DiskFullError` naming ``path``. What was at ``path`` is set
    aside under such a name first and deleted after the rename. Leftovers of a killed earlier try
    are deleted first."""
    path = Path(path)
    with said_when_full(path):
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
            aside = None
            if path.exists():
                aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
                os.replace(path, aside)
            try:
                os.replace(tmp, path)
            except BaseException:
                if aside:
                    os.replace(aside, path)
                raise
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            _name_target(exc, tmp, path)
            raise
        fsync_directory(path.parent)
        if aside:
            shutil.rmtree(aside)


def _name_target(exc: BaseException, tmp: Path, path: Path) -> None:
    """Make an OSError name ``path`` where it names the temporary ``tmp`` it is written through (or a
    file in it): the user knows ``path``."""
    if not isinstance(exc, OSError):
        return
    for attribute in ("filename", "filename2"):
        name = getattr(exc, attribute)
        if isinstance(name, (str, os.PathLike)) and Path(name).is_relative_to(tmp):
            setattr(exc, attribute, str(path / Path(name).relative_to(tmp)))


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows cannot open directories)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DamagedFileError(PrakitError):
    """One of prakit's own files cannot be used as written: empty, cut short, not UTF-8, not the JSON
    expected. The message names the file, what is wrong with it and the way out."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str):
        super().__init__(f"{path} is damaged: {problem}; {fix}")
        self.path, self.problem, self.fix = Path(path), problem, fix


def read_json(path: str | os.PathLike, fix: str, shape: Shape | None = None) -> dict[str, Any]:
    """The JSON object in prakit's own file ``path``, with every key of ``shape`` present and of its
    type; anything else raises :class:`DamagedFileError` saying ``fix`` (how to restore or redo it)."""
    path = Path(path)
    data = parse_json(path, read_text(path, fix), fix)
    return check_shape(path, data, shape or {}, fix)


def read_text(path: Path, fix: str) -> str:
    """The UTF-8 text of prakit's own file ``path`` (:class:`DamagedFileError` if it is not text)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedFileError(path, f"not UTF-8 text (byte {exc.start})", fix) from None
    except IsADirectoryError:
        raise DamagedFileError(path, "a folder where a file belongs", fix) from None


def parse_json(path: Path, text: str, fix: str) -> Any:
    if not text.strip():
        raise DamagedFileError(path, "empty", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedFileError(path, f"not JSON ({exc.msg}: line {exc.lineno}, column {exc.colno})", fix) from None


def check_shape(path: Path, data: Any, shape: Shape, fix: str, where: str = "") -> dict[str, Any]:
    """``data`` if it is a JSON object of ``shape`` (see :data:`Shape`); else a :class:`DamagedFileError`
    naming the first key that is not (dotted from the top, ``where`` its prefix)."""
    if not isinstance(data, dict):
        raise DamagedFileError(path, f"{where or 'its content'} is {json_type(data)} where an object belongs", fix)
    for key, kind in shape.items():
        name = key.removesuffix("?")
        at = f"{where}.{name}" if where else name
        if name not in data:
            if key.endswith("?"):
                continue
            raise DamagedFileError(path, f"{at} is missing", fix)
        check_value(path, data[name], kind, fix, at)
    return data


def check_value(path: Path, value: Any, kind: Any, fix: str, at: str) -> None:
    if isinstance(kind, Mapping):
        check_shape(path, value, kind, fix, at)
    elif isinstance(kind, list):
        check_value(path, value, list, fix, at)
        for i, item in enumerate(value):
            check_value(path, item, kind[0], fix, f"{at}[{i}]")
    elif not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        named = [json_type_name(t) for t in _types(kind) if not (t is int and float in _types(kind))]
        raise DamagedFileError(path, f"{at} is {json_type(value)} where {' or '.join(named)} belongs", fix)


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "a boolean", type(None): "null"}


def json_type_name(kind: type) -> str:
    """``kind`` as a JSON value, with its article: ``int`` is "an integer"."""
    return _JSON_NAMES.get(kind, f"a {kind.__name__}")


def json_type(value: Any) -> str:
    return json_type_name(type(value))
