"""The scheduler service over a real nats-server.

The test publishes signed job events (as core) and a heartbeat (as the local gate), runs the
service in-process, and answers its PlaceJobs with a small core-signed responder: a test
double of the peer over the real bus, which also publishes JobScheduled like core would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from bus.connection import Bus, Incoming
from bus.deployment import StateDir
from scheduler.advice import Status
from scheduler.service import RateLimit, SchedulerService
from scheduler.settings import Settings
from schemas import subjects
from schemas.commands import PlaceJobs, PlaceRejection, PlaceReply, RejectCode
from schemas.events import AnyJobEvent, JobHeld, JobReleased
from schemas.ids import JobId, MessageId, UserName
from schemas.subjects import CoreVerb
from tests.conftest import connect_as
from tests.scheduler.factories import capacity, event_id, node, scheduled, submitted

PLACE = subjects.core_command(CoreVerb.PLACE)
FAST = Settings(in_flight_s=0.5, backoff_s=0.25, request_timeout_s=0.3)


def _tag(event: AnyJobEvent) -> str:
    return str(type(event).__struct_config__.tag)


async def publish(core: Bus, *events: AnyJobEvent, owner: str = "alice") -> None:
    for event in events:
        subject = subjects.job_event(owner, event.job_id, _tag(event))
        await core.js_publish(subject, event, msg_id=event.event_id)


async def heartbeat(state: StateDir, url: str, *names: str) -> None:
    gate = await connect_as(state, url, "local")
    try:
        beat = capacity("local", *(node(n, cpus=4) for n in names), at=time.time())
        await gate.js_publish(
            subjects.gate_event("local", "gate_capacity"), beat, msg_id=beat.event_id
        )
    finally:
        await gate.close()


@dataclass
class FakeCore:
    """Answers PlaceJobs: accepts (and publishes JobScheduled) or rejects every placement."""

    bus: Bus
    reject: bool = False
    delay_s: float = 0.0
    silent_first: bool = False
    plans: asyncio.Queue[tuple[float, PlaceJobs]] = field(default_factory=asyncio.Queue)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    subscription: Any = None

    async def handle(self, incoming: Incoming[PlaceJobs]) -> msgspec.Struct:
        self.idle.clear()
        try:
            return await self._answer(incoming)
        finally:
            self.idle.set()

    async def _answer(self, incoming: Incoming[PlaceJobs]) -> msgspec.Struct:
        cmd = incoming.body
        assert incoming.sender.name == "scheduler"
        self.plans.put_nowait((time.perf_counter(), cmd))
        if self.silent_first:  # a lost request: answered too late, and nothing recorded
            self.silent_first = False
            await asyncio.sleep(self.delay_s)
            return PlaceReply(to=cmd.id)
        if self.reject:
            rejected = tuple(
                PlaceRejection(job_id=p.job_id, code=RejectCode.INVALID_STATE, detail="busy")
                for p in cmd.placements
            )
            return PlaceReply(to=cmd.id, rejected=rejected)
        await publish(self.bus, *(scheduled(p) for p in cmd.placements))
        return PlaceReply(to=cmd.id, accepted=tuple(p.job_id for p in cmd.placements))

    async def next_plan(self, timeout: float = 3.0) -> PlaceJobs:
        return (await asyncio.wait_for(self.plans.get(), timeout))[1]

    async def serve(self) -> None:
        self.idle.set()
        self.subscription = await self.bus.serve(
            PLACE, subjects.CORE_QUEUE_GROUP, msgspec.json.Decoder(PlaceJobs), self.handle
        )

    async def stop(self) -> None:
        """Let a running answer finish, then stop answering (an answer cut short mid-publish
        would keep the core bus from draining)."""
        await asyncio.wait_for(self.idle.wait(), 5.0)
        await self.subscription.unsubscribe()


@pytest.fixture
async def core(core_bus: Bus) -> AsyncIterator[FakeCore]:
    fake = FakeCore(core_bus)
    await fake.serve()
    try:
        yield fake
    finally:
        await fake.stop()


Start = Callable[[Settings], Awaitable[SchedulerService]]


@pytest.fixture
async def start(state: StateDir, nats_url: str, core_bus: Bus) -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings) -> SchedulerService:
            bus = await connect_as(state, nats_url, "scheduler")
            stack.push_async_callback(bus.close)
            service = SchedulerService(bus, settings)
            task = asyncio.create_task(service.run())

            async def stop() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            stack.push_async_callback(stop)
            await asyncio.wait_for(service.ready.wait(), 5.0)
            return service

        yield start


async def test_submitted_job_is_placed_once_and_quickly(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    await heartbeat(state, nats_url, "n1", "n2")
    service = await start(Settings())
    await asyncio.sleep(0.1)  # let the heartbeat arrive: only jobs are timed
    sent = time.perf_counter()
    await publish(core_bus, submitted("1", nodes=2, cpus_per_task=3))
    received, plan = await asyncio.wait_for(core.plans.get(), 3.0)
    assert received - sent < 0.5, f"placement took {received - sent:.3f} s"
    [placement] = plan.placements
    assert str(plan.plan_id) == str(plan.id) and placement.job_id == "1" and placement.attempt == 1
    assert sorted(n.node for n in placement.allocation.nodes) == ["n1", "n2"]
    await asyncio.sleep(1.3)  # at least one periodic pass after JobScheduled
    assert core.plans.empty()
    assert JobId("1") in service.view.active


async def test_restarted_scheduler_does_not_place_a_scheduled_job_again(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    await heartbeat(state, nats_url, "n1")
    await publish(core_bus, submitted("1", cpus_per_task=2))
    first = await start(Settings())
    await core.next_plan()
    await asyncio.sleep(0.2)  # JobScheduled is in the stream
    await publish(core_bus, submitted("2", cpus_per_task=2))
    assert [p.job_id for p in (await core.next_plan()).placements] == ["2"]
    await asyncio.sleep(0.2)
    assert first.view.active.keys() == {"1", "2"}
    await publish(core_bus, submitted("3", cpus_per_task=1))  # no room left on n1
    second = await start(Settings())
    assert second.view.active.keys() == {"1", "2"} and second.view.pending.keys() == {"3"}
    await asyncio.sleep(0.5)
    assert core.plans.empty()


async def test_rejected_placement_backs_off_instead_of_looping(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    core.reject = True
    await heartbeat(state, nats_url, "n1")
    await publish(core_bus, submitted("1"))
    await start(FAST)
    await asyncio.sleep(1.6)  # back-offs 0.25, 0.5, 1.0 s
    tries = core.plans.qsize()
    assert 2 <= tries <= 4, tries


async def test_unanswered_placement_is_retried_under_a_new_plan_id(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    core.silent_first, core.delay_s = True, 0.3  # longer than the request timeout
    await heartbeat(state, nats_url, "n1")
    await publish(core_bus, submitted("1", cpus_per_task=4))
    service = await start(Settings(in_flight_s=0.6, request_timeout_s=0.2))
    sent_first, first = await asyncio.wait_for(core.plans.get(), 3.0)
    sent_second, second = await asyncio.wait_for(core.plans.get(), 3.0)
    assert second.plan_id != first.plan_id
    assert [p.job_id for p in second.placements] == ["1"]
    assert sent_second - sent_first >= 0.5  # held in flight, not retried at once
    await asyncio.sleep(0.1)
    assert JobId("1") in service.view.active


async def test_held_job_waits_for_its_release(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    await heartbeat(state, nats_url, "n1")
    by = UserName("alice")
    await publish(
        core_bus, submitted("1"), JobHeld(event_id=event_id(), job_id=JobId("1"), at=0, by=by)
    )
    await start(Settings())
    await asyncio.sleep(0.4)
    assert core.plans.empty()
    await publish(core_bus, JobReleased(event_id=event_id(), job_id=JobId("1"), at=0, by=by))
    assert [p.job_id for p in (await core.next_plan()).placements] == ["1"]


async def test_nothing_is_placed_without_a_live_gate(
    core_bus: Bus, core: FakeCore, start: Start
) -> None:
    await publish(core_bus, submitted("1"))
    service = await start(Settings())
    await asyncio.sleep(0.3)
    assert core.plans.empty()
    assert service.view.pending.keys() == {"1"}


def test_message_ids_are_unique() -> None:
    assert event_id() != event_id() and MessageId("x") == "x"


async def test_while_jobs_wait_the_optimiser_plans_them_and_passes_follow_the_plan(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    await heartbeat(state, nats_url, "n1")  # one node: the jobs must take turns
    service = await start(Settings(solve_every_s=0.0, solve_after_s=0.0))
    await asyncio.sleep(0.1)
    limits = {"1": 600, "2": 7200, "3": 3600, "4": 600}  # FIFO runs the longest before short
    for job_id, limit in limits.items():
        await publish(core_bus, submitted(job_id, cpus_per_task=4, time_limit_s=limit))
    assert [p.job_id for p in (await core.next_plan()).placements] == ["1"]
    async with asyncio.timeout(15):
        while service.solves == 0 or not service.advice.planned:
            await asyncio.sleep(0.05)
    advice = service.advice
    assert advice.status is Status.IMPROVED and advice.gain_pct > 0
    # shortest first: job 4, then 3, then 2 (the solve ran in a thread; the loop kept going)
    order = sorted(advice.planned, key=lambda j: advice.planned[j].start)
    assert order == ["4", "3", "2"]
    async with asyncio.timeout(5):  # the next pass holds job 2 back, as planned
        while not service.waiting[JobId("2")].detail.startswith("held back by the optimiser"):
            await asyncio.sleep(0.05)


def test_dry_runs_are_rate_limited_per_sender() -> None:
    limit = RateLimit(2.0)
    assert [limit.admit("alice", 100.0) for _ in range(3)] == [True, True, False]
    assert limit.admit("bob", 100.0)  # another sender has a bucket of their own
    assert not limit.admit("alice", 100.2) and limit.admit("alice", 100.6)  # refills


async def test_a_queue_that_has_not_waited_long_is_left_to_greedy(
    state: StateDir, nats_url: str, core_bus: Bus, core: FakeCore, start: Start
) -> None:
    await heartbeat(state, nats_url, "n1")
    service = await start(Settings(solve_every_s=0.0, solve_after_s=30.0))
    for job_id in ("1", "2", "3"):
        fresh = submitted(job_id, at=time.time(), cpus_per_task=4, time_limit_s=600)
        await publish(core_bus, fresh)
    await core.next_plan()
    await asyncio.sleep(1.5)  # several passes with jobs waiting, none of them for 30 s
    assert service.waiting and service.solves == 0
