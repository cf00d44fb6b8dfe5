"""The zero-trust refusals against one real deployment: nats-server with the configuration
Sky Port generates, core, the scheduler and the local gate as their own processes.

Each test makes one attempt that must be refused (by the server, or by core where subject
permissions cannot say it) and checks that the event store is exactly as before. Plaintext to
a TLS-only server is in tests/bus/test_tls.py and tests/terminals/test_init.py; the
deployment running on TLS is the last test here."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest

from bus import tls
from bus.connection import Bus, Delivery
from schemas import subjects
from schemas.commands import (
    Accepted,
    AnyReply,
    CancelJob,
    GetJob,
    JobPage,
    ListJobs,
    PlaceJobs,
    Rejected,
    ReportWaiting,
    SubmitJob,
    WaitingNote,
)
from schemas.events import AnyJobEvent
from schemas.ids import JobId, PlanId, new_message_id
from schemas.jobs import JobSpec, JobState, PendingReason
from schemas.wire import Signer, new_user_seed
from terminals.client import Client
from terminals.client.errors import ClientError
from tests.conftest import connect_as
from tests.rawproto import handshake, pub, sub
from tests.system.harness import Harness, submit_when_ready

pytestmark = pytest.mark.system
CREATE = "$JS.API.CONSUMER.CREATE"
_reply_decoder = msgspec.json.Decoder(AnyReply)


class Deployment:
    """The running deployment, with one job of alice's still running (a long sleep)."""

    def __init__(self, h: Harness, running_job: JobId) -> None:
        self.h = h
        self.alices_job = running_job

    def store(self) -> list[tuple[object, ...]]:
        """Every event row of core's store, in order: what must not change."""
        with sqlite3.connect(self.h.state.core_db) as db:
            return db.execute(
                "SELECT position, event_id, stream_id, version, type FROM events ORDER BY 1"
            ).fetchall()


async def _start_a_long_job(h: Harness) -> JobId:
    alice = await connect_as(h.state, h.url, "alice")
    try:
        reply = await submit_when_ready(alice, JobSpec(script="sleep 120\n"))
        assert reply.job_id is not None
        async with asyncio.timeout(30):
            while await _state_of(alice, reply.job_id) is not JobState.RUNNING:
                await asyncio.sleep(0.1)
        return reply.job_id
    finally:
        await alice.close()


async def _state_of(bus: Bus, job_id: JobId) -> JobState | None:
    query = ListJobs(id=new_message_id(), at=time.time())
    page = await bus.request(subjects.query_subject(query), query, timeout=5)
    assert isinstance(page, JobPage)
    return next((j.state for j in page.jobs if j.job_id == job_id), None)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    h = Harness.create(tmp_path_factory.mktemp("zero-trust") / "state")
    h.start_all()
    try:
        yield Deployment(h, asyncio.run(_start_a_long_job(h)))
    finally:
        h.stop()


async def _settled(d: Deployment, before: list[tuple[object, ...]]) -> None:
    """The store is as ``before``, and still is a moment later (a refused message that did
    reach core would have been handled by then)."""
    assert d.store() == before
    await asyncio.sleep(0.5)
    assert d.store() == before


async def _ask(bus: Bus, msg: SubmitJob | CancelJob | GetJob) -> AnyReply:
    subject = (
        subjects.query_subject(msg) if isinstance(msg, GetJob) else subjects.command_subject(msg)
    )
    return await bus.request(subject, msg, timeout=5)


