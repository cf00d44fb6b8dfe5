"""The signed bus over a real nats-server: who gets an answer, and which answers count."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from nats.aio.msg import Msg

from bus.connection import Bus, BusError, Incoming, RequestTimeoutError
from bus.deployment import StateDir
from schemas import subjects
from schemas.commands import Accepted, AnyCommand, CancelJob
from schemas.ids import JobId, MessageId, new_message_id
from tests.conftest import connect_as

CANCEL = subjects.core_command(subjects.CoreVerb.CANCEL)


def _cancel() -> CancelJob:
    return CancelJob(id=new_message_id(), at=time.time(), job_id=JobId("1"))


async def _serve(core: Bus, to: str | None = None) -> list[Incoming[AnyCommand]]:
    seen: list[Incoming[AnyCommand]] = []

    async def handler(incoming: Incoming[AnyCommand]) -> Accepted:
        seen.append(incoming)
        return Accepted(to=MessageId(to if to is not None else incoming.body.id))

    await core.serve(CANCEL, "q", msgspec.json.Decoder(AnyCommand), handler)
    return seen


async def test_a_reply_subject_outside_the_inbox_gets_nothing(
    core_bus: Bus, state: StateDir, nats_url: str
) -> None:
    seen = await _serve(core_bus)
    alice = await connect_as(state, nats_url, "alice")
    try:
        payload, headers = alice.seal(CANCEL, _cancel())
        target = subjects.gate_command("local", "start")
        await alice.nc.publish(CANCEL, payload, reply=target, headers=headers)
        await alice.nc.flush()
        await asyncio.sleep(0.3)
        info = await core_bus.js.stream_info(subjects.STREAM_GATE_COMMANDS)
        assert info.state.messages == 0  # no core-signed message on a gate's queue
        assert seen == [] and core_bus.refusals["bad_reply"] == 1
    finally:
        await alice.close()


async def test_a_reply_to_another_identitys_inbox_gets_nothing(
    core_bus: Bus, state: StateDir, nats_url: str
) -> None:
    seen = await _serve(core_bus)
    alice = await connect_as(state, nats_url, "alice")
    bob = await connect_as(state, nats_url, "bob")
    try:
        got: list[Msg] = []

        async def on_reply(msg: Msg) -> None:
            got.append(msg)

        bobs_inbox = f"{subjects.inbox_of('bob')}.x"
        await bob.nc.subscribe(bobs_inbox, cb=on_reply)
        payload, headers = alice.seal(CANCEL, _cancel())
        await alice.nc.publish(CANCEL, payload, reply=bobs_inbox, headers=headers)
        await alice.nc.flush()
        await asyncio.sleep(0.3)
        assert got == [] and seen == [] and core_bus.refusals["bad_reply"] == 1
    finally:
        await alice.close()
        await bob.close()


async def test_unsigned_requests_get_no_answer_and_are_counted(
    core_bus: Bus, state: StateDir, nats_url: str
) -> None:
    seen = await _serve(core_bus)
    alice = await connect_as(state, nats_url, "alice")
    try:
        with pytest.raises(Exception):  # noqa: B017 - nats-py's timeout type varies
            await alice.nc.request(CANCEL, msgspec.json.encode(_cancel()), timeout=0.3)
        assert seen == [] and core_bus.refusals["unsigned"] == 1
    finally:
        await alice.close()


async def test_a_command_signed_by_a_role_that_may_not_send_it_is_refused(
    core_bus: Bus, state: StateDir, nats_url: str
) -> None:
    place = subjects.core_command(subjects.CoreVerb.PLACE)  # the scheduler's alone
    seen: list[Incoming[AnyCommand]] = []

    async def handler(incoming: Incoming[AnyCommand]) -> Accepted:
        seen.append(incoming)
        return Accepted(to=incoming.body.id)

    await core_bus.serve(place, "q", msgspec.json.Decoder(AnyCommand), handler)
    # The server lets only the scheduler publish there; what arrives through its connection
    # signed by alice (a relayed or smuggled message) is refused by the role check.
    scheduler = await connect_as(state, nats_url, "scheduler")
    as_alice = Bus(scheduler.nc, state.load_signer("alice"), state.load_roster(), "smuggler")
    try:
        await as_alice.publish(place, _cancel())
        await scheduler.nc.flush()
        async with asyncio.timeout(5):
            while core_bus.refusals["not_allowed"] < 1:
                await asyncio.sleep(0.02)
        assert seen == []
    finally:
        await scheduler.close()


async def test_a_reply_to_another_request_is_refused(
    core_bus: Bus, state: StateDir, nats_url: str
) -> None:
    await _serve(core_bus, to="someone-elses-id")
    alice = await connect_as(state, nats_url, "alice")
    try:
        with pytest.raises(BusError, match="answers another request"):
            await alice.request(CANCEL, _cancel(), timeout=2)
        assert isinstance(await _no_responder(alice), RequestTimeoutError)
    finally:
        await alice.close()


async def _no_responder(bus: Bus) -> Exception:
    try:
        await bus.request(subjects.core_command(subjects.CoreVerb.HOLD), _cancel(), timeout=0.3)
    except Exception as exc:
        return exc
    raise AssertionError("a request without a responder was answered")
