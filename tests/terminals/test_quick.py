"""bus.quick against a real nats-server and a core-signed responder."""

from __future__ import annotations

import asyncio
import time

import pytest

from bus import quick
from bus.connection import Bus
from bus.deployment import StateDir
from schemas import subjects
from schemas.commands import JobPage
from terminals.client import requests
from tests.terminals.fakecore import FakeCore, summary


def ask(state: StateDir, url: str, name: str = "alice", timeout: float = 5.0) -> object:
    query = requests.list_jobs()
    signer, roster = state.load_signer(name), state.load_roster()
    return quick.request(url, signer, roster, subjects.query_subject(query), query, timeout)


async def test_reply_of_core_is_verified_and_decoded(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    await FakeCore([summary(n) for n in range(1000)]).serve(core_bus)
    reply = await asyncio.to_thread(ask, state, nats_url)
    assert isinstance(reply, JobPage)
    assert len(reply.jobs) == 1000 and reply.jobs[-1].job_id == "999"


async def test_nobody_serving_is_a_timeout_error_at_once(state: StateDir, nats_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(quick.QuickTimeoutError, match="nobody serves"):
        await asyncio.to_thread(ask, state, nats_url)
    assert time.monotonic() - started < 2


async def test_reply_not_signed_by_core_is_refused(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    # core's connection (only core may serve the subject) with bob's key signing the replies
    as_bob = Bus(core_bus.nc, state.load_signer("bob"), state.load_roster(), "bob-as-core")
    await FakeCore([]).serve(as_bob)
    with pytest.raises(quick.QuickError, match="refused"):
        await asyncio.to_thread(ask, state, nats_url)


def test_unreachable_server_is_a_connect_error(state: StateDir) -> None:
    with pytest.raises(quick.QuickConnectError):
        ask(state, "nats://127.0.0.1:1", timeout=1)


async def test_one_connection_serves_many_requests(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    await FakeCore([summary(1)]).serve(core_bus)

    def many() -> int:
        signer, roster = state.load_signer("alice"), state.load_roster()
        with quick.QuickRequester(nats_url, signer, roster, 5) as q:
            for _ in range(50):
                query = requests.list_jobs()
                assert isinstance(q.request(subjects.query_subject(query), query), JobPage)
        return 50

    assert await asyncio.to_thread(many) == 50
