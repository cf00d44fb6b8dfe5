"""Component tests: core in-process on a real nats-server, driven by signed clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import cast

import msgspec
import pytest
import sqlalchemy as sa
from nats import errors as nats_errors

from bus.connection import Bus, Delivery
from bus.deployment import StateDir
from core.batch import Commit, State, Working, decide_command
from core.job import Actor, Job
from core.service import Work
from core.store import EVENTS, Store
from schemas import subjects
from schemas.commands import (
    MAX_PAGE,
    Accepted,
    AnyReply,
    CancelJob,
    GetJob,
    GetUsage,
    HoldJob,
    JobDetail,
    JobPage,
    ListJobs,
    ListOffers,
    OfferList,
    PlaceJobs,
    Placement,
    PlaceReply,
    RejectCode,
    Rejected,
    ReleaseJob,
    RequeueJob,
    SubmitJob,
    UsageReport,
)
from schemas.events import AnyJobEvent, JobScheduled, JobSubmitted, JobUsageRecorded
from schemas.gate import (
    AnyGateCommand,
    GateCapacity,
    RunEnded,
    RunStarted,
    StartRun,
    StopRun,
)
from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import (
    Allocation,
    Dependency,
    DependencyKind,
    JobSpec,
    JobState,
    NodeAllocation,
    NodeShape,
    RunOutcome,
)
from schemas.roster import Identity
from schemas.wire import MAX_PAYLOAD, Signer, new_user_seed
from tests.core.conftest import RunningCore, eventually, new_id, send, start_core, submit_job

_events = msgspec.json.Decoder(AnyJobEvent)
_commands = msgspec.json.Decoder(AnyGateCommand)


def alloc(*nodes: tuple[str, int]) -> Allocation:
    return Allocation(
        gate=GateName("local"),
        nodes=tuple(
            NodeAllocation(node=n, host="localhost", cpus=c, memory_mb=0) for n, c in nodes
        ),
    )


async def collect_job_events(bus: Bus, owner: str, job_id: str) -> list[AnyJobEvent]:
    got: list[AnyJobEvent] = []

    async def on(d: Delivery[AnyJobEvent]) -> None:
        got.append(d.incoming.body)

    await bus.replay(subjects.job_events_of(owner, job_id), _events, on)
    return got


def event_count(core: RunningCore) -> int:
    return len(core.store.events_after(0, 100_000))


async def test_submit_is_accepted_and_published_on_the_job_stream(
    core: RunningCore, alice: Bus
) -> None:
    reply = await send(alice, submit_job("hello"))
    assert isinstance(reply, Accepted) and reply.job_id == "1"
    seen = await collect_job_events(alice, "alice", "1")

    async def published() -> bool:
        return len(seen) == 1

    await eventually(published)
    (event,) = seen
    assert isinstance(event, JobSubmitted) and event.owner == "alice"
    assert event.event_id == "1-1" and event.detail == "submitted by alice"


async def test_unsigned_forged_and_tampered_commands_change_nothing(
    core: RunningCore, alice: Bus
) -> None:
    cmd = submit_job()
    subject = subjects.command_subject(cmd)
    payload, headers = alice.seal(subject, cmd)
    forger = Signer(new_user_seed())
    attempts = [
        (payload, {}),
        (payload, forger.headers(subject, payload)),
        (payload.replace(b"echo hi", b"rm -rf"), headers),
        (payload, alice.seal(subjects.core_command(subjects.CoreVerb.PLACE), cmd)[1]),
    ]
    for data, hdrs in attempts:  # nobody core can identify: refused, counted, no answer
        with pytest.raises(nats_errors.TimeoutError):
            await alice.nc.request(subject, data, headers=hdrs, timeout=0.5)
    refusals = core.bus.refusals
    assert (refusals["unsigned"], refusals["unknown_signer"], refusals["bad_signature"]) == (
        1,
        1,
        2,
    )
    assert event_count(core) == 0
    assert core.service.state.last_job_id == 0


async def test_a_command_on_the_wrong_verb_is_a_bad_request(core: RunningCore, alice: Bus) -> None:
    cmd = submit_job()
    reply = await alice.request(subjects.core_command(subjects.CoreVerb.CANCEL), cmd)
    assert isinstance(reply, Rejected) and reply.code is RejectCode.BAD_REQUEST
    assert event_count(core) == 0


async def test_a_replayed_command_is_refused_and_appends_nothing(
    core: RunningCore, alice: Bus, bob: Bus
) -> None:
    cmd = submit_job()
    first = await send(alice, cmd)
    assert isinstance(first, Accepted)
    again = await asyncio.gather(*(send(alice, cmd) for _ in range(5)))
    assert all(isinstance(r, Rejected) and r.code is RejectCode.REPLAYED for r in again)
    assert event_count(core) == 1
    other = await send(bob, cmd)  # ids are per sender: bob's own command is new
    assert isinstance(other, Accepted)
    assert event_count(core) == 2


@pytest.mark.parametrize("off_by_s", [-301.0, 301.0, -86400.0, 1e12])
async def test_a_command_stamped_outside_the_replay_window_is_refused(
    core: RunningCore, alice: Bus, off_by_s: float
) -> None:
    cmd = SubmitJob(id=new_id(), at=time.time() + off_by_s, spec=JobSpec(script="true"))
    reply = await send(alice, cmd)
    assert isinstance(reply, Rejected) and reply.code is RejectCode.STALE, reply
    assert event_count(core) == 0
    inside = SubmitJob(id=new_id(), at=time.time() - 250.0, spec=JobSpec(script="true"))
    assert isinstance(await send(alice, inside), Accepted)  # a slow clock within the window


async def test_a_user_cannot_cancel_another_users_job(
    core: RunningCore, alice: Bus, bob: Bus, admin: Bus
) -> None:
    reply = await send(alice, submit_job())
    assert isinstance(reply, Accepted) and reply.job_id is not None
    cancel = CancelJob(id=new_id(), at=time.time(), job_id=reply.job_id)
    refused = await send(bob, cancel)
    assert isinstance(refused, Rejected) and refused.code is RejectCode.NOT_OWNER
    unknown = await send(bob, CancelJob(id=new_id(), at=time.time(), job_id=JobId("99")))
    assert isinstance(unknown, Rejected) and unknown.code is RejectCode.UNKNOWN_JOB
    done = await send(admin, CancelJob(id=new_id(), at=time.time(), job_id=reply.job_id))
    assert isinstance(done, Accepted) and done.detail == "cancelled by admin"
    again = await send(alice, CancelJob(id=new_id(), at=time.time(), job_id=reply.job_id))
    assert isinstance(again, Accepted) and "nothing changed" in again.detail


async def test_hold_release_and_invalid_transitions(core: RunningCore, alice: Bus) -> None:
    reply = await send(alice, submit_job())
    assert isinstance(reply, Accepted) and reply.job_id is not None
    jid = reply.job_id
    release = await send(alice, ReleaseJob(id=new_id(), at=time.time(), job_id=jid))
    assert isinstance(release, Rejected) and release.code is RejectCode.INVALID_STATE
    requeue = await send(alice, RequeueJob(id=new_id(), at=time.time(), job_id=jid))
    assert isinstance(requeue, Rejected) and requeue.code is RejectCode.INVALID_STATE
    assert isinstance(await send(alice, HoldJob(id=new_id(), at=time.time(), job_id=jid)), Accepted)
    detail = await alice.request(
        subjects.core_query(subjects.CoreQueryName.JOB),
        GetJob(id=new_id(), at=time.time(), job_id=jid),
    )
    assert isinstance(detail, JobDetail)
    assert detail.summary.reason == "held"
    assert [t.event for t in detail.history] == ["job_submitted", "job_held"]


async def report(gate: Bus, event: GateCapacity | RunStarted | RunEnded) -> None:
    await gate.js_publish(
        subjects.gate_event(event.gate, str(type(event).__struct_config__.tag)),
        event,
        msg_id=event.event_id,
    )


async def capacity(
    gate: Bus, core: RunningCore, cpus: int = 4, nodes: tuple[NodeShape, ...] = ()
) -> None:
    """Gate ``local`` reports ``nodes`` (default: node0 with ``cpus``); wait until core knows."""
    await report(
        gate,
        GateCapacity(
            event_id=new_id("cap"),
            at=time.time(),
            gate=GateName("local"),
            nodes=nodes or (NodeShape(name="node0", cpus=cpus, memory_mb=1000),),
        ),
    )

    async def known() -> bool:
        return "local" in core.service.state.gates

    await eventually(known)


async def place(
    scheduler: Bus, job_id: JobId, allocation: Allocation, attempt: int = 1
) -> PlaceReply:
    plan = new_id("plan")
    reply = await send(
        scheduler,
        PlaceJobs(
            id=plan,
            at=time.time(),
            plan_id=PlanId(plan),
            placements=(Placement(job_id=job_id, attempt=attempt, allocation=allocation),),
        ),
    )
    assert isinstance(reply, PlaceReply)
    return reply


async def gate_commands(bus: Bus, want: int) -> list[AnyGateCommand]:
    """Take ``want`` commands from the local gate's work queue, as the gate would."""
    got: list[AnyGateCommand] = []
    pull = cast(
        AsyncGenerator[list[Delivery[AnyGateCommand]], None],
        bus.pull(
            subjects.STREAM_GATE_COMMANDS,
            durable=subjects.gate_commands_consumer("local"),  # the one the gate may use
            filter_subject=subjects.gate_commands_of("local"),
            decoder=_commands,
        ),
    )
    async with asyncio.timeout(10), contextlib.aclosing(pull) as batches:
        async for batch in batches:
            for delivery in batch:
                got.append(delivery.incoming.body)
                await delivery.ack()
            if len(got) >= want:
                return got
    return got


