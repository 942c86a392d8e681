"""One writer at a time: what a command writes (a run's training, a sample store's shard, an
evaluation's folder) is held by a lock file for as long as it writes.

The lock is the kernel's (``flock``), so a holder that dies, however it dies, releases it; no
stale lock is ever left to clear by hand. The file says who holds it (pid, host, command, since
when), for the message that refuses a second writer. It works across hosts on NFSv4 and
Lustre, where ``flock`` is forwarded to the server.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Iterator

from prakit.errors import PrakitError


class LockedError(PrakitError):
    """Another process is writing the same thing."""


@contextlib.contextmanager
def exclusive(lock: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """Within: this process is the only one writing ``what``, guarded by the lock file ``lock``;
    another process trying meanwhile gets a :class:`LockedError` naming this one, or with ``wait``
    waits for it to end."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"{what} is being written by {holder(fd)}: wait for it to end, or stop it "
                              f"(a second writer would interleave their files)") from None
        with contextlib.suppress(OSError):  # who holds it is for messages: not worth failing for on a full disk
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(about_this_process()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def making(path: Path) -> Iterator[None]:
    """Within: this process alone makes ``path`` (a store, a cache); another that tries meanwhile
    (a job of the same array, say) waits, then finds it made."""
    with exclusive(lock_beside(path), str(path), wait=True):
        yield


def lock_beside(path: Path, part: str = "") -> Path:
    """The lock file of writing ``path`` (of its ``part``, say a shard), beside it: ``.NAME[.PART].lock``."""
    return path.with_name(f".{path.name}{'.' + part if part else ''}.lock")


def about_this_process() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
            "since": datetime.datetime.now().isoformat(timespec="seconds")}


def holder(fd: int) -> str:
    """Who holds the lock open as ``fd``, as its file says."""
    try:
        about = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {about['pid']} on {about['host']} (`{about['command']}`, since {about['since']})"
    except (ValueError, KeyError, TypeError):  # written this instant, or not by prakit
        return "another process"
