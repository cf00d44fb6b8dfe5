"""Shared fixtures: a real nats-server per test (random loopback port, stopped by PID) and a
state directory with identities for core, scheduler, the local gate and two users."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bus import server
from bus.connection import Bus
from bus.deployment import StateDir
from bus.streams import ensure_buckets, ensure_streams
from bus.tls import client_context
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
    return await Bus.connect(
        url,
        state.load_signer(name),
        state.load_roster(),
        name,
        tls=client_context(state),
        nkeys_seed=str(state.seed_path(name)),
    )


@pytest.fixture
async def core_bus(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "core")
    await ensure_streams(bus.js)
    await ensure_buckets(bus.js, state.load_roster(), set())
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def alice_bus(state: StateDir, nats_url: str, core_bus: Bus) -> AsyncIterator[Bus]:
    """A user's connection, once core has made the users' files buckets."""
    bus = await connect_as(state, nats_url, "alice")
    try:
        yield bus
    finally:
        await bus.close()


def kill_leftover_runs(state: StateDir) -> int:
    """Kill the jobs (process groups) a test's gate left running in ``state``, then wait
    for the gates' keepers to go (SIGKILL after 5 s).

    Jobs outlive their gate by design, so a test that ends before its jobs must stop them
    here, by PID, checking each process still belongs to that run. Returns how many."""
    killed = 0
    for run in state.root.glob("gates/*/runs/*"):
        try:
            pid = int((run / "job.pid").read_text().split()[0])
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, ValueError, IndexError):
            continue
        if not cwd.startswith(str(run)):
            continue  # the pid was reused by a process that is not ours
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
            killed += 1
    for pid_file in state.root.glob("gates/*/runs/keeper.pid"):
        with contextlib.suppress(OSError, ValueError):
            _stop_keeper(int(pid_file.read_text()))
    return killed


def _stop_keeper(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"gates.local.keeper" not in cmdline:
                return  # gone (a zombie has no command line), or the pid was reused
        except OSError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