async def job_state(core: RunningCore, job_id: str) -> JobState | None:
    job = core.store.snapshot(JobId(job_id))
    return None if job is None else job.state


async def test_gate_events_drive_a_job_to_completed(
    core: RunningCore, alice: Bus, scheduler: Bus, gate: Bus
) -> None:
    reply = await send(alice, submit_job())
    assert isinstance(reply, Accepted) and reply.job_id is not None
    jid = reply.job_id
    early = await place(scheduler, jid, alloc(("node0", 1)))
    assert early.rejected[0].detail == "gate local has not reported capacity"
    await capacity(gate, core)
    placed = await place(scheduler, jid, alloc(("node0", 1)))
    assert placed.accepted == (jid,)
    (start,) = await gate_commands(gate, 1)
    assert isinstance(start, StartRun) and start.id == f"{jid}-1-start" and start.owner == "alice"
    common = {"gate": GateName("local"), "job_id": jid, "attempt": 1}
    await report(gate, RunStarted(event_id=new_id("g"), at=time.time(), **common))  # type: ignore[arg-type]
    await report(
        gate,
        RunEnded(event_id=new_id("g"), at=time.time(), outcome=RunOutcome.COMPLETED, **common),  # type: ignore[arg-type]
    )

    async def completed() -> bool:
        return await job_state(core, jid) is JobState.COMPLETED

    await eventually(completed)
    detail = await alice.request(
        subjects.core_query(subjects.CoreQueryName.JOB),
        GetJob(id=new_id(), at=time.time(), job_id=jid),
    )
    assert isinstance(detail, JobDetail) and detail.allocation == alloc(("node0", 1))
    assert [(t.event, t.state) for t in detail.history] == [
        ("job_submitted", JobState.PENDING),
        ("job_scheduled", JobState.SCHEDULED),
        ("job_started", JobState.RUNNING),
        ("job_usage_recorded", JobState.RUNNING),
        ("job_completed", JobState.COMPLETED),
    ]
    assert jid not in core.service.state.jobs


