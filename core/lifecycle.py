"""The lifecycle process manager: which gate commands follow from which job events. Pure.

A JobScheduled starts the run on the allocation's gate; the first JobStopRequested of an
attempt stops it (a cancel after a requeue request only changes what the end of the run
means, the gate is already stopping). Command ids are deterministic, so a re-publish of the
same command is de-duplicated by JetStream.
"""

from __future__ import annotations

from typing import NamedTuple

from core.job import Job
from schemas import subjects
from schemas.events import AnyJobEvent, JobScheduled, JobStopRequested
from schemas.gate import AnyGateCommand, GateVerb, StartRun, StopRun
from schemas.ids import MessageId


class Outbound(NamedTuple):
    """A gate command and the subject it is published on."""

    subject: str
    command: AnyGateCommand


def follow(before: Job | None, after: Job, event: AnyJobEvent) -> list[Outbound]:
    """Gate commands that ``event`` (which took ``before`` to ``after``) calls for."""
    if isinstance(event, JobScheduled):
        gate = event.allocation.gate
        start = StartRun(
            id=MessageId(f"{after.job_id}-{event.attempt}-start"),
            at=event.at,
            job_id=after.job_id,
            attempt=event.attempt,
            owner=after.owner,
            spec=after.spec,
            allocation=event.allocation,
            restart_count=after.restart_count,
        )
        return [Outbound(subjects.gate_command(gate, GateVerb.START), start)]
    if isinstance(event, JobStopRequested):
        if before is not None and before.stop_requested:
            return []
        if after.allocation is None:
            return []
        stop = StopRun(
            id=MessageId(f"{after.job_id}-{event.attempt}-stop"),
            at=event.at,
            job_id=after.job_id,
            attempt=event.attempt,
            reason="requeue" if event.requeue else "cancel",
        )
        return [Outbound(subjects.gate_command(after.allocation.gate, GateVerb.STOP), stop)]
    return []
