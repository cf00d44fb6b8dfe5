"""Whether a job's dependencies let it start (Slurm's afterok, afternotok, afterany). Pure.

A dependency is on another job's end: ``afterok`` needs it completed, ``afternotok`` failed
or cancelled, ``afterany`` ended however. A job waits while any job it depends on has not
ended; once one has ended the wrong way, its dependencies can never be satisfied and it
stays pending until someone cancels it (as Slurm does without ``kill_invalid_depend``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from schemas.ids import JobId
from schemas.jobs import TERMINAL_STATES, Dependency, DependencyKind, JobState


class Readiness(StrEnum):
    READY = "ready"
    WAITING = "waiting"  # some job it depends on has not ended yet
    NEVER = "never"  # some job it depends on ended the wrong way


_SATISFIED_BY: dict[DependencyKind, frozenset[JobState]] = {
    DependencyKind.AFTEROK: frozenset({JobState.COMPLETED}),
    DependencyKind.AFTERNOTOK: frozenset({JobState.FAILED, JobState.CANCELLED}),
    DependencyKind.AFTERANY: TERMINAL_STATES,
}


def readiness(dependencies: tuple[Dependency, ...], ended: Mapping[JobId, JobState]) -> Readiness:
    """How ``dependencies`` stand, given how the finished jobs ended."""
    result = Readiness.READY
    for dep in dependencies:
        state = ended.get(dep.job_id)
        if state is None:
            result = Readiness.WAITING
        elif state not in _SATISFIED_BY[dep.kind]:
            return Readiness.NEVER
    return result
