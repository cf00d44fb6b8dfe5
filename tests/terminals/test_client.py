"""The Python client (async and blocking) against a core-signed responder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bus.connection import Bus
from bus.deployment import StateDir
from schemas.commands import RejectCode
from schemas.jobs import JobSpec, JobState
from schemas.wire import new_user_seed
from terminals.client import Client, SyncClient, UnknownJobError
from terminals.client.errors import ClientError
from terminals.client.locate import Credentials, credentials
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


def test_a_credentials_file_names_its_user_by_its_key(
    state: StateDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = tmp_path / "alice.nk"
    alice.write_bytes(state.seed_path("alice").read_bytes())
    assert credentials(state, "bob", alice).name == "alice"  # the file wins over a name
    monkeypatch.setenv("SKYPORT_CREDENTIALS", str(alice))
    assert credentials(state).name == "alice"
    monkeypatch.delenv("SKYPORT_CREDENTIALS")
    assert credentials(state, "bob") == Credentials("bob", state.seed_path("bob"))
    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(new_user_seed())
    with pytest.raises(ClientError, match="not a user"):
        credentials(state, path=stranger)
    junk = tmp_path / "junk.nk"
    junk.write_text("not a seed")
    with pytest.raises(ClientError, match="no nkey user seed"):
        credentials(state, path=junk)
