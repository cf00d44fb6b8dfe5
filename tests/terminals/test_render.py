"""Rendering: tables for people, JSON for programs."""

from __future__ import annotations

import json

from schemas.commands import (
    BudgetStatus,
    GateOffer,
    JobDetail,
    NodeOffer,
    UsageReport,
    UsageTotal,
)
from schemas.ids import GateName, JobId, MessageId, UserName
from schemas.jobs import JobSpec, JobState, JobSummary, NodeShape, Transition
from terminals.cli import render

JOB = JobSummary(
    job_id=JobId("42"),
    owner=UserName("alice"),
    name="train",
    state=JobState.PENDING,
    reason="resources",
    nodes=2,
    submitted_at=1_700_000_000.0,
)


def test_table_aligns_columns_without_trailing_blanks() -> None:
    text = render.table(("A", "BB"), [["xxx", "y"], ["z", ""]])
    assert text.splitlines() == ["A    BB", "xxx  y", "z"]


def test_jobs_table_shows_state_with_reason() -> None:
    lines = render.jobs_table([JOB]).splitlines()
    assert lines[0].split()[:4] == ["JOBID", "NAME", "USER", "STATE"]
    assert lines[1].split()[:4] == ["42", "train", "alice", "pending(resources)"]


def test_empty_listing_says_so() -> None:
    assert render.jobs_table([]) == "no jobs"


def test_json_is_the_schema_encoding() -> None:
    data = json.loads(render.to_json([JOB]))
    assert data[0]["job_id"] == "42" and data[0]["state"] == "pending"


def test_duration_is_slurm_style() -> None:
    assert render.duration(26 * 3600 + 61) == "1-02:01:01"
    assert render.duration(59) == "00:00:59"


def test_detail_has_the_history() -> None:
    detail = JobDetail(
        to=MessageId("q"),
        summary=JOB,
        spec=JobSpec(script="true", nodes=2),
        history=(
            Transition(seq=1, at=1.0, event="job_submitted", state=JobState.PENDING, detail="hi"),
        ),
    )
    text = render.job_detail(detail)
    assert "History:" in text
    assert "job_submitted" in text and "2 node(s)" in text


def test_offers_table_shows_free_over_total_price_and_state() -> None:
    shape = NodeShape(name="n0", cpus=8, memory_mb=1000, gpus=2, price_per_hour=0.75)
    up = GateOffer(
        gate=GateName("cheap"),
        live=True,
        last_seen=1.0,
        nodes=(NodeOffer(node=shape, used_cpus=3, used_memory_mb=200, used_gpus=1),),
    )
    down = GateOffer(
        gate=GateName("gone"), live=False, last_seen=0.0, nodes=(NodeOffer(node=shape),)
    )
    lines = render.offers_table([up, down]).splitlines()
    assert lines[0].split() == ["GATE", "NODE", "CPUS", "MEMORY_MB", "GPUS", "PRICE/H", "STATE"]
    assert lines[1].split() == ["cheap", "n0", "5/8", "800/1000", "1/2", "0.75", "up"]
    assert lines[2].split()[:7] == ["gone", "n0", "8/8", "1000/1000", "2/2", "0.75", "down"]
    assert render.offers_table([]) == "no gates have reported"


def test_usage_table_sums_every_row_and_names_the_period() -> None:
    report = UsageReport(
        to=MessageId("q"),
        since=None,
        until=None,
        totals=(
            UsageTotal(owner=UserName("alice"), account="physics", jobs=2, node_hours=1.5, cost=3),
            UsageTotal(owner=UserName("bob"), account="bob", jobs=1, node_hours=0.25, cost=0.5),
        ),
    )
    lines = render.usage_table(report).splitlines()
    assert lines[0] == "usage from the start to now"
    assert lines[1].split() == ["USER", "ACCOUNT", "JOBS", "NODE_HOURS", "COST"]
    assert lines[2].split() == ["alice", "physics", "2", "1.5000", "3.00"]
    assert lines[-1].split() == ["total", "3", "1.7500", "3.50"]
    empty = UsageReport(to=MessageId("q"), since=None, until=None)
    assert render.usage_table(empty) == "usage from the start to now: nothing used"


def test_usage_lists_the_budgets_with_what_is_left() -> None:
    report = UsageReport(
        to=MessageId("q"),
        budgets=(
            BudgetStatus(
                scope="account", name="physics", limit=50, period="total", since=0, spent=12.5
            ),
            BudgetStatus(scope="user", name="alice", limit=10, period="month", since=0, spent=11.0),
        ),
    )
    text = render.usage_table(report)
    assert "nothing used" in text
    lines = text.splitlines()
    assert lines[-2].split() == ["account", "physics", "50/total", "the", "start", "12.50", "37.50"]
    assert lines[-1].split()[-2:] == ["11.00", "0.00"]  # overspent shows nothing left
