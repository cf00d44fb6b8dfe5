"""Whether a job's dependencies let it start (Slurm's afterok, afternotok, afterany). Pure.

Core resolves dependencies: when a job ends, it records on every pending job that waits for
it whether that ending satisfies the dependency (``job_dependency_resolved``), and it refuses
a placement of a job whose dependencies are not all satisfied. The scheduler only reads
those facts off the job: it waits while any dependency is open; once one can never hold, it
stays pending until someone cancels it (as Slurm does without ``kill_invalid_depend``).
"""

from __future__ import annotations

from enum import StrEnum

from scheduler.view import PendingJob


class Readiness(StrEnum):
    READY = "ready"
    WAITING = "waiting"  # some job it depends on has not ended yet
    NEVER = "never"  # some job it depends on ended the wrong way


def readiness(job: PendingJob) -> Readiness:
    """How ``job``'s dependencies stand."""
    if job.broken is not None:
        return Readiness.NEVER
    if len(job.met) < len(job.spec.dependencies):
        return Readiness.WAITING
    return Readiness.READY


def open_dependencies(job: PendingJob) -> list[str]:
    """The jobs it still waits for, in the order it named them."""
    return [d.job_id for d in job.spec.dependencies if d.job_id not in job.met]
