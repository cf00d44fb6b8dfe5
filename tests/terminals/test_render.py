"""Rendering: tables for people, JSON for programs."""

from __future__ import annotations

import json

from schemas.commands import JobDetail
from schemas.ids import JobId, MessageId, UserName
from schemas.jobs import JobSpec, JobState, JobSummary, Transition
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
