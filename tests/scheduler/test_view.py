"""The view folded from job events and gate heartbeats: pure given/when/then tests."""

from __future__ import annotations

from scheduler.view import View, fold
from schemas.commands import Placement
from schemas.events import (
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobHeld,
    JobReleased,
    JobRequeued,
    JobStarted,
    JobStopRequested,
)
from schemas.ids import GateName, JobId, UserName
from schemas.jobs import FailReason
from tests.scheduler.factories import (
    NOW,
    allocation_on,
    capacity,
    event_id,
    node,
    scheduled,
    submitted,
)

N1 = node("n1")
ALLOC = allocation_on("local", (N1, 2, 100, ()))
J1 = JobId("1")
LOCAL = GateName("local")
ADMIN = UserName("admin")


def _scheduled_view() -> View:
    return fold([submitted("1"), scheduled(Placement(job_id=J1, attempt=1, allocation=ALLOC))])


def test_submitted_job_is_pending_with_attempt_one() -> None:
    view = fold([submitted("1", priority=5)])
    job = view.pending[J1]
    assert (job.attempt, job.held, job.spec.priority, job.owner) == (1, False, 5, "alice")
    assert view.version == 1


def test_redelivered_submission_changes_nothing() -> None:
    event = submitted("1")
    view = fold([event])
    assert view.apply_job_event(event) is False
    assert view.version == 1


def test_held_job_is_marked_and_release_unmarks_it() -> None:
    view = fold([submitted("1")])
    view.apply_job_event(JobHeld(event_id=event_id(), job_id=J1, at=NOW, by=ADMIN))
    assert view.pending[J1].held
    view.apply_job_event(JobReleased(event_id=event_id(), job_id=J1, at=NOW, by=ADMIN))
    assert not view.pending[J1].held


def test_scheduled_job_becomes_active_with_its_allocation() -> None:
    view = _scheduled_view()
    assert J1 not in view.pending
    assert view.active[J1].allocation == ALLOC
    assert view.active[J1].expected_end == NOW + 3600


def test_started_moves_the_end_estimate_without_a_pass() -> None:
    view = _scheduled_view()
    changed = view.apply_job_event(
        JobStarted(event_id=event_id(), job_id=J1, at=NOW + 30, attempt=1)
    )
    assert changed is False
    assert view.active[J1].expected_end == NOW + 30 + 3600


def test_stop_requested_keeps_the_allocation_until_the_job_ends() -> None:
    view = _scheduled_view()
    view.apply_job_event(
        JobStopRequested(event_id=event_id(), job_id=J1, at=NOW, attempt=1, by=ADMIN)
    )
    assert view.active[J1].stopping
    view.apply_job_event(JobCancelled(event_id=event_id(), job_id=J1, at=NOW, by=ADMIN))
    assert J1 not in view.active and J1 not in view.pending


def test_completed_and_failed_free_the_allocation() -> None:
    done = _scheduled_view()
    done.apply_job_event(JobCompleted(event_id=event_id(), job_id=J1, at=NOW, attempt=1))
    assert not done.active
    failed = _scheduled_view()
    failed.apply_job_event(
        JobFailed(event_id=event_id(), job_id=J1, at=NOW, attempt=1, reason=FailReason.NODE_FAILURE)
    )
    assert not failed.active


def test_end_of_an_older_attempt_is_ignored() -> None:
    view = _scheduled_view()
    stale = JobCompleted(event_id=event_id(), job_id=J1, at=NOW, attempt=0)
    assert view.apply_job_event(stale) is False
    assert J1 in view.active


def test_requeued_job_is_pending_again_with_the_next_attempt() -> None:
    view = _scheduled_view()
    view.apply_job_event(
        JobRequeued(event_id=event_id(), job_id=J1, at=NOW, by=ADMIN, restart_count=1)
    )
    assert not view.active
    assert view.pending[J1].attempt == 2


def test_cancel_of_pending_job_removes_it() -> None:
    view = fold([submitted("1")])
    view.apply_job_event(JobCancelled(event_id=event_id(), job_id=J1, at=NOW, by=ADMIN))
    assert not view.pending


def test_gate_is_live_within_three_intervals() -> None:
    view = fold([], [capacity("local", N1, at=NOW, interval_s=10)])
    assert [g.gate for g in view.live_gates(NOW + 30)] == ["local"]
    assert view.live_gates(NOW + 30.1) == []


def test_older_heartbeat_does_not_replace_a_newer_one() -> None:
    view = fold([], [capacity("local", N1, at=NOW)])
    assert view.apply_gate_event(capacity("local", N1, node("n2"), at=NOW - 1)) is False
    assert view.gates[LOCAL].nodes == (N1,)


def test_same_heartbeat_again_is_not_worth_a_pass_but_a_revival_is() -> None:
    view = fold([], [capacity("local", N1, at=NOW)])
    assert view.apply_gate_event(capacity("local", N1, at=NOW + 10)) is False
    assert view.gates[LOCAL].last_seen == NOW + 10
    assert view.apply_gate_event(capacity("local", N1, at=NOW + 100)) is True


def test_duplicate_node_names_keep_the_first() -> None:
    view = fold([], [capacity("local", N1, node("n1", cpus=99))])
    assert view.gates[LOCAL].nodes == (N1,)
