"""A core stand-in for terminal tests: a core-signed responder over the real bus.

Not the real core (built in parallel): it answers queries and commands from canned data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import msgspec

from bus.connection import Bus, Incoming
from bus.deployment import DeploymentInfo, StateDir
from schemas import subjects
from schemas.commands import (
    Accepted,
    AnyCommand,
    AnyQuery,
    GetJob,
    JobDetail,
    JobPage,
    ListJobs,
    RejectCode,
    Rejected,
    SubmitJob,
)
from schemas.ids import JobId, MessageId, UserName
from schemas.jobs import JobSpec, JobState, JobSummary, StagedOutput


def summary(n: int, owner: str = "alice") -> JobSummary:
    return JobSummary(
        job_id=JobId(str(n)),
        owner=UserName(owner),
        name=f"job{n}",
        state=JobState.PENDING,
        reason="resources",
        submitted_at=1_700_000_000.0 + n,
    )


@dataclass
class FakeCore:
    """Answers ListJobs (pages of ``page`` jobs), GetJob, and every command (refusing
    commands about the jobs in ``refuse``)."""

    jobs: list[JobSummary]
    details: dict[str, JobDetail] = field(default_factory=dict)
    page: int = 1000
    submitted: list[SubmitJob] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def on_query(self, msg: Incoming[AnyQuery]) -> msgspec.Struct:
        q = msg.body
        if isinstance(q, ListJobs):
            start = 0 if q.after is None else int(q.after)
            chunk = self.jobs[start : start + min(q.limit, self.page)]
            more = start + len(chunk) < len(self.jobs)
            return JobPage(
                to=q.id,
                jobs=tuple(chunk),
                next_after=JobId(str(start + len(chunk))) if more else None,
            )
        assert isinstance(q, GetJob)
        if q.job_id in self.details:
            return msgspec.structs.replace(self.details[q.job_id], to=q.id)
        return Rejected(to=q.id, code=RejectCode.UNKNOWN_JOB, detail=f"no job {q.job_id}")

    async def on_command(self, msg: Incoming[AnyCommand]) -> msgspec.Struct:
        cmd = msg.body
        if isinstance(cmd, SubmitJob):
            self.submitted.append(cmd)
            return Accepted(to=cmd.id, job_id=JobId(str(len(self.submitted))))
        job_id = getattr(cmd, "job_id", None)
        if job_id in self.refuse:
            return Rejected(to=cmd.id, code=RejectCode.NOT_OWNER, detail=f"job {job_id}")
        return Accepted(to=cmd.id, job_id=job_id)

    async def serve(self, bus: Bus) -> None:
        await bus.serve(subjects.CORE_QUERIES, "q", msgspec.json.Decoder(AnyQuery), self.on_query)
        await bus.serve(
            subjects.CORE_COMMANDS, "c", msgspec.json.Decoder(AnyCommand), self.on_command
        )
        await bus.nc.flush()


def detail(job_id: str, outputs: tuple[StagedOutput, ...] = ()) -> JobDetail:
    return JobDetail(
        to=MessageId(""),
        summary=summary(int(job_id)),
        spec=JobSpec(script="true"),
        outputs=outputs,
    )


def pretend_running(state: StateDir, url: str) -> None:
    """A deployment.json naming this (living) process as supervisor."""
    state.write_info(DeploymentInfo(nats_url=url, started_at=0.0, supervisor_pid=os.getpid()))
