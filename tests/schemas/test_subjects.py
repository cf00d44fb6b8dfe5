"""Subjects are built and parsed in one place; tokens cannot smuggle wildcards."""

from __future__ import annotations

import pytest

from schemas import subjects
from schemas.ids import InvalidTokenError
from schemas.subjects import CoreVerb, Kind, LogStream, parse


@pytest.mark.parametrize(
    ("subject", "kind", "tokens"),
    [
        (subjects.core_command(CoreVerb.SUBMIT), Kind.CORE_COMMAND, ("submit", "", "")),
        (
            subjects.job_event("alice", "12", "job_submitted"),
            Kind.JOB_EVENT,
            ("alice", "12", "job_submitted"),
        ),
        (subjects.gate_command("local", "start"), Kind.GATE_COMMAND, ("local", "start", "")),
        (subjects.gate_event("local", "run_ended"), Kind.GATE_EVENT, ("local", "run_ended", "")),
        (
            subjects.log("alice", "12", "local", LogStream.STDOUT),
            Kind.LOG,
            ("alice", "12", "local"),
        ),
        ("_INBOX.alice.abc.def", Kind.INBOX, ("alice", "", "")),
        ("_INBOX.alice", Kind.OTHER, ("", "", "")),  # no token: not a reply subject
        ("_INBOX.a.b", Kind.INBOX, ("a", "", "")),
        ("_INBOX.a*.b", Kind.OTHER, ("", "", "")),
        ("skyport.v1.cmd.core", Kind.OTHER, ("", "", "")),
        ("other.thing", Kind.OTHER, ("", "", "")),
    ],
)
def test_subjects_round_trip_through_parse(
    subject: str, kind: Kind, tokens: tuple[str, ...]
) -> None:
    parsed = parse(subject)
    assert parsed.kind is kind
    assert (parsed.a, parsed.b, parsed.c) == tokens


@pytest.mark.parametrize("bad", ["", "a.b", "*", ">", "a b", "x" * 65, "ä"])
def test_variable_tokens_are_validated(bad: str) -> None:
    with pytest.raises(InvalidTokenError):
        subjects.job_event(bad, "1", "job_submitted")
    with pytest.raises(InvalidTokenError):
        subjects.gate_command(bad, "start")


def test_job_event_filters_narrow_by_owner_job_and_kind() -> None:
    assert subjects.job_events_of() == "skyport.v1.evt.job.*.*.*"
    assert subjects.job_events_of("alice", tag="job_completed") == (
        "skyport.v1.evt.job.alice.*.job_completed"
    )
    assert subjects.job_events_of("alice", "12") == "skyport.v1.evt.job.alice.12.*"
    with pytest.raises(InvalidTokenError):
        subjects.job_events_of("alice", tag="a.b")


def test_a_gates_own_subjects_are_filters_on_its_name() -> None:
    assert subjects.gate_events_of("local") == "skyport.v1.evt.gate.local.*"
    assert subjects.logs_from("local") == "skyport.v1.log.*.*.local.*"
    with pytest.raises(InvalidTokenError):
        subjects.logs_from("a.b")
