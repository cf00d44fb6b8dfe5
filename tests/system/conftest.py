"""Fixtures for whole-deployment tests: a Harness per test, always stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.harness import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.create(tmp_path / "state", ["--nodes", "4", "--cpus", "2", "--memory-mb", "4096"])
    try:
        yield h
    finally:
        h.stop()
