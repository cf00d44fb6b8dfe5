"""Commands and queries a terminal sends, and what their replies mean. Pure.

Shared by the async client (over ``bus.connection.Bus``) and the CLI's quick path (over
``bus.quick``), so both build the same messages and map replies to the same errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TypeVar

from schemas.commands import (
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
    PlanJob,
    PlanReport,
    RejectCode,
    Rejected,
    ReleaseJob,
    RequeueJob,
    SubmitJob,
    UsageReport,
)
from schemas.ids import JobId, UserName, new_message_id
from schemas.jobs import JobSpec, JobState
from terminals.client.errors import ProtocolError, RejectedError, UnknownJobError

R = TypeVar("R", Accepted, JobPage, JobDetail, OfferList, UsageReport, PlanReport)

JobCommand = CancelJob | RequeueJob | HoldJob | ReleaseJob
JOB_COMMANDS: dict[str, type[JobCommand]] = {
    "cancel": CancelJob,
    "requeue": RequeueJob,
    "hold": HoldJob,
    "release": ReleaseJob,
}


def submit(spec: JobSpec) -> SubmitJob:
    return SubmitJob(id=new_message_id(), at=time.time(), spec=spec)


def plan_job(spec: JobSpec) -> PlanJob:
    """A dry run, for the scheduler: nothing is submitted."""
    return PlanJob(id=new_message_id(), at=time.time(), spec=spec)


def job_command(verb: str, job_id: str) -> JobCommand:
    return JOB_COMMANDS[verb](id=new_message_id(), at=time.time(), job_id=JobId(job_id))


def list_jobs(
    states: Iterable[JobState] = (),
    include_finished: bool = False,
    user: str | None = None,
    name: str | None = None,
    after: JobId | None = None,
    limit: int = 1000,
) -> ListJobs:
    return ListJobs(
        id=new_message_id(),
        at=time.time(),
        states=tuple(states),
        include_finished=include_finished or any(s in _FINISHED for s in states),
        user=UserName(user) if user else None,
        name=name,
        after=after,
        limit=limit,
    )


_FINISHED = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


def get_job(job_id: str) -> GetJob:
    return GetJob(id=new_message_id(), at=time.time(), job_id=JobId(job_id))


def get_usage(
    since: float | None = None, until: float | None = None, user: str | None = None
) -> GetUsage:
    return GetUsage(
        id=new_message_id(),
        at=time.time(),
        since=since,
        until=until,
        user=UserName(user) if user is not None else None,
    )


def list_offers() -> ListOffers:
    return ListOffers(id=new_message_id(), at=time.time())


def expect(reply: AnyReply, kind: type[R]) -> R:
    """``reply`` if it is a ``kind``; a Rejected becomes a RejectedError (or a subclass)."""
    if isinstance(reply, Rejected):
        if reply.code is RejectCode.UNKNOWN_JOB:
            raise UnknownJobError(reply.code, reply.detail)
        raise RejectedError(reply.code, reply.detail)
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
