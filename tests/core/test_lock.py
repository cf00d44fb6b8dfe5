"""The one-writer lock on a SQLite event store (core.lock), in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.lock import LockHeldError, hold, lock_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////srv/skyport/core/core.db", "/srv/skyport/core/core.db.lock"),
        ("sqlite+pysqlite:////srv/core.db?timeout=5", "/srv/core.db.lock"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://core@db.example/skyport", None),
    ],
)
def test_only_a_sqlite_file_has_a_lock_file_beside_it(url: str, path: str | None) -> None:
    assert lock_path(url) == (None if path is None else Path(path))


def test_a_held_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "core.db.lock"
    with hold(path):
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeldError) as err, hold(path):
            pass
        assert err.value.pid == os.getpid() and err.value.path == path
        assert str(path) in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    with hold(path):  # released on exit: the next core may take it
        pass
