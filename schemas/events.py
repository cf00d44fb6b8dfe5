"""Job events: the facts core records about a job, published on the job subjects. Pure.

Every event is past tense, carries a human-readable ``detail`` and never changes shape: a
field added later has a default, and old payloads in tests/data must still decode.
"""

from __future__ import annotations

import msgspec

from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import Allocation, FailReason, JobSpec, JobState, PendingReason, StagedOutput


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every job event; ``event_id`` is unique and is the JetStream message id."""

    event_id: MessageId
    job_id: JobId
    at: float
    detail: str = ""


class JobSubmitted(JobEvent, frozen=True, kw_only=True, tag="job_submitted"):
    owner: UserName
    spec: JobSpec


class JobHeld(JobEvent, frozen=True, kw_only=True, tag="job_held"):
    by: UserName


class JobReleased(JobEvent, frozen=True, kw_only=True, tag="job_released"):
    by: UserName


class JobWaiting(JobEvent, frozen=True, kw_only=True, tag="job_waiting"):
    """Why a pending job is not running, as the scheduler last said (recorded only when it
    changes). ``detail`` says it for people: which job it is behind, which budget is spent."""

    attempt: int
    reason: PendingReason


class JobDependencyResolved(JobEvent, frozen=True, kw_only=True, tag="job_dependency_resolved"):
    """A job this pending job depends on has ended (or had, when this one was submitted):
    ``satisfied`` says whether that ending is the one the dependency waits for."""

    dependency: JobId
    ended_as: JobState
    satisfied: bool


class JobScheduled(JobEvent, frozen=True, kw_only=True, tag="job_scheduled"):
    attempt: int
    allocation: Allocation
    plan_id: PlanId
    price_per_hour: float = 0.0  # of the job's shares of its nodes, at their prices then
    node_share: float | None = None  # how many whole nodes its shares add up to (billing)


class JobStagingIn(JobEvent, frozen=True, kw_only=True, tag="job_staging_in"):
    attempt: int


class JobStarted(JobEvent, frozen=True, kw_only=True, tag="job_started"):
    attempt: int
    gate_at: float | None = None  # when the gate started it, by the gate's clock


class JobStagingOut(JobEvent, frozen=True, kw_only=True, tag="job_staging_out"):
    attempt: int
    exit_code: int | None = None


class JobCompleted(JobEvent, frozen=True, kw_only=True, tag="job_completed"):
    attempt: int
    exit_code: int = 0
    outputs: tuple[StagedOutput, ...] = ()


class JobFailed(JobEvent, frozen=True, kw_only=True, tag="job_failed"):
    attempt: int
    reason: FailReason
    exit_code: int | None = None
    outputs: tuple[StagedOutput, ...] = ()


class JobStopRequested(JobEvent, frozen=True, kw_only=True, tag="job_stop_requested"):
    """A cancel or requeue of a job that is on a gate: the gate is asked to stop it."""

    attempt: int
    by: UserName
    requeue: bool = False


class JobCancelled(JobEvent, frozen=True, kw_only=True, tag="job_cancelled"):
    by: UserName
    outputs: tuple[StagedOutput, ...] = ()


class JobUsageRecorded(JobEvent, frozen=True, kw_only=True, tag="job_usage_recorded"):
    """What one attempt used, from its start to its end on the gate (both by the gate's
    clock, so that clock skew between hosts does not count): node-hours (by the part of each
    node it took) and their cost at the allocation's price. Recorded once per attempt that
    started."""

    attempt: int
    owner: UserName
    account: str
    gate: GateName
    started_at: float
    ended_at: float
    nodes: int
    node_hours: float
    cost: float


class JobRequeued(JobEvent, frozen=True, kw_only=True, tag="job_requeued"):
    by: UserName
    restart_count: int


AnyJobEvent = (
    JobSubmitted
    | JobHeld
    | JobReleased
    | JobScheduled
    | JobStagingIn
    | JobStarted
    | JobStagingOut
    | JobCompleted
    | JobFailed
    | JobStopRequested
    | JobCancelled
    | JobRequeued
    | JobUsageRecorded
    | JobWaiting
    | JobDependencyResolved
)