# -- refused by the server ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, then, refusal",
    [
        (None, b"", "Authorization Violation"),  # a connection without credentials
        ("stranger", b"", "Authorization Violation"),  # a key not on the roster
        ("local", pub(subjects.job_event("alice", "1", "job_completed")), "Permissions"),
        ("local", sub(subjects.gate_commands_of("other")), "Permissions"),
        ("bob", sub(subjects.job_events_of("alice")), "Permissions"),
        ("bob", sub(subjects.logs_of("alice", "1")), "Permissions"),
        (
            "bob",
            pub(f"{CREATE}.{subjects.STREAM_JOB_EVENTS}.x.{subjects.job_events_of('alice')}"),
            "Permissions",
        ),
        (
            "bob",
            pub(f"{CREATE}.{subjects.STREAM_LOGS}.x.{subjects.logs_of('alice', '1')}"),
            "Permissions",
        ),
        ("bob", pub(f"{CREATE}.{subjects.STREAM_LOGS}"), "Permissions"),  # no filter at all
        ("bob", pub(f"$O.{subjects.files_bucket('alice')}.M.eA"), "Permissions"),
        ("scheduler", pub(subjects.job_event("alice", "1", "job_completed")), "Permissions"),
    ],
    ids=[
        "no-credentials",
        "unknown-key",
        "gate-publishes-a-core-event",
        "gate-reads-another-gates-commands",
        "user-subscribes-to-another-users-events",
        "user-subscribes-to-another-users-logs",
        "user-consumer-on-another-users-events",
        "user-consumer-on-another-users-logs",
        "user-consumer-without-filter",
        "user-writes-another-users-files",
        "scheduler-writes-a-job-event",
    ],
)
async def test_the_server_refuses_and_the_store_does_not_change(
    deployment: Deployment, who: str | None, then: bytes, refusal: str
) -> None:
    d = deployment
    before = d.store()
    signer = None
    if who == "stranger":
        signer = Signer(new_user_seed())
    elif who is not None:
        signer = d.h.state.load_signer(who)
    answer = await asyncio.to_thread(handshake, d.h.url, signer, then)
    assert answer.startswith("-ERR") and refusal in answer, answer
    await _settled(d, before)


async def test_a_user_cannot_replay_another_users_events_or_logs(deployment: Deployment) -> None:
    d = deployment
    before = d.store()
    bob = await connect_as(d.h.state, d.h.url, "bob")
    got: list[object] = []

    async def on(delivery: Delivery[AnyJobEvent]) -> None:
        got.append(delivery.incoming.body)

    try:
        with pytest.raises(nats.errors.TimeoutError):  # the server drops the request
            await bob.replay(subjects.job_events_of("alice"), msgspec.json.Decoder(AnyJobEvent), on)
        async with await Client.connect(d.h.state.root, "bob", d.h.url) as client:
            with pytest.raises(ClientError, match="not an admin"):
                async for _ in client.events(owner="alice"):
                    pass
            with pytest.raises(ClientError, match="not an admin"):
                async for _ in client.logs(d.alices_job, owner="alice"):
                    pass
    finally:
        await bob.close()
    assert got == []
    await _settled(d, before)


async def test_an_admin_reads_a_users_job_events(deployment: Deployment) -> None:
    d = deployment
    async with await Client.connect(d.h.state.root, "admin", d.h.url) as admin:
        seen = [e async for e in admin.events(job_id=d.alices_job)]  # its owner looked up
    assert [type(e).__name__ for e in seen[:3]] == ["JobSubmitted", "JobScheduled", "JobStarted"]
    assert {e.job_id for e in seen} == {d.alices_job}


# -- refused by core -------------------------------------------------------------------------


async def test_a_command_signed_by_a_role_that_may_not_send_it_changes_nothing(
    deployment: Deployment,
) -> None:
    """Alice's signature on a placement, smuggled through the scheduler's connection (the only
    one the server lets publish there) with her own inbox to answer: core refuses it for her
    role, and says so."""
    d = deployment
    before = d.store()
    scheduler = await connect_as(d.h.state, d.h.url, "scheduler")
    alice = await connect_as(d.h.state, d.h.url, "alice")
    try:
        place = PlaceJobs(id=new_message_id(), at=time.time(), plan_id=PlanId("p"), placements=())
        note = WaitingNote(job_id=JobId("1"), attempt=1, reason=PendingReason.BUDGET)
        waiting = ReportWaiting(id=new_message_id(), at=time.time(), notes=(note,))
        commands: tuple[PlaceJobs | ReportWaiting, ...] = (place, waiting)
        for n, cmd in enumerate(commands):  # the scheduler's two commands
            subject = subjects.command_subject(cmd)
            inbox = f"{subjects.inbox_of('alice')}.smuggled{n}"
            answers = await alice.nc.subscribe(inbox, max_msgs=1)
            payload, headers = alice.seal(subject, cmd)
            await scheduler.nc.publish(subject, payload, reply=inbox, headers=headers)
            raw = await answers.next_msg(timeout=5)
            reply = alice.open(raw.subject, raw.data, raw.headers, _reply_decoder).body
            assert isinstance(reply, Rejected) and reply.code == "not_allowed", (cmd, reply)
    finally:
        await scheduler.close()
        await alice.close()
    await _settled(d, before)


