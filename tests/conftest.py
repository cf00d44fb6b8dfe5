"""Shared fixtures: a real nats-server per test (random loopback port, stopped by PID) and a
state directory with identities for core, scheduler, the local gate and two users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bus import server
from bus.connection import Bus
from bus.deployment import StateDir
from bus.streams import ensure_streams
from schemas.roster import Role


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    sd = StateDir(tmp_path / "state")
    sd.root.mkdir()
    sd.ensure_identity("core", Role.CORE)
    sd.ensure_identity("scheduler", Role.SCHEDULER)
    sd.ensure_identity("local", Role.GATE)
    sd.ensure_identity("alice", Role.USER)
    sd.ensure_identity("bob", Role.USER)
    sd.ensure_identity("admin", Role.ADMIN)
    return sd


@pytest.fixture
def nats_server(state: StateDir) -> Iterator[server.RunningServer]:
    srv = server.start(state.root)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def nats_url(nats_server: server.RunningServer) -> str:
    return nats_server.url


async def connect_as(state: StateDir, url: str, name: str) -> Bus:
    """A signed bus connection for one identity of the state directory."""
    return await Bus.connect(url, state.load_signer(name), state.load_roster(), name)


@pytest.fixture
async def core_bus(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "core")
    await ensure_streams(bus.js)
    try:
        yield bus
    finally:
        await bus.close()