async def test_placements_never_over_commit_a_node(
    core: RunningCore, alice: Bus, scheduler: Bus, gate: Bus
) -> None:
    await capacity(gate, core, cpus=2)
    ids = []
    for cpus in (2, 1, 1):
        reply = await send(alice, submit_job(cpus_per_task=cpus))
        assert isinstance(reply, Accepted) and reply.job_id is not None
        ids.append(reply.job_id)
    assert (await place(scheduler, ids[0], alloc(("node0", 2)))).accepted == (ids[0],)
    over = await place(scheduler, ids[1], alloc(("node0", 1)))
    assert over.rejected[0].detail == "over-commits node node0"
    unknown = await place(scheduler, ids[2], alloc(("node9", 1)))
    assert unknown.rejected[0].detail == "gate local has no node node9"
    stale = await place(scheduler, ids[2], alloc(("node0", 1)), attempt=2)
    assert stale.rejected[0].code is RejectCode.INVALID_STATE


async def test_cancel_of_a_running_job_stops_it_on_the_gate(
    core: RunningCore, alice: Bus, scheduler: Bus, gate: Bus
) -> None:
    await capacity(gate, core)
    reply = await send(alice, submit_job())
    assert isinstance(reply, Accepted) and reply.job_id is not None
    jid = reply.job_id
    await place(scheduler, jid, alloc(("node0", 1)))
    cancel = await send(alice, CancelJob(id=new_id(), at=time.time(), job_id=jid))
    assert isinstance(cancel, Accepted) and cancel.detail == "cancel requested by alice"
    start, stop = await gate_commands(gate, 2)
    assert isinstance(start, StartRun)
    assert isinstance(stop, StopRun) and stop.id == f"{jid}-1-stop" and stop.reason == "cancel"
    await report(
        gate,
        RunEnded(
            event_id=new_id("g"),
            at=time.time(),
            gate=GateName("local"),
            job_id=jid,
            attempt=1,
            outcome=RunOutcome.CANCELLED,
        ),
    )

    async def cancelled() -> bool:
        return await job_state(core, jid) is JobState.CANCELLED

    await eventually(cancelled)


