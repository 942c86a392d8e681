"""Exceptions prakit raises for bad input: each names the problem and the fix."""

import difflib
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
