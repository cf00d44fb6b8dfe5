"""SIGKILL core, the scheduler or the local gate while 50 jobs are in flight, restart it, and
check that every job reaches a terminal state exactly once and no event is lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter

import msgspec
import pytest

from bus.connection import Bus, Delivery
from schemas import subjects
from schemas.commands import Accepted, ListJobs, SubmitJob
from schemas.events import AnyJobEvent, JobCancelled, JobCompleted, JobFailed
from schemas.ids import JobId, new_message_id
from schemas.jobs import TERMINAL_STATES, JobSpec, JobState, JobSummary
from tests.conftest import connect_as
from tests.system.harness import Harness

pytestmark = pytest.mark.system
JOBS = 50
TERMINAL_EVENTS = (JobCompleted, JobFailed, JobCancelled)


async def _alice(h: Harness) -> Bus:
    return await connect_as(h.state, h.url, "alice")


async def _wait_for_core(bus: Bus, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await bus.request(subjects.query_subject(_list()), _list(), timeout=1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _list() -> ListJobs:
    return ListJobs(id=new_message_id(), at=time.time(), include_finished=True, limit=10_000)


async def _jobs(bus: Bus) -> list[JobSummary]:
    try:
        page = await bus.request(subjects.query_subject(_list()), _list(), timeout=2)
    except Exception:  # core may be down right now: the caller polls again
        return []
    return list(getattr(page, "jobs", ()))


async def _submit_all(bus: Bus) -> list[JobId]:
    async def one(i: int) -> JobId:
        cmd = SubmitJob(
            id=new_message_id(),
            at=time.time(),
            spec=JobSpec(script=f"sleep 0.{i % 5 + 1}; echo job {i}", name=f"crash{i}"),
        )
        reply = await bus.request(subjects.command_subject(cmd), cmd, timeout=30)
        assert isinstance(reply, Accepted) and reply.job_id, reply
        return reply.job_id

    return list(await asyncio.gather(*(one(i) for i in range(JOBS))))


async def _wait_all_terminal(bus: Bus, ids: list[JobId], timeout: float) -> list[JobSummary]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {j.job_id: j for j in await _jobs(bus)}
        if all(i in jobs and jobs[i].state in TERMINAL_STATES for i in ids):
            return [jobs[i] for i in ids]
        await asyncio.sleep(0.2)
    states = Counter(j.state for j in await _jobs(bus))
    raise AssertionError(f"not all jobs finished in {timeout} s: {dict(states)}")


async def _stream_events(h: Harness) -> list[AnyJobEvent]:
    """Every job event in the JetStream stream, verified and decoded (as an admin: only
    admins may read every user's events)."""
    admin = await connect_as(h.state, h.url, "admin")
    got: list[AnyJobEvent] = []
    done = asyncio.Event()

    async def on(delivery: Delivery[AnyJobEvent]) -> None:
        got.append(delivery.incoming.body)
        if delivery.pending == 0:
            done.set()

    try:
        sub = await admin.replay(subjects.ALL_JOB_EVENTS, msgspec.json.Decoder(AnyJobEvent), on)
        await asyncio.wait_for(done.wait(), 30)
        await sub.unsubscribe()
    finally:
        await admin.close()
    return got


def _store_events(h: Harness) -> list[tuple[str, int, str]]:
    with sqlite3.connect(h.state.core_db) as db:
        return [tuple(r) for r in db.execute("SELECT stream_id, version, event_id FROM events")]


async def _check_exactly_once(h: Harness, bus: Bus, ids: list[JobId]) -> None:
    jobs = await _wait_all_terminal(bus, ids, timeout=120)
    assert all(j.state is JobState.COMPLETED for j in jobs), Counter(j.state for j in jobs)
    rows = _store_events(h)
    ids_in_store = [r[2] for r in rows]
    assert len(ids_in_store) == len(set(ids_in_store)), "duplicated event in the store"
    versions: dict[str, list[int]] = {}
    for stream_id, version, _ in rows:
        versions.setdefault(stream_id, []).append(version)
    for stream_id, vs in versions.items():
        assert sorted(vs) == list(range(1, len(vs) + 1)), f"gap in the history of {stream_id}"
    deadline = time.monotonic() + 30
    while True:  # the relay may still be publishing the last events
        published = await _stream_events(h)
        if len(published) >= len(rows) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    counts = Counter(e.event_id for e in published)
    assert max(counts.values()) == 1, "an event was published twice"
    assert set(counts) == set(ids_in_store), "published events differ from the store"
    terminal = Counter(e.job_id for e in published if isinstance(e, TERMINAL_EVENTS))
    assert all(terminal[i] == 1 for i in ids), "a job did not end exactly once"


@pytest.mark.parametrize("victim", ["core", "scheduler", "gate"])
async def test_sigkill_with_50_jobs_in_flight_loses_nothing(harness: Harness, victim: str) -> None:
    harness.start_all()
    bus = await _alice(harness)
    try:
        await _wait_for_core(bus)
        ids = await _submit_all(bus)
        await asyncio.sleep(0.4)  # jobs are now pending, running and finished
        in_flight = Counter(j.state for j in await _jobs(bus))
        assert sum(in_flight[s] for s in in_flight if s not in TERMINAL_STATES) > 0, in_flight
        harness.kill(victim)
        await asyncio.sleep(0.5)
        harness.start(victim)
        await _check_exactly_once(harness, bus, ids)
    finally:
        await bus.close()


async def test_sigkill_of_core_right_after_200_acknowledged_submissions_loses_none(
    harness: Harness,
) -> None:
    harness.start_nats()
    harness.start("core")
    bus = await _alice(harness)
    try:
        await _wait_for_core(bus)
        acked: list[JobId] = []

        async def one(i: int) -> None:
            spec = JobSpec(script="true", name=f"acked{i}")
            cmd = SubmitJob(id=new_message_id(), at=time.time(), spec=spec)
            reply = await bus.request(subjects.command_subject(cmd), cmd, timeout=30)
            assert isinstance(reply, Accepted) and reply.job_id
            acked.append(reply.job_id)

        await asyncio.gather(*(one(i) for i in range(200)))
        harness.kill("core")  # no scheduler or gate: all 200 are pending
        harness.start("core")
        await _wait_for_core(bus)
        listed = {j.job_id for j in await _jobs(bus)}
        assert set(acked) <= listed, f"lost {len(set(acked) - listed)} acknowledged jobs"
        assert len(acked) == len(set(acked)) == 200
    finally:
        await bus.close()