async def test_a_forged_signature_is_dropped_and_the_genuine_command_is_not_a_replay(
    deployment: Deployment,
) -> None:
    d = deployment
    alice = await connect_as(d.h.state, d.h.url, "alice")
    try:
        before = d.store()
        cmd = CancelJob(id=new_message_id(), at=time.time(), job_id=JobId("999999"))
        payload, headers = alice.seal(subjects.command_subject(cmd), cmd)
        tampered = payload.replace(b"999999", b"999998")  # signature over other bytes
        with pytest.raises(nats.errors.TimeoutError):  # dropped without an answer
            await alice.nc.request(
                subjects.command_subject(cmd), tampered, timeout=1, headers=headers
            )
        await _settled(d, before)
        # had core handled the forgery, the genuine command would now be refused as a replay
        reply = await _ask(alice, cmd)
        assert isinstance(reply, Rejected) and reply.code == "unknown_job", reply
    finally:
        await alice.close()


async def test_a_replayed_command_is_refused(deployment: Deployment) -> None:
    d = deployment
    alice = await connect_as(d.h.state, d.h.url, "alice")
    try:
        cmd = SubmitJob(id=new_message_id(), at=time.time(), spec=JobSpec(script="true\n"))
        first = await _ask(alice, cmd)
        assert isinstance(first, Accepted) and first.job_id is not None
        before = d.store()
        again = await _ask(alice, cmd)
        assert isinstance(again, Rejected) and again.code == "replayed", again
        # the accepted job runs on (its events may be appended); nothing else may change
        others = [r for r in before if r[2] != first.job_id]
        await asyncio.sleep(0.5)
        assert [r for r in d.store() if r[2] != first.job_id] == others
        async with asyncio.timeout(30):  # settled, so that it changes nothing for later tests
            while "job_completed" not in [r[4] for r in d.store() if r[2] == first.job_id]:
                await asyncio.sleep(0.1)
        assert [r[4] for r in d.store() if r[2] == first.job_id].count("job_submitted") == 1
    finally:
        await alice.close()


@pytest.mark.parametrize("skew_s", [-3600.0, 3600.0])
async def test_a_stale_command_is_refused(deployment: Deployment, skew_s: float) -> None:
    d = deployment
    alice = await connect_as(d.h.state, d.h.url, "alice")
    try:
        before = d.store()
        cmd = SubmitJob(id=new_message_id(), at=time.time() + skew_s, spec=JobSpec(script="true"))
        reply = await _ask(alice, cmd)
        assert isinstance(reply, Rejected) and reply.code == "stale", reply
        await _settled(d, before)
    finally:
        await alice.close()


async def test_a_user_cancelling_another_users_job_is_refused(deployment: Deployment) -> None:
    d = deployment
    bob = await connect_as(d.h.state, d.h.url, "bob")
    try:
        before = d.store()
        cancel = CancelJob(id=new_message_id(), at=time.time(), job_id=d.alices_job)
        reply = await _ask(bob, cancel)
        assert isinstance(reply, Rejected) and reply.code == "not_owner", reply
        # nor does bob see it
        peek = await _ask(bob, GetJob(id=new_message_id(), at=time.time(), job_id=d.alices_job))
        assert isinstance(peek, Rejected), peek
        assert await _state_of(bob, d.alices_job) is None
        await _settled(d, before)
    finally:
        await bob.close()
    alice = await connect_as(d.h.state, d.h.url, "alice")
    try:
        assert await _state_of(alice, d.alices_job) is JobState.RUNNING  # untouched
    finally:
        await alice.close()


# -- TLS -------------------------------------------------------------------------------------


async def test_a_deployment_on_tls_runs_a_job_end_to_end(tmp_path: Path) -> None:
    h = Harness.create(tmp_path / "state")
    tls.create(h.state)
    h.start_all()
    try:
        assert h.url.startswith("tls://")
        (tmp_path / "in.txt").write_text("over tls\n")
        async with await Client.connect(h.state.root, "alice", h.url) as c:
            await _submit_retrying(c, JobSpec(script="true\n"))  # core is up (and the buckets)
            inputs = await c.stage_inputs([(tmp_path / "in.txt", "in.txt")])
            spec = JobSpec(script="cat in.txt > out.txt\n", inputs=inputs, outputs=("out.txt",))
            job_id = await c.submit(spec)
            detail = await c.wait(job_id)
            assert detail.summary.state is JobState.COMPLETED, detail
            (out,) = await c.fetch(job_id, tmp_path / "results")
        assert out.read_text() == "over tls\n"
    finally:
        h.stop()


async def _submit_retrying(client: Client, spec: JobSpec, timeout: float = 30.0) -> JobId:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.submit(spec)
        except ClientError:  # core still starting
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
