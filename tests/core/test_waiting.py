"""Core records the scheduler's pending reasons, and admits accounts only from members."""

from __future__ import annotations

import time

import pytest

from bus.connection import Bus, RequestTimeoutError
from schemas import subjects
from schemas.accounts import AccountEntry, Accounts, Budget, Period, UserEntry
from schemas.commands import (
    Accepted,
    GetJob,
    GetUsage,
    HoldJob,
    JobDetail,
    RejectCode,
    Rejected,
    ReleaseJob,
    ReportWaiting,
    UsageReport,
    WaitingNote,
)
from schemas.events import JobWaiting
from schemas.ids import JobId
from schemas.jobs import PendingReason
from tests.core.conftest import RunningCore, new_id, send, submit_job

WAITING = subjects.core_command(subjects.CoreVerb.WAITING)


def _report(*notes: tuple[str, PendingReason, str], attempt: int = 1) -> ReportWaiting:
    return ReportWaiting(
        id=new_id("why"),
        at=time.time(),
        notes=tuple(
            WaitingNote(job_id=JobId(j), attempt=attempt, reason=r, detail=d) for j, r, d in notes
        ),
    )


async def _submitted(alice: Bus) -> JobId:
    reply = await send(alice, submit_job())
    assert isinstance(reply, Accepted) and reply.job_id is not None
    return reply.job_id


async def test_a_reason_is_recorded_only_when_it_changes(
    core: RunningCore, alice: Bus, scheduler: Bus
) -> None:
    job = await _submitted(alice)
    busy = (job, PendingReason.RESOURCES, "waiting for resources")
    assert isinstance(await send(scheduler, _report(busy)), Accepted)
    assert isinstance(await send(scheduler, _report(busy)), Accepted)  # the same again
    assert isinstance(await send(scheduler, _report(busy, attempt=2)), Accepted)  # stale
    behind = (job, PendingReason.PRIORITY, "behind job 1")
    assert isinstance(
        await send(scheduler, _report(behind, ("999", PendingReason.BUDGET, ""))), Accepted
    )
    waits = [e for e in core.store.job_events(job) if isinstance(e, JobWaiting)]
    assert [(e.reason, e.detail) for e in waits] == [
        (PendingReason.RESOURCES, "waiting for resources"),
        (PendingReason.PRIORITY, "behind job 1"),
    ]
    detail = await alice.request(
        subjects.core_query(subjects.CoreQueryName.JOB),
        GetJob(id=new_id("q"), at=time.time(), job_id=job),
    )
    assert isinstance(detail, JobDetail)
    assert (detail.summary.reason, detail.summary.detail) == ("priority", "behind job 1")


async def test_only_the_scheduler_may_report_reasons(core: RunningCore, alice: Bus) -> None:
    job = await _submitted(alice)
    with pytest.raises(RequestTimeoutError):  # the server does not even pass it on
        await alice.request(WAITING, _report((job, PendingReason.BUDGET, "spent")), timeout=1.0)
    assert not [e for e in core.store.job_events(job) if isinstance(e, JobWaiting)]


async def test_an_account_is_charged_only_by_its_members(
    core: RunningCore, alice: Bus, bob: Bus, admin: Bus
) -> None:
    core.service.state.accounts = Accounts(accounts={"physics": AccountEntry(members=("alice",))})
    assert isinstance(await send(alice, submit_job(account="physics")), Accepted)
    assert isinstance(await send(bob, submit_job(account="bob")), Accepted)  # his own
    not_member = await send(bob, submit_job(account="physics"))
    assert isinstance(not_member, Rejected) and not_member.code is RejectCode.NOT_MEMBER
    assert "not a member of account physics" in not_member.detail
    unknown = await send(alice, submit_job(account="chemistry"))
    assert isinstance(unknown, Rejected) and "no account chemistry" in unknown.detail
    assert isinstance(await send(admin, submit_job(account="chemistry")), Accepted)


async def test_a_reason_outlives_a_hold_and_release_and_is_not_recorded_twice(
    core: RunningCore, alice: Bus, scheduler: Bus
) -> None:
    job = await _submitted(alice)
    busy = (job, PendingReason.RESOURCES, "waiting for resources")
    assert isinstance(await send(scheduler, _report(busy)), Accepted)
    for cmd in (HoldJob, ReleaseJob):
        assert isinstance(await send(alice, cmd(id=new_id(), at=time.time(), job_id=job)), Accepted)
    assert isinstance(await send(scheduler, _report(busy)), Accepted)  # unchanged since
    waits = [e for e in core.store.job_events(job) if isinstance(e, JobWaiting)]
    assert len(waits) == 1
    detail = await alice.request(
        subjects.core_query(subjects.CoreQueryName.JOB),
        GetJob(id=new_id("q"), at=time.time(), job_id=job),
    )
    assert isinstance(detail, JobDetail)
    assert (detail.summary.reason, detail.summary.detail) == ("resources", "waiting for resources")


async def test_usage_shows_the_budgets_that_apply_and_what_their_period_used(
    core: RunningCore, alice: Bus, bob: Bus
) -> None:
    core.service.state.accounts = Accounts(
        users={"alice": UserEntry(budget=Budget(limit=10.0, period=Period.MONTH))},
        accounts={
            "physics": AccountEntry(members=("alice",), budget=Budget(limit=50.0)),
            "chemistry": AccountEntry(members=("bob",), budget=Budget(limit=5.0)),
        },
    )
    query = GetUsage(id=new_id("u"), at=time.time())
    report = await alice.request(subjects.core_query(subjects.CoreQueryName.USAGE), query)
    assert isinstance(report, UsageReport)
    assert [(b.scope, b.name, b.limit, b.period, b.spent) for b in report.budgets] == [
        ("user", "alice", 10.0, "month", 0.0),
        ("account", "physics", 50.0, "total", 0.0),
    ]  # not chemistry's: she is no member
    assert report.budgets[0].since > 0 and report.budgets[1].since == 0
