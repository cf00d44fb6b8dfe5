"""Greedy priority + FIFO + EASY backfill: pure table tests of ``plan``."""

from __future__ import annotations

import pytest

from scheduler.policy import plan
from scheduler.view import View
from schemas.commands import Placement
from schemas.events import JobCancelled, JobCompleted, JobFailed, JobHeld, JobRequeued
from schemas.ids import GateName, JobId, UserName
from schemas.jobs import Dependency, DependencyKind, FailReason, JobState, NodeAllocation
from tests.scheduler.factories import (
    NOW,
    allocation_on,
    capacity,
    event_id,
    node,
    resolved,
    scheduled,
    submitted,
    view_of,
)

LOCAL = capacity("local", node("a", cpus=8), node("b", cpus=4), node("c", cpus=16))


def _placed(view: View, now: float = NOW, **kwargs: object) -> dict[str, Placement]:
    return {p.job_id: p for p in plan(view, now, **kwargs)}  # type: ignore[arg-type]


def test_job_gets_the_best_fitting_node_with_its_share() -> None:
    view = view_of(LOCAL, events=(submitted("1", cpus_per_task=2, memory_mb_per_node=500),))
    [placement] = plan(view, NOW)
    assert placement.job_id == "1" and placement.attempt == 1
    assert placement.allocation.gate == "local"
    assert placement.allocation.nodes == (
        NodeAllocation(node="b", host="host-b", cpus=2, memory_mb=500, gpus=()),
    )


def test_gpus_are_concrete_indices_not_in_use() -> None:
    gpu = node("g", cpus=8, gpus=4)
    busy = Placement(
        job_id=JobId("1"), attempt=1, allocation=allocation_on("local", (gpu, 1, 0, (0, 2)))
    )
    view = view_of(
        capacity("local", gpu),
        events=(submitted("1", gpus_per_node=2), scheduled(busy), submitted("2", gpus_per_node=2)),
    )
    [placement] = plan(view, NOW)
    assert placement.allocation.nodes[0].gpus == (1, 3)


def test_higher_priority_goes_first_even_if_submitted_later() -> None:
    view = view_of(
        capacity("local", node("a", cpus=4)),
        events=(submitted("1", cpus_per_task=4), submitted("2", cpus_per_task=4, priority=5)),
    )
    assert list(_placed(view)) == ["2"]


def test_equal_priority_is_fifo_by_numeric_job_id() -> None:
    view = view_of(
        capacity("local", node("a", cpus=4)),
        events=(submitted("10", cpus_per_task=4), submitted("9", cpus_per_task=4)),
    )
    assert list(_placed(view)) == ["9"]


def test_gang_job_gets_all_its_nodes_or_none() -> None:
    view = view_of(LOCAL, events=(submitted("1", nodes=3, cpus_per_task=5),))
    assert plan(view, NOW) == []  # only a and c have 5 cpus
    view = view_of(LOCAL, events=(submitted("1", nodes=3, cpus_per_task=4),))
    [placement] = plan(view, NOW)
    assert sorted(n.node for n in placement.allocation.nodes) == ["a", "b", "c"]


def test_gate_in_spec_restricts_the_gate() -> None:
    other = capacity("other", node("x", cpus=64))
    view = view_of(LOCAL, other, events=(submitted("1", cpus_per_task=32, gate=GateName("other")),))
    assert _placed(view)["1"].allocation.gate == "other"
    view = view_of(LOCAL, other, events=(submitted("1", gate=GateName("nowhere")),))
    assert plan(view, NOW) == []


def test_held_jobs_are_never_placed() -> None:
    view = view_of(LOCAL, events=(submitted("1"),))
    view.apply_job_event(JobHeld(event_id=event_id(), job_id=JobId("1"), at=NOW, by=UserName("a")))
    assert plan(view, NOW) == []


def test_gate_that_stopped_reporting_gets_nothing() -> None:
    view = view_of(
        capacity("local", node("a"), at=NOW - 31, interval_s=10), events=(submitted("1"),)
    )
    assert plan(view, NOW) == []


def test_job_that_can_never_fit_does_not_block_others() -> None:
    view = view_of(
        LOCAL,
        events=(
            submitted("1", priority=9, nodes=4),
            submitted("2", cpus_per_task=99),
            submitted("3"),
        ),
    )
    assert list(_placed(view)) == ["3"]


def test_in_flight_jobs_are_not_placed_again_and_hold_their_resources() -> None:
    view = view_of(
        capacity("local", node("a", cpus=4)),
        events=(submitted("1", cpus_per_task=4), submitted("2", cpus_per_task=4)),
    )
    first = plan(view, NOW)
    assert [p.job_id for p in first] == ["1"]
    assert plan(view, NOW, in_flight={JobId("1"): first[0]}) == []