async def test_job_listing_filters_and_pages(
    core: RunningCore, alice: Bus, bob: Bus, admin: Bus
) -> None:
    for bus, name in [(alice, "a"), (alice, "b"), (bob, "a"), (alice, "a")]:
        assert isinstance(await send(bus, submit_job(name)), Accepted)
    await send(alice, CancelJob(id=new_id(), at=time.time(), job_id=JobId("2")))
    jobs = subjects.core_query(subjects.CoreQueryName.JOBS)

    async def ids(bus: Bus, **kw: object) -> list[str]:
        page = await bus.request(jobs, ListJobs(id=new_id(), at=time.time(), **kw))  # type: ignore[arg-type]
        assert isinstance(page, JobPage), page
        return [j.job_id for j in page.jobs]

    assert await ids(alice) == ["1", "4"]
    assert await ids(alice, include_finished=True) == ["1", "2", "4"]
    assert await ids(admin) == ["1", "3", "4"]
    assert await ids(admin, name="a", user="bob") == ["3"]
    assert await ids(admin, states=(JobState.CANCELLED,)) == ["2"]
    page = await admin.request(jobs, ListJobs(id=new_id(), at=time.time(), limit=2))
    assert isinstance(page, JobPage) and page.next_after == "3"
    assert await ids(admin, after=page.next_after) == ["4"]
    refused = await bob.request(jobs, ListJobs(id=new_id(), at=time.time(), user=UserName("alice")))
    assert isinstance(refused, Rejected) and refused.code is RejectCode.NOT_OWNER
    other = await bob.request(
        subjects.core_query(subjects.CoreQueryName.JOB),
        GetJob(id=new_id(), at=time.time(), job_id=JobId("1")),
    )
    assert isinstance(other, Rejected) and other.code is RejectCode.NOT_OWNER


async def test_relay_republish_after_a_restart_is_deduplicated(
    state: StateDir, nats_url: str, core_bus: Bus, db_url: str, alice: Bus
) -> None:
    core = await start_core(state, nats_url, db_url)
    try:
        for _ in range(3):
            assert isinstance(await send(alice, submit_job()), Accepted)

        async def relayed() -> bool:
            return core.service.relay.published == 3

        await eventually(relayed)
    finally:
        await core.close()
    # As if core crashed after publishing but before moving its cursor.
    core.store.set_cursor("events", 0)
    restarted = await start_core(state, nats_url, db_url)
    try:
        assert restarted.service.state.last_job_id == 3
        assert len(restarted.service.state.jobs) == 3

        async def republished() -> bool:
            return restarted.service.relay.published == 3

        await eventually(republished)
        info = await core_bus.js.stream_info(subjects.STREAM_JOB_EVENTS)
        assert info.state.messages == 3
        reply = await send(alice, submit_job())
        assert isinstance(reply, Accepted) and reply.job_id == "4"
    finally:
        await restarted.close()


