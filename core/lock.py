"""The one-writer guard: at most one core process writes a given event store.

Core keeps its state in memory and allocates job ids itself, so a second core on the same
database would hand out the same ids and fail every commit. At start-up core takes an
exclusive, non-blocking ``flock`` on a file beside the SQLite database (``core.db.lock``) and
holds it until it exits; the kernel drops it when the process dies, however it dies. The
holder writes its pid into the file so that the refusal can name it.

Only SQLite files are guarded here. For any other URL (PostgreSQL) there is no shared file to
lock, so no lock is taken; a later issue adds a lease in a NATS key-value bucket for that.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url


class LockHeldError(Exception):
    """Another process holds the lock of this event store."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "a process whose pid is unknown"
        super().__init__(f"another core ({holder}) holds {path}")
        self.path = path
        self.pid = pid


def lock_path(db_url: str) -> Path | None:
    """The lock file of a SQLite database file (``<db>.lock``); None for other databases."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.lock").resolve()


@contextlib.contextmanager
def hold(path: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` (created if missing), or raise LockHeldError."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeldError(path, _pid_in(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _pid_in(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None
