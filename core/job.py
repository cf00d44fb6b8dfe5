"""The job aggregate: one job's state and its whole rulebook. Pure: no I/O, no clock.

``decide_*`` functions take the current state, the actor, the command and the time and return
the events to append (or raise JobRuleError); ``evolve`` folds one event into the state. Event
ids are ``f"{job_id}-{version}"`` so that a re-publish of the same event is de-duplicated.
"""

from __future__ import annotations

import re
from typing import assert_never

import msgspec

from schemas.commands import Placement, RejectCode
from schemas.events import (
    AnyJobEvent,
    JobCancelled,
    JobCompleted,
    JobDependencyResolved,
    JobFailed,
    JobHeld,
    JobReleased,
    JobRequeued,
    JobScheduled,
    JobStagingIn,
    JobStagingOut,
    JobStarted,
    JobStopRequested,
    JobSubmitted,
    JobUsageRecorded,
    JobWaiting,
)
from schemas.gate import RunEnded, RunEvent, RunStagingIn, RunStagingOut, RunStarted
from schemas.ids import JobId, MessageId, PlanId, UserName
from schemas.jobs import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Allocation,
    FailReason,
    JobSpec,
    JobState,
    PendingReason,
    RunOutcome,
    StagedOutput,
)


class JobRuleError(Exception):
    """A command breaks a rule of the job; ``code`` is the Rejected code sent back."""

    def __init__(self, code: RejectCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who acts, from the verified signature: a user name and whether they are an admin."""

    name: UserName
    admin: bool = False


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """The state of one job after ``version`` events (also its snapshot format)."""

    job_id: JobId
    owner: UserName
    spec: JobSpec
    state: JobState = JobState.PENDING
    version: int = 0
    held: bool = False
    restart_count: int = 0
    allocation: Allocation | None = None
    plan_id: PlanId | None = None
    stop_requested: bool = False
    requeue_requested: bool = False
    stop_by: UserName | None = None
    exit_code: int | None = None
    fail_reason: FailReason | None = None
    outputs: tuple[StagedOutput, ...] = ()
    detail: str = ""
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    price_per_hour: float = 0.0  # of the current attempt's shares
    node_share: float | None = None  # the whole-node equivalent of those shares
    gate_started_at: float | None = None  # the current attempt's start, by the gate's clock
    waiting: PendingReason | None = None  # why it waits, as the scheduler last said
    waiting_detail: str = ""  # and how it said it
    met: tuple[JobId, ...] = ()  # dependencies satisfied so far
    broken: JobId | None = None  # a dependency that ended the wrong way: never startable

    @property
    def dependencies_met(self) -> bool:
        return len(self.met) == len(self.spec.dependencies)

    @property
    def attempt(self) -> int:
        """The current (or next) attempt number; the first run is attempt 1."""
        return self.restart_count + 1

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def on_gate(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def reason(self) -> str:
        """Slurm-like reason: why a pending job waits, or why a failed job failed."""
        if self.state is JobState.PENDING:
            if self.held:
                return PendingReason.HELD
            if self.broken is not None:
                return PendingReason.DEPENDENCY_NEVER
            if not self.dependencies_met:
                return PendingReason.DEPENDENCY
            return self.waiting or PendingReason.PRIORITY
        if self.state is JobState.FAILED and self.fail_reason is not None:
            return self.fail_reason.value
        return ""


_JOB_NUMBER = re.compile(r"[1-9][0-9]{0,17}")


def job_number(text: str) -> int | None:
    """The number of job id ``text``, or None if core never issues such an id.

    Job ids are ASCII digits without a leading zero, at most 18 of them (so that every id
    fits a 64-bit SQL integer); anything else ("²", "01", "9" * 30) names no job.
    """
    return int(text) if _JOB_NUMBER.fullmatch(text) else None


def event_id(job: Job, offset: int = 1) -> MessageId:
    """The id of the job's next event (``offset`` 1), or of one after it."""
    return MessageId(f"{job.job_id}-{job.version + offset}")


def _check_owner(job: Job, actor: Actor) -> None:
    if job.owner != actor.name and not actor.admin:
        raise JobRuleError(RejectCode.NOT_OWNER, f"job {job.job_id} belongs to another user")


def _nodes_text(allocation: Allocation) -> str:
    return ", ".join(n.node for n in allocation.nodes)


def decide_submit(job_id: JobId, actor: Actor, spec: JobSpec, at: float) -> list[AnyJobEvent]:
    """A new job: always accepted (the spec was validated when it was decoded)."""
    return [
        JobSubmitted(
            event_id=MessageId(f"{job_id}-1"),
            job_id=job_id,
            at=at,
            owner=actor.name,
            spec=spec,
            detail=f"submitted by {actor.name}",
        )
    ]


def decide_cancel(job: Job, actor: Actor, at: float) -> list[AnyJobEvent]:
    """Cancel at once if the job is not on a gate; otherwise ask the gate to stop it."""
    _check_owner(job, actor)
    if job.finished:
        return []
    if job.state is JobState.PENDING:
        return [
            JobCancelled(
                event_id=event_id(job),
                job_id=job.job_id,
                at=at,
                by=actor.name,
                detail=f"cancelled by {actor.name}",
            )
        ]
    if job.stop_requested and not job.requeue_requested:
        return []
    return [_stop(job, actor, at, requeue=False)]


def decide_requeue(job: Job, actor: Actor, at: float) -> list[AnyJobEvent]:
    """Stop the current run and put the job back in the queue with restart count + 1."""
    _check_owner(job, actor)
    if not job.on_gate:
        raise JobRuleError(
            RejectCode.INVALID_STATE,
            f"job {job.job_id} is {job.state}: only a job on a gate can be requeued",
        )
    if job.stop_requested:
        what = "a requeue" if job.requeue_requested else "a cancel"
        raise JobRuleError(RejectCode.INVALID_STATE, f"job {job.job_id} already has {what}")
    return [_stop(job, actor, at, requeue=True)]


def _stop(job: Job, actor: Actor, at: float, requeue: bool) -> JobStopRequested:
    verb = "requeue" if requeue else "cancel"
    return JobStopRequested(
        event_id=event_id(job),
        job_id=job.job_id,
        at=at,
        attempt=job.attempt,
        by=actor.name,
        requeue=requeue,
        detail=f"{verb} requested by {actor.name}",
    )


def decide_hold(job: Job, actor: Actor, at: float) -> list[AnyJobEvent]:
    """Keep a pending job from being scheduled until it is released."""
    _check_owner(job, actor)
    if job.state is not JobState.PENDING:
        raise JobRuleError(
            RejectCode.INVALID_STATE, f"job {job.job_id} is {job.state}: only pending jobs hold"
        )
    if job.held:
        raise JobRuleError(RejectCode.INVALID_STATE, f"job {job.job_id} is already held")
    return [
        JobHeld(
            event_id=event_id(job),
            job_id=job.job_id,
            at=at,
            by=actor.name,
            detail=f"held by {actor.name}",
        )
    ]


def decide_release(job: Job, actor: Actor, at: float) -> list[AnyJobEvent]:
    """Let a held job be scheduled again."""
    _check_owner(job, actor)
    if job.state is not JobState.PENDING or not job.held:
        raise JobRuleError(RejectCode.INVALID_STATE, f"job {job.job_id} is not held")
    return [
        JobReleased(
            event_id=event_id(job),
            job_id=job.job_id,
            at=at,
            by=actor.name,
            detail=f"released by {actor.name}",
        )
    ]


def decide_place(
    job: Job,
    placement: Placement,
    plan_id: PlanId,
    at: float,
    price_per_hour: float = 0.0,
    node_share: float | None = None,
) -> list[AnyJobEvent]:
    """Schedule attempt ``placement.attempt`` of a pending job (capacity is checked apart);
    ``price_per_hour`` is what its shares of the nodes cost, by the gate's report, and
    ``node_share`` how many whole nodes they add up to."""
    if job.state is not JobState.PENDING:
        raise JobRuleError(RejectCode.INVALID_STATE, f"job {job.job_id} is {job.state}")
    if job.held:
        raise JobRuleError(RejectCode.INVALID_STATE, f"job {job.job_id} is held")
    if placement.attempt != job.attempt:
        raise JobRuleError(
            RejectCode.INVALID_STATE,
            f"job {job.job_id} is at attempt {job.attempt}, not {placement.attempt}",
        )
    if not job.dependencies_met:
        open_ = [d.job_id for d in job.spec.dependencies if d.job_id not in job.met]
        raise JobRuleError(
            RejectCode.INVALID_STATE, f"job {job.job_id} waits for job {', '.join(open_)}"
        )
    alloc = placement.allocation
    _check_shares(job, alloc)
    if job.spec.gate is not None and job.spec.gate != alloc.gate:
        raise JobRuleError(
            RejectCode.INVALID_STATE, f"job {job.job_id} must run on gate {job.spec.gate}"
        )
    again = f" (attempt {job.attempt})" if job.attempt > 1 else ""
    return [
        JobScheduled(
            event_id=event_id(job),
            job_id=job.job_id,
            at=at,
            attempt=job.attempt,
            allocation=alloc,
            plan_id=plan_id,
            price_per_hour=price_per_hour,
            node_share=node_share,
            detail=f"placed on {alloc.gate}: {_nodes_text(alloc)}{again}",
        )
    ]


def _check_shares(job: Job, alloc: Allocation) -> None:
    """One share per node asked for, each exactly the spec's per-node size (gang, whole)."""
    spec = job.spec
    if len(alloc.nodes) != spec.nodes:
        raise JobRuleError(
            RejectCode.INVALID_STATE,
            f"job {job.job_id} asks for {spec.nodes} nodes, placement has {len(alloc.nodes)}",
        )
    if len({share.node for share in alloc.nodes}) != len(alloc.nodes):
        raise JobRuleError(
            RejectCode.INVALID_STATE, f"placement of job {job.job_id} names a node twice"
        )
    want = (spec.cpus_per_node, spec.memory_mb_per_node, spec.gpus_per_node)
    for share in alloc.nodes:
        if (share.cpus, share.memory_mb, len(share.gpus)) != want:
            raise JobRuleError(
                RejectCode.INVALID_STATE,
                f"job {job.job_id} needs {want[0]} cpus, {want[1]} MB and {want[2]} GPUs per"
                f" node; the share of node {share.node} has {share.cpus} cpus,"
                f" {share.memory_mb} MB and {len(share.gpus)} GPUs",
            )
        if len(set(share.gpus)) != len(share.gpus):
            raise JobRuleError(
                RejectCode.INVALID_STATE,
                f"the share of node {share.node} names a GPU twice: {list(share.gpus)}",
            )


_RUN_FROM: dict[type[RunEvent], frozenset[JobState]] = {
    RunStagingIn: frozenset({JobState.SCHEDULED, JobState.PROVISIONING}),
    RunStarted: frozenset({JobState.SCHEDULED, JobState.PROVISIONING, JobState.STAGING_IN}),
    RunStagingOut: frozenset(
        {JobState.SCHEDULED, JobState.PROVISIONING, JobState.STAGING_IN, JobState.RUNNING}
    ),
    RunEnded: ACTIVE_STATES,
}


def decide_run_event(job: Job, ev: RunEvent, at: float) -> list[AnyJobEvent]:
    """Map a gate's report on the current attempt to job events; anything stale is ignored."""
    if job.allocation is None or ev.gate != job.allocation.gate or ev.attempt != job.attempt:
        return []
    if job.state not in _RUN_FROM.get(type(ev), frozenset()):
        return []  # duplicate or out-of-order report: the job has moved on
    eid, jid, attempt = event_id(job), job.job_id, job.attempt
    where = f"{job.allocation.gate}: {_nodes_text(job.allocation)}"
    if isinstance(ev, RunStagingIn):
        detail = ev.detail or f"staging in on {where}"
        return [JobStagingIn(event_id=eid, job_id=jid, at=at, attempt=attempt, detail=detail)]
    if isinstance(ev, RunStarted):
        detail = ev.detail or f"running on {where}"
        return [
            JobStarted(
                event_id=eid, job_id=jid, at=at, attempt=attempt, gate_at=ev.at, detail=detail
            )
        ]
    if isinstance(ev, RunStagingOut):
        code = "" if ev.exit_code is None else f" (exit code {ev.exit_code})"
        detail = ev.detail or f"staging out{code}"
        return [
            JobStagingOut(
                event_id=eid,
                job_id=jid,
                at=at,
                attempt=attempt,
                exit_code=ev.exit_code,
                detail=detail,
            )
        ]
    if isinstance(ev, RunEnded):
        usage = _usage(job, ev, at)
        return [*usage, _ended(job, ev, at, offset=1 + len(usage))]
    return []


def _usage(job: Job, ev: RunEnded, at: float) -> list[AnyJobEvent]:
    """The usage of the attempt that ``ev`` ends, if it started: node-hours × price, timed by
    the gate's clock (core's, for a start recorded before gates' times were kept)."""
    if job.started_at is None or job.allocation is None:
        return []
    start, end = (
        (job.gate_started_at, ev.at) if job.gate_started_at is not None else (job.started_at, at)
    )
    hours = max(0.0, end - start) / 3600
    nodes = len(job.allocation.nodes)
    share = job.node_share if job.node_share is not None else float(nodes)
    cost = hours * job.price_per_hour
    return [
        JobUsageRecorded(
            event_id=event_id(job),
            job_id=job.job_id,
            at=at,
            attempt=job.attempt,
            owner=job.owner,
            account=job.spec.account or job.owner,
            gate=job.allocation.gate,
            started_at=start,
            ended_at=end,
            nodes=nodes,
            node_hours=hours * share,
            cost=cost,
            detail=f"used {hours * share:.4g} node-hours on {job.allocation.gate}, cost {cost:.4g}",
        )
    ]


def _ended(job: Job, ev: RunEnded, at: float, offset: int = 1) -> AnyJobEvent:
    eid, jid, attempt = event_id(job, offset), job.job_id, job.attempt
    extra = f": {ev.detail}" if ev.detail else ""
    match ev.outcome:
        case RunOutcome.COMPLETED:
            return JobCompleted(
                event_id=eid,
                job_id=jid,
                at=at,
                attempt=attempt,
                exit_code=ev.exit_code or 0,
                outputs=ev.outputs,
                detail=f"exit code {ev.exit_code or 0}{extra}",
            )
        case RunOutcome.FAILED:
            reason = ev.reason or FailReason.EXIT_CODE
            code = "" if ev.exit_code is None else f", exit code {ev.exit_code}"
            return JobFailed(
                event_id=eid,
                job_id=jid,
                at=at,
                attempt=attempt,
                reason=reason,
                exit_code=ev.exit_code,
                outputs=ev.outputs,
                detail=f"{reason}{code}{extra}",
            )
        case RunOutcome.CANCELLED:
            by = job.stop_by or UserName(ev.gate)
            if job.stop_requested and job.requeue_requested:
                return JobRequeued(
                    event_id=eid,
                    job_id=jid,
                    at=at,
                    by=by,
                    restart_count=job.restart_count + 1,
                    detail=f"requeued by {by} (restart {job.restart_count + 1})",
                )
            return JobCancelled(
                event_id=eid,
                job_id=jid,
                at=at,
                by=by,
                outputs=ev.outputs,
                detail=f"cancelled by {by}{extra}",
            )
        case _:
            assert_never(ev.outcome)


def evolve(job: Job | None, event: AnyJobEvent) -> Job:
    """The state after ``event``. A first event other than JobSubmitted is a programming error."""
    if isinstance(event, JobSubmitted):
        return Job(
            job_id=event.job_id,
            owner=event.owner,
            spec=event.spec,
            version=1,
            detail=event.detail,
            submitted_at=event.at,
        )
    if job is None:
        raise ValueError(f"event {event.event_id} of a job that was never submitted")
    job = msgspec.structs.replace(job, version=job.version + 1, detail=event.detail)
    return _apply(job, event)


def _apply(job: Job, event: AnyJobEvent) -> Job:
    replace = msgspec.structs.replace
    match event:
        case JobSubmitted():
            return job
        case JobHeld():
            return replace(job, held=True)
        case JobReleased():
            return replace(job, held=False)
        case JobScheduled():
            return replace(
                job,
                state=JobState.SCHEDULED,
                allocation=event.allocation,
                plan_id=event.plan_id,
                stop_requested=False,
                requeue_requested=False,
                stop_by=None,
                exit_code=None,
                price_per_hour=event.price_per_hour,
                node_share=event.node_share,
                waiting=None,
                waiting_detail="",
            )
        case JobStagingIn():
            return replace(job, state=JobState.STAGING_IN)
        case JobStarted():
            return replace(
                job, state=JobState.RUNNING, started_at=event.at, gate_started_at=event.gate_at
            )
        case JobStagingOut():
            return replace(job, state=JobState.STAGING_OUT, exit_code=event.exit_code)
        case JobCompleted():
            return replace(
                job,
                state=JobState.COMPLETED,
                exit_code=event.exit_code,
                outputs=event.outputs,
                ended_at=event.at,
            )
        case JobFailed():
            return replace(
                job,
                state=JobState.FAILED,
                exit_code=event.exit_code,
                fail_reason=event.reason,
                outputs=event.outputs,
                ended_at=event.at,
            )
        case JobStopRequested():
            return replace(
                job, stop_requested=True, requeue_requested=event.requeue, stop_by=event.by
            )
        case JobCancelled():
            return replace(
                job,
                state=JobState.CANCELLED,
                outputs=event.outputs or job.outputs,
                ended_at=event.at,
            )
        case JobUsageRecorded():
            return job  # a record for accounting; the end of the attempt follows it
        case JobWaiting():
            return replace(job, waiting=event.reason, waiting_detail=event.detail)
        case JobDependencyResolved():
            if event.satisfied:
                return replace(job, met=(*job.met, event.dependency))
            return replace(job, broken=event.dependency)
        case JobRequeued():
            return replace(
                job,
                state=JobState.PENDING,
                restart_count=event.restart_count,
                allocation=None,
                stop_requested=False,
                requeue_requested=False,
                stop_by=None,
                started_at=None,
                gate_started_at=None,
                exit_code=None,
                waiting=None,
                waiting_detail="",
            )
        case _:
            assert_never(event)


def replay(events: list[AnyJobEvent]) -> Job | None:
    """Fold a job's events from the start."""
    job: Job | None = None
    for event in events:
        job = evolve(job, event)
    return job
