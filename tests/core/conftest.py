"""Fixtures for core tests: core's service running in the test's event loop on a real bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from bus.connection import Bus, BusError
from bus.deployment import StateDir
from core.service import CoreService
from core.store import Store
from schemas import subjects
from schemas.commands import AnyCommand, AnyReply, ListJobs, SubmitJob
from schemas.ids import MessageId
from schemas.jobs import JobSpec
from tests.conftest import connect_as


@dataclass
class RunningCore:
    """A core service started in-process, with its own bus connection and store."""

    service: CoreService
    store: Store
    bus: Bus
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await self.bus.close()
        self.store.close()


async def start_core(state: StateDir, url: str, db_url: str) -> RunningCore:
    bus = await connect_as(state, url, "core")
    store = Store(db_url)
    service = CoreService(bus, store)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready in done, "core did not become ready"
    await bus.nc.flush()  # the server has core's subscriptions before anyone sends
    return RunningCore(service, store, bus, stop, task)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'core.db'}"


@pytest.fixture
async def core(
    state: StateDir, core_bus: Bus, nats_url: str, db_url: str
) -> AsyncIterator[RunningCore]:
    running = await start_core(state, nats_url, db_url)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def alice(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "alice")
    yield bus
    await bus.close()


@pytest.fixture
async def bob(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "bob")
    yield bus
    await bus.close()


@pytest.fixture
async def admin(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "admin")
    yield bus
    await bus.close()


@pytest.fixture
async def scheduler(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "scheduler")
    yield bus
    await bus.close()


@pytest.fixture
async def gate(state: StateDir, nats_url: str) -> AsyncIterator[Bus]:
    bus = await connect_as(state, nats_url, "local")
    yield bus
    await bus.close()


_ids = iter(range(1, 10**9))


def new_id(prefix: str = "c") -> MessageId:
    return MessageId(f"{prefix}{next(_ids)}-{time.monotonic_ns()}")


async def send(bus: Bus, cmd: AnyCommand) -> AnyReply:
    return await bus.request(subjects.command_subject(cmd), cmd)


def submit_job(name: str = "job", **spec: object) -> SubmitJob:
    return SubmitJob(
        id=new_id("s"),
        at=time.time(),
        spec=msgspec.convert({"script": "#!/bin/sh\necho hi\n", "name": name, **spec}, JobSpec),
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll an async predicate until it is true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def wait_ready(bus: Bus, timeout: float = 20.0) -> None:
    """Wait until a core process answers queries (it may still be starting)."""

    async def answers() -> bool:
        query = ListJobs(id=new_id("q"), at=time.time())
        try:
            await bus.request(subjects.query_subject(query), query, timeout=0.5)
        except BusError:
            return False
        return True

    await eventually(answers, timeout)
