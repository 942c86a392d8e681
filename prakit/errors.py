"""Exceptions prakit raises for bad input: each names the problem and the fix."""

import difflib
import errno
import os
from pathlib import Path
from typing import Iterable


class PrakitError(Exception):
    """Base of every error caused by user input, a config or a plugin."""


class PluginError(PrakitError):
    """A plugin is broken (unknown hook name, wrong registration)."""


class DuplicateComponentError(PluginError):
    """Two plugins registered the same name for one kind."""


class UnknownNameError(PrakitError, KeyError):
    """A name that is not among the known ones; the message lists the close matches."""

    def __init__(self, what: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        listing = ", ".join(known) if known else "none"
        super().__init__(f"unknown {what} {name!r}; {hint}known: {listing}")
        self.name, self.close, self.known = name, close, known

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ConfigError(PrakitError):
    """A config file or override is invalid; ``problems`` holds ``(path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        head = f"invalid config {source}" if source else "invalid config"
        lines = [f"  {path or '<root>'}: {message}" for path, message in problems]
        super().__init__("\n".join([head + ":", *lines]))


#: The errors of a file system that has no room left (or of a user over quota): a :class:`DiskFullError`.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: The problem and its fix for the other errors whose fix is not "choose another path": ``{at}`` is `` at PATH``.
_OS_PROBLEMS = {
    errno.ELOOP: "a symlink loop{at}; point the link at a real file or folder",
    errno.EEXIST: "something already exists{at}; move it away or choose another path",
    errno.EISDIR: "a folder is{at} where a file belongs; move it away or choose another path",
}


def os_problem(exc: OSError, fix: str | None = None) -> str:
    """``exc`` in one line: its problem, its path and the fix its errno calls for; for the other
    errors (no such file, permission denied, ...) the system's words, the path and ``fix``."""
    if exc.errno in NO_SPACE:
        return str(DiskFullError(exc.filename or "a file"))
    at = f" at {exc.filename}" if exc.filename else ""
    if exc.errno in _OS_PROBLEMS:
        return _OS_PROBLEMS[exc.errno].format(at=at)
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}" + (f"; {fix}" if fix else "")


class DiskFullError(PrakitError):
    """A file could not be written for want of space. What was written before is intact
    (``kept`` says what, where its writer knows)."""

    def __init__(self, path: str | os.PathLike, kept: str = ""):
        super().__init__(f"no space left to write {path} (the device is full, or the disk quota used up): free "
                         f"some space, then run the same command again{'; ' + kept if kept else ''}")
        self.path = Path(path)