async def test_concurrent_submissions_are_group_committed_with_distinct_ids(
    core: RunningCore, alice: Bus
) -> None:
    n = 1000
    replies = await asyncio.gather(*(send(alice, submit_job(f"j{i}")) for i in range(n)))
    assert all(isinstance(r, Accepted) for r in replies)
    assert len({r.job_id for r in replies if isinstance(r, Accepted)}) == n
    assert event_count(core) == n
    assert core.service.batches < n  # several commands shared a transaction


def _alice(state: StateDir) -> Identity:
    return next(i for i in state.load_roster().identities() if i.name == "alice")


async def _run(core: RunningCore, works: list[Work]) -> list[AnyReply | None]:
    for work in works:  # queued without a yield: the writer takes them as one batch
        core.service.queue.put_nowait(work)
    return [await asyncio.wait_for(w.done, 10) for w in works]


def _job_ids(replies: list[AnyReply | None]) -> list[str | None]:
    return [r.job_id if isinstance(r, Accepted) else None for r in replies]


async def test_after_a_conflicting_commit_core_reloads_and_goes_on(
    core: RunningCore, state: StateDir, alice: Bus, db_url: str
) -> None:
    assert isinstance(await send(alice, submit_job()), Accepted)
    other = Store(db_url)  # another writer appends job 2 behind core's back
    try:
        work = Working(State(last_job_id=1), {}, time.time())
        decide_command(work, Actor(name=UserName("bob")), submit_job())
        other.commit(work.commit)
    finally:
        other.close()
    alice_id = _alice(state)
    replies = await _run(
        core, [Work(f"cmd:user.alice:w{i}", alice_id, submit_job()) for i in range(3)]
    )
    assert _job_ids(replies) == ["3", "4", "5"]
    assert core.service.state.last_job_id == 5
    assert set(core.service.state.jobs) == {"1", "2", "3", "4", "5"}
    later = await send(alice, submit_job())
    assert isinstance(later, Accepted) and later.job_id == "6"
    with core.store.engine.connect() as conn:
        ids = conn.execute(sa.select(EVENTS.c.event_id).order_by(EVENTS.c.position)).scalars()
        assert list(ids) == ["1-1", "2-1", "3-1", "4-1", "5-1", "6-1"]


