"""Core's query side: job listings and one job's detail, read from the projection tables,
and the gates' offers, from what core keeps in memory.

Users see only their own jobs; admins and the scheduler see all. Every identity that may
query sees the offers (as every Slurm user sees ``sinfo``). Reads run in worker threads
on their own connections (SQLite WAL lets them run beside the writer). A page stops at
``limit`` jobs or ``PAGE_BUDGET`` bytes of summaries, whichever comes first; ``next_after``
tells the client where to go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import assert_never

import msgspec

from bus.connection import Incoming
from core.job import job_number
from core.projections import history, summary
from core.store import Store
from schemas import subjects
from schemas.accounts import Accounts, period_start
from schemas.commands import (
    AnyQuery,
    AnyReply,
    BudgetStatus,
    GateOffer,
    GetJob,
    GetUsage,
    JobDetail,
    JobPage,
    ListJobs,
    ListOffers,
    OfferList,
    RejectCode,
    Rejected,
    UsageReport,
    UsageTotal,
)
from schemas.events import AnyJobEvent
from schemas.ids import JobId, UserName
from schemas.jobs import JobSummary
from schemas.roster import Role

_summaries = msgspec.json.Decoder(list[JobSummary])

PAGE_BUDGET = 2 * 1024 * 1024
"""Encoded summaries per page, at most: half the bus's 4 MiB message limit."""


class Queries:
    """Answers ListJobs, GetJob and ListOffers (``offers`` makes the gates' offers now)."""

    def __init__(
        self,
        store: Store,
        offers: Callable[[], tuple[GateOffer, ...]],
        accounts: Callable[[], Accounts] = Accounts,
    ) -> None:
        self.store = store
        self.offers = offers
        self.accounts = accounts  # the accounts file as core last read it

    async def handle(self, msg: Incoming[AnyQuery]) -> AnyReply:
        query = msg.body
        what = subjects.parse(msg.subject).a
        if what != subjects.QUERY_OF[type(query)]:
            return Rejected(
                to=query.id, code=RejectCode.BAD_REQUEST, detail=f"{type(query).__name__} on {what}"
            )
        only = msg.sender.name if msg.sender.role is Role.USER else None
        match query:
            case ListJobs():
                return await self.list_jobs(query, only)
            case GetJob():
                return await self.get_job(query, only)
            case ListOffers():
                return OfferList(to=query.id, gates=self.offers())
            case GetUsage():
                return await self.usage(query, only)
            case _:
                assert_never(query)

    async def list_jobs(self, query: ListJobs, only: str | None) -> AnyReply:
        """A page of summaries in job id order; ``only`` restricts a user to their own jobs."""
        user = query.user
        if only is not None:
            if user is not None and user != only:
                return Rejected(
                    to=query.id, code=RejectCode.NOT_OWNER, detail="users list only their own jobs"
                )
            user = UserName(only)
        after = 0 if query.after is None else job_number(query.after)
        if after is None:
            return Rejected(
                to=query.id, code=RejectCode.BAD_REQUEST, detail="after must be a job id"
            )
        rows = await self.store.run_read(
            self.store.list_jobs,
            query.states,
            query.include_finished,
            user,
            query.name,
            after,
            query.limit,
        )
        page = _fill(rows, query.limit, PAGE_BUDGET)
        jobs = _summaries.decode(b"[" + b",".join(page) + b"]")
        next_after = jobs[-1].job_id if len(page) < len(rows) and jobs else None
        return JobPage(to=query.id, jobs=tuple(jobs), next_after=next_after)

    async def get_job(self, query: GetJob, only: str | None) -> AnyReply:
        """One job with its spec, allocation, outputs and full history of transitions."""
        events: list[AnyJobEvent] = []
        if job_number(query.job_id) is not None:
            events = await self.store.run_read(self.store.job_events, JobId(query.job_id))
        job, steps = history(events)
        if job is None:
            return Rejected(
                to=query.id, code=RejectCode.UNKNOWN_JOB, detail=f"no job {query.job_id}"
            )
        if only is not None and job.owner != only:
            return Rejected(
                to=query.id, code=RejectCode.NOT_OWNER, detail=f"job {job.job_id} is not yours"
            )
        return JobDetail(
            to=query.id,
            summary=summary(job),
            spec=job.spec,
            allocation=job.allocation,
            outputs=job.outputs,
            history=steps,
        )

    async def usage(self, query: GetUsage, only: str | None) -> AnyReply:
        """Spend per user and account in the period; ``only`` keeps a user to their own."""
        if only is not None and query.user is not None and query.user != only:
            return Rejected(
                to=query.id, code=RejectCode.NOT_OWNER, detail="users see only their own usage"
            )
        owner = only if only is not None else query.user
        rows = await self.store.run_read(self.store.usage_totals, query.since, query.until, owner)
        totals = tuple(
            UsageTotal(owner=UserName(o), account=a, jobs=n, node_hours=h, cost=c)
            for o, a, n, h, c in rows
        )
        budgets = await self._budgets(owner)
        return UsageReport(
            to=query.id, since=query.since, until=query.until, totals=totals, budgets=budgets
        )

    async def _budgets(self, user: str | None) -> tuple[BudgetStatus, ...]:
        """The caps ``user`` is under (their own, their accounts'; None: every cap)."""
        accounts, now = self.accounts(), time.time()
        caps = [
            ("user", name, entry.budget)
            for name, entry in sorted(accounts.users.items())
            if entry.budget is not None and user in (None, name)
        ] + [
            ("account", name, entry.budget)
            for name, entry in sorted(accounts.accounts.items())
            if entry.budget is not None and (user is None or user in entry.members)
        ]
        out = []
        for scope, name, budget in caps:
            since = period_start(budget.period, now)
            spent = await self.store.run_read(self.store.spent_since, scope, name, since)
            out.append(
                BudgetStatus(
                    scope=scope,
                    name=name,
                    limit=budget.limit,
                    period=budget.period.value,
                    since=since,
                    spent=spent,
                )
            )
        return tuple(out)


def _fill(rows: list[bytes], limit: int, budget: int) -> list[bytes]:
    """The first rows of a page: at most ``limit``, and at least one but no more than fit
    ``budget`` bytes, so that a page of long names still goes out in one message."""
    size = 0
    for i, row in enumerate(rows[:limit]):
        size += len(row) + 1
        if size > budget and i > 0:
            return rows[:i]
    return rows[:limit]