def test_excluded_jobs_are_skipped() -> None:
    view = view_of(LOCAL, events=(submitted("1"), submitted("2")))
    assert list(_placed(view, excluded={JobId("1")})) == ["2"]


def test_requeued_job_is_placed_with_its_next_attempt() -> None:
    view = view_of(LOCAL, events=(submitted("1"),))
    [first] = plan(view, NOW)
    view.apply_job_event(scheduled(first))
    view.apply_job_event(
        JobRequeued(
            event_id=event_id(), job_id=JobId("1"), at=NOW, by=UserName("a"), restart_count=2
        )
    )
    [again] = plan(view, NOW)
    assert again.attempt == 3


def _backfill_view() -> View:
    """Two 8-cpu nodes; job 1 holds 6 cpus of node a until NOW + 100; job 2 needs both whole."""
    a, b = node("a", cpus=8), node("b", cpus=8)
    running = Placement(
        job_id=JobId("1"), attempt=1, allocation=allocation_on("local", (a, 6, 0, ()))
    )
    return view_of(
        capacity("local", a, b),
        events=(
            submitted("1", cpus_per_task=6, time_limit_s=100),
            scheduled(running, at=NOW),
            submitted("2", nodes=2, cpus_per_task=8, priority=5),
        ),
    )


@pytest.mark.parametrize(
    ("cpus", "time_limit_s", "placed"),
    [
        (8, 100, True),  # ends exactly when the reservation starts
        (8, 101, False),  # would hold node b past the reservation
        (2, 10_000, False),  # node a has 2 free now, but the reservation needs all of a
        (9, 10, False),  # fits no node at all: skipped
    ],
)
def test_backfill_never_delays_the_reservation(cpus: int, time_limit_s: int, placed: bool) -> None:
    view = _backfill_view()
    view.apply_job_event(submitted("3", cpus_per_task=cpus, time_limit_s=time_limit_s))
    assert ("3" in _placed(view)) is placed


def test_backfill_may_use_only_what_the_reservation_leaves_spare() -> None:
    a, b = node("a", cpus=8), node("b", cpus=8)
    running = Placement(
        job_id=JobId("1"),
        attempt=1,
        allocation=allocation_on("local", (a, 6, 0, ()), (b, 6, 0, ())),
    )
    view = view_of(
        capacity("local", a, b),
        events=(
            submitted("1", nodes=2, cpus_per_task=6, time_limit_s=100),
            scheduled(running, at=NOW),
            submitted("2", nodes=2, cpus_per_task=7, priority=5),  # a, b at NOW+100, 1 spare each
            submitted("3", cpus_per_task=2, time_limit_s=10_000),  # 2 free now, but only 1 spare
            submitted("4", time_limit_s=10_000),
            submitted("5", time_limit_s=10_000),
            submitted("6", time_limit_s=10_000),  # a cpu is free now, but nothing spare
        ),
    )
    assert sorted(_placed(view)) == ["4", "5"]


def test_jobs_behind_a_blocked_one_still_start_when_they_finish_in_time() -> None:
    view = _backfill_view()
    for n in range(3, 8):
        view.apply_job_event(submitted(str(n), cpus_per_task=1, time_limit_s=50))
    assert sorted(_placed(view)) == ["3", "4", "5", "6", "7"]


# -- prices ----------------------------------------------------------------------------------

DEAR = capacity("a-dear", node("d0", cpus=4, price=3.0), node("d1", cpus=4, price=3.0))
CHEAP = capacity("b-cheap", node("c0", cpus=4, price=1.0), node("c1", cpus=4, price=1.0))


def test_jobs_go_to_the_cheaper_gate_until_it_is_full_then_to_the_dearer() -> None:
    jobs = tuple(submitted(str(n), cpus_per_task=4) for n in range(1, 5))
    placed = _placed(view_of(DEAR, CHEAP, events=jobs))
    gates = [placed[str(n)].allocation.gate for n in range(1, 5)]
    assert gates == ["b-cheap", "b-cheap", "a-dear", "a-dear"]


def test_a_free_gate_beats_any_price_and_equal_prices_go_by_gate_name() -> None:
    free = capacity("z-free", node("f0", cpus=4))
    twin = capacity("c-twin", node("t0", cpus=4, price=1.0))
    jobs = (submitted("1", cpus_per_task=4), submitted("2", cpus_per_task=4))
    placed = _placed(view_of(CHEAP, twin, free, events=(*jobs, submitted("3", cpus_per_task=4))))
    assert placed["1"].allocation.gate == "z-free"
    assert [placed[j].allocation.gate for j in ("2", "3")] == ["b-cheap", "b-cheap"]


