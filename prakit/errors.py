"""Exceptions prakit raises for bad input: each names the problem and the fix."""

import difflib
import errno
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


#: The problem and its fix for the errors whose fix is not "choose another path": ``{at}`` is `` at PATH``.
_OS_PROBLEMS = {
    errno.ENOSPC: "no space left on the device{at}; free some space and run again",
    errno.EDQUOT: "the disk quota is used up{at}; free some space or raise the quota and run again",
    errno.ELOOP: "a symlink loop{at}; point the link at a real file or folder",
    errno.EEXIST: "something already exists{at}; move it away or choose another path",
    errno.EISDIR: "a folder is{at} where a file belongs; move it away or choose another path",
}


def os_problem(exc: OSError, fix: str | None = None) -> str:
    """``exc`` in one line: its problem, its path and the fix its errno calls for; for the other
    errors (no such file, permission denied, ...) the system's words, the path and ``fix``."""
    at = f" at {exc.filename}" if exc.filename else ""
    if exc.errno in _OS_PROBLEMS:
        return _OS_PROBLEMS[exc.errno].format(at=at)
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}" + (f"; {fix}" if fix else "")
