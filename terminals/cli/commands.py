"""Request/reply commands: jobs, show, offers, usage, cancel, requeue, hold, release. Quick
path only.

These never import ``nats`` or asyncio: ``skyport jobs`` must answer as fast as a person types.
"""

from __future__ import annotations

import argparse
import sys

from schemas.commands import Accepted, JobDetail, JobPage, OfferList, UsageReport
from schemas.ids import JobId
from schemas.jobs import JobState, JobSummary
from terminals.cli import render
from terminals.cli.context import Context
from terminals.client import requests
from terminals.client.errors import RejectedError

PAGE = 2000


def list_all(ctx: Context, args: argparse.Namespace) -> list[JobSummary]:
    states = tuple(JobState(s) for s in args.state or ())
    user = None if args.all_users else (args.user_filter or ctx.user)
    found: list[JobSummary] = []
    after: JobId | None = None
    while True:
        query = requests.list_jobs(states, args.all, user, args.name, after, PAGE)
        page = ctx.ask(query, JobPage)
        found.extend(page.jobs)
        if page.next_after is None or not page.jobs:
            return found
        after = page.next_after


def jobs(ctx: Context, args: argparse.Namespace) -> int:
    found = list_all(ctx, args)
    print(render.to_json(found) if args.json else render.jobs_table(found))
    return 0


def show(ctx: Context, args: argparse.Namespace) -> int:
    detail = ctx.ask(requests.get_job(args.job), JobDetail)
    print(render.to_json(detail) if args.json else render.job_detail(detail))
    return 0


def offers(ctx: Context, args: argparse.Namespace) -> int:
    """What every gate offers: nodes, what is free of them, and their price per node-hour."""
    gates = ctx.ask(requests.list_offers(), OfferList).gates
    print(render.to_json(gates) if args.json else render.offers_table(gates))
    return 0


def usage(ctx: Context, args: argparse.Namespace) -> int:
    """Spend per user and account over a period (yours, unless an admin asks for more)."""
    user = None if args.all_users else (args.user_filter or ctx.user)
    query = requests.get_usage(args.since, args.until, user)
    report = ctx.ask(query, UsageReport)
    print(render.to_json(report) if args.json else render.usage_table(report))
    return 0


def control(ctx: Context, args: argparse.Namespace) -> int:
    """cancel/requeue/hold/release of one or more jobs; exit 1 if any was refused."""
    failed = 0
    for job_id in args.jobs:
        try:
            reply = ctx.ask(requests.job_command(args.command, job_id), Accepted)
        except RejectedError as exc:  # a refusal; an unreachable core ends the command (3)
            if len(args.jobs) == 1:
                raise
            print(f"skyport: {job_id}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not args.quiet:
            print(
                f"{job_id}: {args.command} accepted"
                + (f" ({reply.detail})" if reply.detail else "")
            )
    return 1 if failed else 0
