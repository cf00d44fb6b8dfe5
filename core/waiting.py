"""Decisions about a pending job's wait: its dependencies and the scheduler's reasons. Pure.

Core records these facts; the scheduler reads them. A dependency is resolved when the job it
names ends (``core.batch`` finds the dependents); a reason is recorded only when it changes.
"""

from __future__ import annotations

from core.job import Job, event_id
from schemas.commands import WaitingNote
from schemas.events import AnyJobEvent, JobDependencyResolved, JobWaiting
from schemas.jobs import JobState


def decide_dependency(job: Job, other: Job, at: float) -> list[AnyJobEvent]:
    """Record that ``other``, which pending ``job`` depends on, has ended: once, and only
    while ``job`` still waits for it."""
    dep = next((d for d in job.spec.dependencies if d.job_id == other.job_id), None)
    if dep is None or not other.finished or job.state is not JobState.PENDING:
        return []
    if other.job_id in job.met or other.job_id == job.broken:
        return []
    ok = dep.satisfied_by(other.state)
    verdict = "holds" if ok else "can never hold: the job waits until cancelled"
    return [
        JobDependencyResolved(
            event_id=event_id(job),
            job_id=job.job_id,
            at=at,
            dependency=other.job_id,
            ended_as=other.state,
            satisfied=ok,
            detail=f"job {other.job_id} is {other.state}, so {dep.kind}:{other.job_id} {verdict}",
        )
    ]


def decide_waiting(job: Job, note: WaitingNote, at: float) -> list[AnyJobEvent]:
    """Record why a pending job waits. Only a change is recorded: a repeated, stale (another
    attempt's) or late (the job has moved on) note changes nothing."""
    if job.state is not JobState.PENDING or job.held or note.attempt != job.attempt:
        return []
    if job.waiting is note.reason and job.waiting_detail == note.detail:
        return []
    return [
        JobWaiting(
            event_id=event_id(job),
            job_id=job.job_id,
            at=at,
            attempt=note.attempt,
            reason=note.reason,
            detail=note.detail,
        )
    ]