def test_a_multi_node_job_is_priced_by_all_its_nodes() -> None:
    mixed = capacity("a-mixed", node("m0", cpus=4, price=0.5), node("m1", cpus=4, price=4.0))
    view = view_of(mixed, CHEAP, events=(submitted("1", nodes=2, cpus_per_task=4),))
    [placement] = plan(view, NOW)
    assert placement.allocation.gate == "b-cheap"  # 2.0 an hour beats 4.5


def test_a_job_that_fits_only_the_dear_gate_now_is_not_kept_waiting_for_the_cheap() -> None:
    busy = Placement(
        job_id=JobId("1"),
        attempt=1,
        allocation=allocation_on(
            "b-cheap", (node("c0", cpus=4), 4, 0, ()), (node("c1", cpus=4), 4, 0, ())
        ),
    )
    events = (
        submitted("1", cpus_per_task=4, nodes=2),
        scheduled(busy),
        submitted("2", cpus_per_task=4),
    )
    assert _placed(view_of(DEAR, CHEAP, events=events))["2"].allocation.gate == "a-dear"


# -- dependencies ----------------------------------------------------------------------------


def _ended(job_id: str, how: str) -> JobCompleted | JobFailed | JobCancelled:
    eid, jid = event_id(), JobId(job_id)
    if how == "completed":
        return JobCompleted(event_id=eid, job_id=jid, at=NOW, attempt=1)
    if how == "failed":
        return JobFailed(event_id=eid, job_id=jid, at=NOW, attempt=1, reason=FailReason.EXIT_CODE)
    return JobCancelled(event_id=eid, job_id=jid, at=NOW, by=UserName("alice"))


@pytest.mark.parametrize(
    ("kind", "how", "starts"),
    [
        (DependencyKind.AFTEROK, "completed", True),
        (DependencyKind.AFTEROK, "failed", False),
        (DependencyKind.AFTERNOTOK, "failed", True),
        (DependencyKind.AFTERNOTOK, "cancelled", True),
        (DependencyKind.AFTERNOTOK, "completed", False),
        (DependencyKind.AFTERANY, "cancelled", True),
        (DependencyKind.AFTERANY, "completed", True),
    ],
)
def test_a_dependent_job_starts_only_once_its_dependency_ended_as_asked(
    kind: DependencyKind, how: str, starts: bool
) -> None:
    dep = Dependency(kind=kind, job_id=JobId("1"))
    waiting = view_of(LOCAL, events=(submitted("1"), submitted("2", dependencies=(dep,))))
    assert list(_placed(waiting)) == ["1"]  # job 1 has not ended: job 2 waits
    ended = view_of(
        LOCAL,
        events=(
            submitted("1"),
            _ended("1", how),
            submitted("2", dependencies=(dep,)),
            resolved("2", dep, JobState(how)),  # as core records it
        ),
    )
    assert ("2" in _placed(ended)) is starts


def test_a_waiting_dependent_job_takes_no_reservation_from_those_behind_it() -> None:
    a = node("a", cpus=4)
    busy = Placement(job_id=JobId("1"), attempt=1, allocation=allocation_on("local", (a, 2, 0, ())))
    dep = (Dependency(kind=DependencyKind.AFTEROK, job_id=JobId("1")),)
    view = view_of(
        capacity("local", a),
        events=(
            submitted("1", cpus_per_task=2, time_limit_s=600),
            scheduled(busy),  # job 1 runs on half the node for up to 10 minutes
            submitted("2", cpus_per_task=4, priority=9, dependencies=dep),  # waits for it
            submitted("3", cpus_per_task=2, time_limit_s=3600),  # would delay a reservation
        ),
    )
    # Job 2 cannot start before job 1 ends, so it must not reserve the node at that time:
    # job 3 fits the free half now and starts.
    assert list(_placed(view)) == ["3"]


def test_within_a_gate_the_cheapest_nodes_that_can_hold_a_job_are_taken() -> None:
    a = capacity("a", node("dearsmall", cpus=4, price=10.0), node("cheapbig", cpus=8, price=1.0))
    b = capacity("b", node("mid", cpus=4, price=5.0))
    [placement] = plan(view_of(a, b, events=(submitted("1", cpus_per_task=4),)), NOW)
    # half of cheapbig costs 0.5 an hour; best fit alone would take dearsmall at 10
    assert (placement.allocation.gate, placement.allocation.nodes[0].node) == ("a", "cheapbig")


def test_a_share_of_a_node_costs_that_part_of_its_price() -> None:
    big = capacity("big", node("b0", cpus=16, price=8.0))  # 2 cpus of it: 1.0 an hour
    small = capacity("small", node("s0", cpus=2, price=1.5))  # all of it: 1.5 an hour
    [placement] = plan(view_of(big, small, events=(submitted("1", cpus_per_task=2),)), NOW)
    assert placement.allocation.gate == "big"
