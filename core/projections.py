"""Read models of jobs: the summary row of a listing and the history of transitions. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from core.job import Job, evolve
from schemas.events import AnyJobEvent
from schemas.jobs import JobState, JobSummary, Transition


def summary(job: Job) -> JobSummary:
    """The listing row of a job."""
    gate = job.allocation.gate if job.allocation is not None else job.spec.gate
    return JobSummary(
        job_id=job.job_id,
        owner=job.owner,
        name=job.spec.name,
        state=job.state,
        reason=job.reason,
        detail=_detail(job),
        gate=gate,
        nodes=job.spec.nodes,
        priority=job.spec.priority,
        restart_count=job.restart_count,
        exit_code=job.exit_code,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
    )


def _detail(job: Job) -> str:
    """The scheduler's word on a job it keeps waiting; else what its last event said."""
    waiting = job.state is JobState.PENDING and not job.held and job.waiting is not None
    return job.waiting_detail if waiting else job.detail


def transition(after: Job, event: AnyJobEvent) -> Transition:
    """One history step: the event and the state it left the job in."""
    return Transition(
        seq=after.version,
        at=event.at,
        event=tag_of(event),
        state=after.state,
        reason=after.reason,
        detail=event.detail,
    )


def history(events: Iterable[AnyJobEvent]) -> tuple[Job | None, tuple[Transition, ...]]:
    """Fold a job's events; return its state and one transition per event."""
    job: Job | None = None
    steps: list[Transition] = []
    for event in events:
        job = evolve(job, event)
        steps.append(transition(job, event))
    return job, tuple(steps)


def tag_of(event: AnyJobEvent) -> str:
    """The permanent tag of an event (the last token of its subject)."""
    tag = type(event).__struct_config__.tag
    return str(tag)
