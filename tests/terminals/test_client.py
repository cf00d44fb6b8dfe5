"""The Python client (async and blocking) against a core-signed responder."""

from __future__ import annotations

import asyncio

import pytest

from bus.connection import Bus
from bus.deployment import StateDir
from schemas.commands import RejectCode
from schemas.jobs import JobSpec, JobState
from terminals.client import Client, SyncClient, UnknownJobError
from tests.terminals.fakecore import FakeCore, summary


async def test_jobs_follows_every_page(state: StateDir, nats_url: str, core_bus: Bus) -> None:
    await FakeCore([summary(n) for n in range(25)], page=10).serve(core_bus)
    async with await Client.connect(state.root, "alice", nats_url=nats_url) as client:
        jobs = await client.jobs(states=[JobState.PENDING])
    assert [j.job_id for j in jobs] == [str(n) for n in range(25)]


async def test_rejection_is_a_typed_error(state: StateDir, nats_url: str, core_bus: Bus) -> None:
    await FakeCore([]).serve(core_bus)
    async with await Client.connect(state.root, "alice", nats_url=nats_url) as client:
        with pytest.raises(UnknownJobError) as err:
            await client.job("9")
    assert err.value.code is RejectCode.UNKNOWN_JOB and err.value.detail == "no job 9"


async def test_events_of_an_empty_stream_end(state: StateDir, nats_url: str, core_bus: Bus) -> None:
    async with await Client.connect(state.root, "alice", nats_url=nats_url) as client:
        assert [e async for e in client.events()] == []


async def test_sync_client_submits(state: StateDir, nats_url: str, core_bus: Bus) -> None:
    fake = FakeCore([])
    await fake.serve(core_bus)

    def submit() -> str:
        with SyncClient(state.root, "alice", nats_url) as client:
            return client.submit(JobSpec(script="true", name="s"))

    assert await asyncio.to_thread(submit) == "1"
    assert fake.submitted[0].spec.name == "s"
