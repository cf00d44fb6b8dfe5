"""Given/when/then tests of the job aggregate (pure)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.job import (
    Actor,
    Job,
    JobRuleError,
    decide_cancel,
    decide_hold,
    decide_place,
    decide_release,
    decide_requeue,
    decide_run_event,
    decide_submit,
    evolve,
    job_number,
    replay,
)
from schemas.commands import Placement, RejectCode
from schemas.events import (
    AnyJobEvent,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobRequeued,
    JobScheduled,
    JobStopRequested,
    JobUsageRecorded,
)
from schemas.gate import RunEnded, RunEvent, RunStagingIn, RunStagingOut, RunStarted
from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import (
    Allocation,
    FailReason,
    JobSpec,
    JobState,
    NodeAllocation,
    RunOutcome,
)

ALICE = Actor(name=UserName("alice"))
BOB = Actor(name=UserName("bob"))
ADMIN = Actor(name=UserName("root"), admin=True)
P = PlanId("p")
Decide = Callable[[Job, Actor, float], list[AnyJobEvent]]
SPEC = JobSpec(script="echo hi", name="hello")
ALLOC = Allocation(
    gate=GateName("local"),
    nodes=(NodeAllocation(node="node0", host="localhost", cpus=1, memory_mb=0),),
)


def given_events(*events: AnyJobEvent) -> Job:
    job = replay(list(events))
    assert job is not None
    return job


def when(job: Job, events: list[AnyJobEvent]) -> Job:
    for event in events:
        job = evolve(job, event)
    return job


def pending() -> Job:
    return given_events(*decide_submit(JobId("7"), ALICE, SPEC, 1.0))


def scheduled(job: Job | None = None) -> Job:
    job = job or pending()
    placement = Placement(job_id=job.job_id, attempt=job.attempt, allocation=ALLOC)
    return when(job, decide_place(job, placement, PlanId("p1"), 2.0))


def run_event(job: Job, kind: type[RunEvent], **kw: object) -> list[AnyJobEvent]:
    ev = kind(
        event_id=MessageId("g1"),
        at=3.0,
        gate=GateName(kw.pop("gate", "local")),  # type: ignore[arg-type]
        job_id=job.job_id,
        attempt=kw.pop("attempt", job.attempt),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return decide_run_event(job, ev, 3.0)


def test_submit_makes_a_pending_job_owned_by_the_sender() -> None:
    job = pending()
    assert (job.state, job.owner, job.version, job.attempt) == (JobState.PENDING, "alice", 1, 1)
    assert job.detail == "submitted by alice"
    assert job.reason == "priority"


def test_event_ids_are_job_id_and_version() -> None:
    job = pending()
    (held,) = decide_hold(job, ALICE, 2.0)
    assert held.event_id == "7-2"


@pytest.mark.parametrize(
    ("decide", "code"),
    [
        (decide_release, RejectCode.INVALID_STATE),
        (decide_requeue, RejectCode.INVALID_STATE),
    ],
)
def test_release_and_requeue_of_a_plain_pending_job_are_invalid(decide: Decide, code: str) -> None:
    with pytest.raises(JobRuleError) as err:
        decide(pending(), ALICE, 2.0)
    assert err.value.code == code


def test_hold_then_release_returns_to_pending() -> None:
    job = when(pending(), decide_hold(pending(), ALICE, 2.0))
    assert job.held and job.reason == "held"
    with pytest.raises(JobRuleError, match="already held"):
        decide_hold(job, ALICE, 3.0)
    job = when(job, decide_release(job, ALICE, 3.0))
    assert not job.held and job.state is JobState.PENDING
    assert job.detail == "released by alice"


@pytest.mark.parametrize("decide", [decide_cancel, decide_hold, decide_release, decide_requeue])
def test_a_user_cannot_act_on_another_users_job(decide: Decide) -> None:
    with pytest.raises(JobRuleError) as err:
        decide(scheduled(), BOB, 2.0)
    assert err.value.code is RejectCode.NOT_OWNER


def test_an_admin_may_cancel_any_job() -> None:
    (event,) = decide_cancel(pending(), ADMIN, 2.0)
    assert isinstance(event, JobCancelled) and event.detail == "cancelled by root"


def test_cancel_of_a_pending_or_held_job_cancels_at_once() -> None:
    held = when(pending(), decide_hold(pending(), ALICE, 2.0))
    for job in (pending(), held):
        done = when(job, decide_cancel(job, ALICE, 3.0))
        assert done.state is JobState.CANCELLED and done.ended_at == 3.0


def test_cancel_of_a_finished_job_is_a_no_op() -> None:
    job = when(pending(), decide_cancel(pending(), ALICE, 2.0))
    assert decide_cancel(job, ALICE, 3.0) == []


def test_cancel_of_a_job_on_a_gate_asks_the_gate_to_stop() -> None:
    job = scheduled()
    (stop,) = decide_cancel(job, ALICE, 3.0)
    assert isinstance(stop, JobStopRequested) and not stop.requeue and stop.attempt == 1
    job = when(job, [stop])
    assert job.state is JobState.SCHEDULED and job.stop_requested
    assert decide_cancel(job, ALICE, 4.0) == []  # already stopping
    (ended,) = run_event(job, RunEnded, outcome=RunOutcome.CANCELLED)
    assert isinstance(ended, JobCancelled) and ended.by == "alice"


def test_requeue_of_a_running_job_returns_it_to_pending_with_restart_count() -> None:
    job = when(scheduled(), run_event(scheduled(), RunStarted))
    assert job.state is JobState.RUNNING
    job = when(job, decide_requeue(job, ALICE, 4.0))
    with pytest.raises(JobRuleError, match="already has a requeue"):
        decide_requeue(job, ALICE, 4.5)
    (usage, ended) = run_event(job, RunEnded, outcome=RunOutcome.CANCELLED)
    assert isinstance(usage, JobUsageRecorded) and usage.attempt == 1  # it had started
    assert isinstance(ended, JobRequeued) and ended.restart_count == 1
    job = when(job, [usage, ended])
    assert (job.state, job.restart_count, job.attempt, job.allocation) == (
        JobState.PENDING,
        1,
        2,
        None,
    )


def test_cancel_after_requeue_request_makes_the_end_a_cancel() -> None:
    job = scheduled()
    job = when(job, decide_requeue(job, ALICE, 3.0))
    job = when(job, decide_cancel(job, ALICE, 4.0))
    (ended,) = run_event(job, RunEnded, outcome=RunOutcome.CANCELLED)
    assert isinstance(ended, JobCancelled)


def test_placement_must_name_the_current_attempt_of_a_pending_unheld_job() -> None:
    job = pending()
    with pytest.raises(JobRuleError, match="attempt 1, not 2"):
        decide_place(job, Placement(job_id=job.job_id, attempt=2, allocation=ALLOC), P, 2.0)
    held = when(job, decide_hold(job, ALICE, 2.0))
    with pytest.raises(JobRuleError, match="held"):
        decide_place(held, Placement(job_id=job.job_id, attempt=1, allocation=ALLOC), P, 2.0)
    with pytest.raises(JobRuleError, match="is scheduled"):
        scheduled(scheduled())


def test_placement_with_wrong_node_count_is_refused() -> None:
    job = given_events(*decide_submit(JobId("8"), ALICE, JobSpec(script="x", nodes=2), 1.0))
    with pytest.raises(JobRuleError, match="asks for 2 nodes"):
        decide_place(job, Placement(job_id=job.job_id, attempt=1, allocation=ALLOC), P, 2.0)


WHOLE = JobSpec(script="x", nodes=2, cpus_per_task=4, memory_mb_per_node=1000, gpus_per_node=2)


def whole(
    node: str, cpus: int = 4, mem: int = 1000, gpus: tuple[int, ...] = (0, 1)
) -> NodeAllocation:
    return NodeAllocation(node=node, host="h", cpus=cpus, memory_mb=mem, gpus=gpus)


@pytest.mark.parametrize(
    ("shares", "why"),
    [
        ((whole("a", cpus=0, mem=0, gpus=()), whole("b")), "needs 4 cpus, 1000 MB and 2 GPUs"),
        ((whole("a", cpus=8), whole("b")), "share of node a has 8 cpus"),
        ((whole("a"), whole("b", mem=999)), "share of node b has 4 cpus, 999 MB"),
        ((whole("a", gpus=(0,)), whole("b")), "and 1 GPUs"),
        ((whole("a", gpus=(1, 1)), whole("b")), "names a GPU twice"),
        ((whole("a"), whole("a")), "names a node twice"),
        ((whole("a"),), "asks for 2 nodes, placement has 1"),
        ((whole("a"), whole("b"), whole("c")), "asks for 2 nodes, placement has 3"),
    ],
)
def test_a_placement_must_give_each_node_exactly_the_per_node_request(
    shares: tuple[NodeAllocation, ...], why: str
) -> None:
    job = given_events(*decide_submit(JobId("9"), ALICE, WHOLE, 1.0))
    alloc = Allocation(gate=GateName("local"), nodes=shares)
    with pytest.raises(JobRuleError, match=why) as err:
        decide_place(job, Placement(job_id=job.job_id, attempt=1, allocation=alloc), P, 2.0)
    assert err.value.code is RejectCode.INVALID_STATE
    good = Allocation(gate=GateName("local"), nodes=(whole("a"), whole("b", gpus=(1, 0))))
    (placed,) = decide_place(job, Placement(job_id=job.job_id, attempt=1, allocation=good), P, 2.0)
    assert isinstance(placed, JobScheduled)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1", 1),
        ("42", 42),
        ("9" * 18, 10**18 - 1),
        ("9" * 19, None),
        ("9" * 30, None),
        ("²", None),
        ("١٢", None),  # Arabic-Indic digits are digits to str.isdigit, not job ids
        ("01", None),
        ("0", None),
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1\n", None),
        ("1_000", None),
    ],
)
def test_only_ascii_numbers_of_at_most_18_digits_are_job_ids(text: str, number: int | None) -> None:
    assert job_number(text) == number


def test_gate_reports_drive_a_job_to_completed() -> None:
    job = scheduled()
    assert job.detail == "placed on local: node0"
    for kind, state in [
        (RunStagingIn, JobState.STAGING_IN),
        (RunStarted, JobState.RUNNING),
        (RunStagingOut, JobState.STAGING_OUT),
    ]:
        job = when(job, run_event(job, kind))
        assert job.state is state
    (usage, done) = run_event(job, RunEnded, outcome=RunOutcome.COMPLETED, exit_code=0)
    assert isinstance(usage, JobUsageRecorded)
    assert isinstance(done, JobCompleted) and done.detail == "exit code 0"
    assert usage.event_id != done.event_id
    assert when(job, [usage, done]).state is JobState.COMPLETED


def test_an_attempt_that_ran_records_node_hours_and_cost_at_its_price() -> None:
    spec = JobSpec(script="true", nodes=2, account="physics")
    job = given_events(*decide_submit(JobId("7"), ALICE, spec, 1.0))
    two = Allocation(
        gate=GateName("local"),
        nodes=tuple(
            NodeAllocation(node=f"node{i}", host="localhost", cpus=1, memory_mb=0) for i in (0, 1)
        ),
    )
    placement = Placement(job_id=job.job_id, attempt=1, allocation=two)
    job = when(job, decide_place(job, placement, PlanId("p1"), 2.0, price_per_hour=3.0))
    job = when(job, run_event(job, RunStarted))  # at 3.0
    ended = RunEnded(
        event_id=MessageId("g2"),
        at=3.0 + 1800,
        gate=GateName("local"),
        job_id=job.job_id,
        attempt=1,
        outcome=RunOutcome.COMPLETED,
    )
    usage, done = decide_run_event(job, ended, 5000.0)  # half an hour on two nodes...
    assert isinstance(usage, JobUsageRecorded) and isinstance(done, JobCompleted)
    assert (usage.owner, usage.account, usage.gate, usage.nodes) == ("alice", "physics", "local", 2)
    assert (usage.started_at, usage.ended_at) == (3.0, 1803.0)  # ...by the gate's clock
    assert usage.node_hours == pytest.approx(1.0) and usage.cost == pytest.approx(1.5)


def test_a_run_that_never_started_records_no_usage() -> None:
    job = when(scheduled(), run_event(scheduled(), RunStagingIn))
    (ended,) = run_event(job, RunEnded, outcome=RunOutcome.FAILED, reason=FailReason.STAGING)
    assert isinstance(ended, JobFailed)


def test_a_failed_run_fails_the_job_with_a_typed_reason() -> None:
    job = scheduled()
    (failed,) = run_event(
        job, RunEnded, outcome=RunOutcome.FAILED, reason=FailReason.EXIT_CODE, exit_code=3
    )
    assert isinstance(failed, JobFailed) and failed.detail == "exit_code, exit code 3"
    job = when(job, [failed])
    assert (job.state, job.reason, job.exit_code) == (JobState.FAILED, "exit_code", 3)


@pytest.mark.parametrize("change", [{"attempt": 2}, {"gate": "other"}])
def test_reports_of_a_stale_attempt_or_another_gate_are_ignored(change: dict[str, object]) -> None:
    assert run_event(scheduled(), RunStarted, **change) == []


def test_duplicate_reports_change_nothing() -> None:
    job = when(scheduled(), run_event(scheduled(), RunStarted))
    assert run_event(job, RunStarted) == []
    assert run_event(job, RunStagingIn) == []


# -- invariants -------------------------------------------------------------------------------

ACTIONS = st.lists(
    st.sampled_from(
        ["cancel", "requeue", "hold", "release", "place", "stagein", "start", "stageout"]
        + ["end_ok", "end_fail", "end_cancel", "stale"]
    ),
    max_size=30,
)


def _step(job: Job, action: str, at: float) -> list[AnyJobEvent]:
    match action:
        case "cancel":
            return decide_cancel(job, ALICE, at)
        case "requeue":
            return decide_requeue(job, ALICE, at)
        case "hold":
            return decide_hold(job, ALICE, at)
        case "release":
            return decide_release(job, ALICE, at)
        case "place":
            p = Placement(job_id=job.job_id, attempt=job.attempt, allocation=ALLOC)
            return decide_place(job, p, PlanId("p"), at)
        case "stagein":
            return run_event(job, RunStagingIn)
        case "start":
            return run_event(job, RunStarted)
        case "stageout":
            return run_event(job, RunStagingOut)
        case "end_ok":
            return run_event(job, RunEnded, outcome=RunOutcome.COMPLETED)
        case "end_fail":
            return run_event(job, RunEnded, outcome=RunOutcome.FAILED)
        case "end_cancel":
            return run_event(job, RunEnded, outcome=RunOutcome.CANCELLED)
        case _:
            return run_event(job, RunStarted, attempt=job.attempt + 5)


@settings(max_examples=200, deadline=None)
@given(ACTIONS)
def test_any_sequence_keeps_the_aggregate_consistent(actions: list[str]) -> None:
    job = pending()
    log: list[AnyJobEvent] = list(decide_submit(JobId("7"), ALICE, SPEC, 1.0))
    for i, action in enumerate(actions):
        before = job
        try:
            events = _step(job, action, 2.0 + i)
        except JobRuleError as err:
            assert err.code is RejectCode.INVALID_STATE
            continue
        job = when(job, events)
        log.extend(events)
        if before.finished:
            assert events == [] and job == before  # terminal states are absorbing
        if isinstance(job.allocation, Allocation):
            assert job.on_gate or job.finished
    assert job.version == len(log)
    assert len({e.event_id for e in log}) == len(log)
    assert replay(log) == job
    assert all(e.attempt <= job.attempt for e in log if isinstance(e, JobScheduled))