@pytest.mark.parametrize("size", [1, 3])
async def test_a_commit_whose_confirmation_was_lost_is_answered_from_the_inbox(
    core: RunningCore, state: StateDir, alice: Bus, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    real = core.store.commit

    def commit_then_lose_the_answer(c: Commit) -> None:
        monkeypatch.setattr(core.store, "commit", real)
        real(c)
        raise sa.exc.OperationalError("COMMIT", None, ConnectionError("connection lost"))

    monkeypatch.setattr(core.store, "commit", commit_then_lose_the_answer)
    alice_id = _alice(state)
    replies = await _run(
        core, [Work(f"cmd:user.alice:lost{i}", alice_id, submit_job()) for i in range(size)]
    )
    want = [str(i) for i in range(1, size + 1)]
    assert _job_ids(replies) == want
    assert sorted(core.service.state.jobs) == want
    later = await send(alice, submit_job())
    assert isinstance(later, Accepted) and later.job_id == str(size + 1)
    assert event_count(core) == size + 1


async def test_hostile_job_ids_are_unknown_jobs_and_do_not_split_the_batch(
    core: RunningCore, state: StateDir
) -> None:
    alice_id = _alice(state)
    works = [Work(f"cmd:user.alice:h{i}", alice_id, submit_job()) for i in range(50)]
    for i, bad in enumerate(["²", "9" * 30, "01", "-1", "1e3"]):
        cancel = CancelJob(id=new_id(), at=time.time(), job_id=JobId(bad))
        works.insert(10 * i, Work(f"cmd:user.alice:bad{i}", alice_id, cancel))
    before = core.service.batches
    replies = await _run(core, works)
    assert core.service.batches == before + 1  # one transaction, not one per item
    submits = [r for r, w in zip(replies, works, strict=True) if isinstance(w.body, SubmitJob)]
    assert _job_ids(submits) == [str(i) for i in range(1, 51)]
    refused = [r for r, w in zip(replies, works, strict=True) if isinstance(w.body, CancelJob)]
    assert all(isinstance(r, Rejected) and r.code is RejectCode.UNKNOWN_JOB for r in refused)


async def test_queries_with_hostile_job_ids_are_refused_without_an_exception(
    core: RunningCore,
) -> None:
    queries = core.service.queries  # core's own edge, whatever the schema lets through
    for bad in ["²", "9" * 30, "x", "01"]:
        page = await queries.list_jobs(ListJobs(id=new_id(), at=0.0, after=JobId(bad)), None)
        assert isinstance(page, Rejected) and page.code is RejectCode.BAD_REQUEST, page
        detail = await queries.get_job(GetJob(id=new_id(), at=0.0, job_id=JobId(bad)), None)
        assert isinstance(detail, Rejected) and detail.code is RejectCode.UNKNOWN_JOB, detail


async def test_a_listing_of_long_summaries_is_split_into_pages_that_can_be_sent(
    core: RunningCore, admin: Bus
) -> None:
    n = MAX_PAGE
    work = Working(State(), {}, time.time())
    for i in range(n):  # names of 255 two-byte characters: ~700 bytes a summary, 7 MB in all
        decide_command(work, Actor(name=UserName("alice")), submit_job(f"{i:05}" + "é" * 250))
    core.store.commit(work.commit)
    jobs = subjects.core_query(subjects.CoreQueryName.JOBS)
    seen: list[str] = []
    pages = 0
    after: JobId | None = None
    while True:
        query = ListJobs(id=new_id(), at=time.time(), limit=MAX_PAGE, after=after)
        page = await admin.request(jobs, query, timeout=10)
        assert isinstance(page, JobPage), page
        assert len(msgspec.json.encode(page)) < MAX_PAYLOAD // 2 + 64 * 1024
        pages += 1
        seen.extend(j.job_id for j in page.jobs)
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == [str(i) for i in range(1, n + 1)]
    assert pages > 2


def _raw_submit(spec: dict[str, object]) -> bytes:
    return msgspec.json.encode(
        {"type": "submit_job", "id": new_id("raw"), "at": time.time(), "spec": spec}
    )


async def test_bad_submissions_get_a_clear_error_and_change_nothing(
    core: RunningCore, alice: Bus
) -> None:
    subject = subjects.core_command(subjects.CoreVerb.SUBMIT)
    bad_specs: list[dict[str, object]] = [
        {"script": "x" * (600 * 1024)},
        {"script": "true", "nodes": -1},
        {"script": "true", "nodes": 100_000},
        {"script": "true", "cpus_per_task": 0},
        {"script": "true", "time_limit_s": 10**9},
        {"script": "true", "memory_mb_per_node": -5},
        {"script": "true", "outputs": ["../escape"]},
        {"script": "true", "outputs": ["/etc/passwd"]},
        {"script": "true", "env": {"SKYPORT_JOB_ID": "1"}},
        {"script": "true", "unknown_option": 1},
        {
            "script": "true",
            "inputs": [{"name": "../../x", "obj": "o", "size": 1, "sha256": "0" * 64}],
        },
    ]
    for spec in bad_specs:
        payload = _raw_submit(spec)
        raw = await alice.nc.request(
            subject, payload, headers=alice.signer.headers(subject, payload), timeout=5
        )
        reply = msgspec.json.decode(raw.data)
        assert reply["type"] == "rejected" and reply["code"] == RejectCode.BAD_REQUEST, spec
        assert reply["detail"], spec
    unknown = await send(alice, CancelJob(id=new_id(), at=time.time(), job_id=JobId("424242")))
    assert isinstance(unknown, Rejected) and unknown.code is RejectCode.UNKNOWN_JOB
    with pytest.raises(nats_errors.MaxPayloadError):  # over the server's limit: never sent
        await alice.nc.publish(subject, b"x" * (5 * 1024 * 1024))
    assert event_count(core) == 0
    assert core.service.state.last_job_id == 0


async def test_offers_show_every_gates_nodes_prices_and_what_is_held(
    core: RunningCore, alice: Bus, scheduler: Bus, gate: Bus
) -> None:
    priced = (
        NodeShape(name="node0", cpus=4, memory_mb=1000, price_per_hour=1.5),
        NodeShape(name="node1", cpus=2, memory_mb=500, gpus=1, price_per_hour=3.0),
    )
    await capacity(gate, core, nodes=priced)
    reply = await send(alice, submit_job(cpus_per_task=3))
    assert isinstance(reply, Accepted) and reply.job_id is not None
    await place(scheduler, reply.job_id, alloc(("node0", 3)))
    query = ListOffers(id=new_id("q"), at=time.time())
    offers = await alice.request(subjects.query_subject(query), query)  # any user may ask
    assert isinstance(offers, OfferList)
    (local,) = offers.gates
    assert local.gate == "local" and local.live
    used = {(o.node.name, o.node.price_per_hour, o.used_cpus) for o in local.nodes}
    assert used == {("node0", 1.5, 3), ("node1", 3.0, 0)}


async def test_users_see_their_own_usage_and_admins_everyones(
    core: RunningCore, alice: Bus, bob: Bus, admin: Bus
) -> None:
    for n, owner, account in ((1, "alice", "physics"), (2, "bob", "bob")):
        job = Job(job_id=JobId(str(n)), owner=UserName(owner), spec=JobSpec(script="x"), version=4)
        usage = JobUsageRecorded(
            event_id=MessageId(f"{n}-4"),
            job_id=job.job_id,
            at=100.0,
            attempt=1,
            owner=job.owner,
            account=account,
            gate=GateName("local"),
            started_at=90.0,
            ended_at=100.0,
            nodes=1,
            node_hours=0.5,
            cost=1.25,
        )
        core.store.commit(Commit(events=[(job, usage)]))

    async def ask(bus: Bus, user: str | None = None) -> AnyReply:
        query = GetUsage(id=new_id("q"), at=time.time(), user=UserName(user) if user else None)
        return await bus.request(subjects.query_subject(query), query)

    mine = await ask(alice)
    assert isinstance(mine, UsageReport)
    assert [(t.owner, t.account, t.cost) for t in mine.totals] == [("alice", "physics", 1.25)]
    refused = await ask(alice, "bob")
    assert isinstance(refused, Rejected) and refused.code is RejectCode.NOT_OWNER
    everyone = await ask(admin)
    assert isinstance(everyone, UsageReport) and {t.owner for t in everyone.totals} == {
        "alice",
        "bob",
    }
    just_bob = await ask(admin, "bob")
    assert isinstance(just_bob, UsageReport) and [t.owner for t in just_bob.totals] == ["bob"]


async def test_a_dependency_must_name_an_existing_job_of_the_submitters(
    core: RunningCore, alice: Bus, bob: Bus, admin: Bus
) -> None:
    first = await send(alice, submit_job())
    assert isinstance(first, Accepted) and first.job_id is not None

    def on(job_id: str) -> SubmitJob:
        dep = Dependency(kind=DependencyKind.AFTEROK, job_id=JobId(job_id))
        return SubmitJob(id=new_id(), at=time.time(), spec=JobSpec(script="x", dependencies=(dep,)))

    ok = await send(alice, on(first.job_id))
    assert isinstance(ok, Accepted)
    unknown = await send(alice, on("999"))
    assert isinstance(unknown, Rejected) and unknown.code is RejectCode.UNKNOWN_JOB
    not_hers = await send(bob, on(first.job_id))
    assert isinstance(not_hers, Rejected) and not_hers.code is RejectCode.NOT_OWNER
    assert isinstance(await send(admin, on(first.job_id)), Accepted)


async def test_a_placement_is_priced_by_the_part_of_each_node_it_takes(
    core: RunningCore, alice: Bus, scheduler: Bus, gate: Bus
) -> None:
    node = NodeShape(name="node0", cpus=8, memory_mb=1000, price_per_hour=8.0)
    await capacity(gate, core, nodes=(node,))
    ids = []
    for _ in range(2):  # two one-cpu jobs share the node: each pays an eighth of it
        reply = await send(alice, submit_job())
        assert isinstance(reply, Accepted) and reply.job_id is not None
        assert (await place(scheduler, reply.job_id, alloc(("node0", 1)))).accepted
        ids.append(reply.job_id)
    for job_id in ids:
        events = core.store.job_events(job_id)
        (placed,) = [e for e in events if isinstance(e, JobScheduled)]
        assert (placed.price_per_hour, placed.node_share) == (1.0, 0.125)
