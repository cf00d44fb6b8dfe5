"""The optimiser: the window snapshot, the greedy simulation, the objective, CP-SAT's plans
and the advice they become. Pure tests (CP-SAT runs in process), tables and hypothesis."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from benchmarks.optimizer_bench import NOW as BENCH_NOW
from benchmarks.optimizer_bench import build_view
from scheduler.advice import NO_ADVICE, Advice, Planned, Status
from scheduler.capacity import Need
from scheduler.optimizer import SolveOptions, cp_sat, prepare, solve
from scheduler.policy import Waiting, plan
from scheduler.schedule import ObjectiveWeights, Start, objective, simulate
from scheduler.view import View
from scheduler.window import Instance, snapshot
from schemas.commands import Placement
from schemas.events import JobCompleted, JobHeld
from schemas.ids import GateName, JobId, UserName
from schemas.jobs import Dependency, DependencyKind, PendingReason
from tests.scheduler.factories import (
    NOW,
    allocation_on,
    capacity,
    event_id,
    node,
    scheduled,
    submitted,
    view_of,
)
from tests.scheduler.test_policy_properties import views

QUICK = SolveOptions(time_limit_s=1.0)
PATIENT = ObjectiveWeights(wait_per_hour=1.0)  # an hour's wait worth 1: the hand-made figures
CHEAP, DEAR = GateName("cheap"), GateName("dear")


def _busy_cheap_gate(ends_in_s: int = 600) -> View:
    """Gate ``cheap`` (free) is busy until NOW + ``ends_in_s``; gate ``dear`` (100 an hour)
    is idle; job 2 needs a whole node for an hour."""
    a = node("a", cpus=8, price=0.0)
    running = Placement(
        job_id=JobId("1"), attempt=1, allocation=allocation_on("cheap", (a, 8, 0, ()))
    )
    return view_of(
        capacity("cheap", a),
        capacity("dear", node("d", cpus=8, price=100.0)),
        events=(
            submitted("1", cpus_per_task=8, time_limit_s=ends_in_s),
            scheduled(running, at=NOW),
            submitted("2", cpus_per_task=8, time_limit_s=3600),
        ),
    )


# -- the solve -------------------------------------------------------------------------------


def test_waiting_ten_minutes_for_a_free_gate_beats_a_dear_gate_now() -> None:
    instance = snapshot(_busy_cheap_gate(), NOW)
    [start] = simulate(instance).values()
    assert (start.at, start.gate, start.cost) == (NOW, DEAR, 100.0)  # greedy never waits
    advice = solve(instance, PATIENT, SolveOptions(time_limit_s=1.0, advice_ttl_s=3600))
    assert advice.status is Status.IMPROVED
    assert advice.greedy.objective == 100.0
    assert advice.advised.cost == 0.0 and advice.advised.mean_wait_s == 600.0
    assert math.isclose(advice.advised.objective, 600 / 3600)
    assert advice.planned == {JobId("2"): Planned(NOW + 600, CHEAP)}
    assert advice.defers(JobId("2"), NOW) and advice.defers(JobId("2"), NOW + 599)
    assert not advice.defers(JobId("2"), NOW + 600)
    assert advice.gate_for(JobId("2"), NOW + 600) == CHEAP
    assert advice.gain_pct > 99


def test_a_dear_gate_now_beats_a_long_wait_when_waiting_is_worth_more() -> None:
    instance = snapshot(_busy_cheap_gate(ends_in_s=86_400), NOW)
    urgent = ObjectiveWeights(wait_per_hour=10.0)  # a day's wait is worth 240, the dear gate 100
    advice = solve(instance, urgent, QUICK)
    assert advice.status is Status.NO_GAIN
    assert advice.planned == {} and not advice.defers(JobId("2"), NOW)
    assert advice.advised == advice.greedy


def test_a_short_job_goes_first_when_that_saves_waiting() -> None:
    """One free node; greedy starts job 1 (an hour) first, so job 2 (ten minutes) waits an
    hour. The other way round job 1 waits ten minutes: less waiting, same cost."""
    view = view_of(
        capacity("local", node("a", cpus=8)),
        events=(
            submitted("1", cpus_per_task=8, time_limit_s=3600),
            submitted("2", cpus_per_task=8, time_limit_s=600),
        ),
    )
    advice = solve(snapshot(view, NOW), PATIENT, QUICK)
    assert advice.status is Status.IMPROVED
    assert advice.defers(JobId("1"), NOW) and not advice.defers(JobId("2"), NOW)
    assert math.isclose(advice.advised.objective, 600 / 3600)
    assert math.isclose(advice.greedy.objective, 1.0)


def test_solve_is_skipped_when_greedy_starts_everything_now_at_its_lowest_cost() -> None:
    view = view_of(
        capacity("cheap", node("a", cpus=8, price=1.0), node("b", cpus=8, price=1.0)),
        capacity("dear", node("d", cpus=8, price=5.0)),
        events=(submitted("1", cpus_per_task=4), submitted("2", nodes=2, cpus_per_task=2)),
    )
    advice = solve(snapshot(view, NOW), options=QUICK)
    assert advice.status is Status.GREEDY_OPTIMAL
    assert advice.solver_status == "" and advice.planned == {}
    assert advice.greedy.cost == 1.0 * 0.5 + 2 * 1.0 * 0.25


def test_an_empty_window_needs_no_solve() -> None:
    advice = solve(snapshot(view_of(capacity("local", node("a"))), NOW), options=QUICK)
    assert advice.status is Status.EMPTY and advice.planned == {}


def test_the_time_limit_holds_on_a_200_job_window() -> None:
    instance = snapshot(build_view(), BENCH_NOW)
    assert len(instance.jobs) == 200
    started = time.perf_counter()
    advice = solve(instance, options=SolveOptions(time_limit_s=0.5))
    assert time.perf_counter() - started < 5.0  # a sanity bound; the benchmark measures
    assert advice.status is Status.IMPROVED  # the benchmark's instance always has a gain
    assert advice.advised.objective < advice.greedy.objective


# -- the advice ------------------------------------------------------------------------------


def test_advice_expires() -> None:
    planned = {JobId("1"): Planned(NOW + 100, CHEAP)}
    advice = Advice(status=Status.IMPROVED, made_at=NOW, valid_until=NOW + 30, planned=planned)
    assert advice.defers(JobId("1"), NOW + 29) and advice.gate_for(JobId("1"), NOW) == CHEAP
    assert not advice.defers(JobId("1"), NOW + 30) and advice.gate_for(JobId("1"), NOW + 30) is None
    assert not advice.defers(JobId("2"), NOW) and advice.gate_for(JobId("2"), NOW) is None
    assert not NO_ADVICE.defers(JobId("1"), NOW)


def test_a_plan_holds_a_job_back_and_keeps_it_to_its_gate() -> None:
    instance = snapshot(_busy_cheap_gate(), NOW)
    job = JobId("2")
    replay = simulate(instance, {job: Planned(NOW + 60, DEAR)})
    assert (replay[job].at, replay[job].gate) == (NOW + 60, DEAR)
    replay = simulate(instance, {job: Planned(NOW, CHEAP)})  # cheap is busy until NOW + 600
    assert (replay[job].at, replay[job].gate) == (NOW + 600, CHEAP)


# -- the objective ---------------------------------------------------------------------------


def test_objective_weighs_waits_by_priority_and_adds_cost() -> None:
    view = view_of(
        capacity("local", node("a", cpus=8)),
        events=(submitted("1"), submitted("2", priority=100), submitted("3", priority=-200)),
    )
    instance = snapshot(view, NOW)
    gate = GateName("local")
    schedule = {
        JobId("1"): Start(NOW + 3600, gate, (), 1.0),
        JobId("2"): Start(NOW + 3600, gate, (), 2.0),
        JobId("3"): Start(NOW + 7200, gate, (), 0.0),
    }
    score = objective(instance, schedule, ObjectiveWeights(wait_per_hour=3.0, cost=2.0))
    assert score.objective == 3.0 * (1 + 2 + 0.25 * 2) + 2.0 * 3.0
    assert score.cost == 3.0 and score.mean_wait_s == 4800.0


# -- the snapshot ----------------------------------------------------------------------------


def test_snapshot_takes_the_placeable_jobs_in_greedy_order_up_to_the_window() -> None:
    view = view_of(
        capacity("local", node("a", cpus=8)),
        events=(
            submitted("1"),
            submitted("2", priority=5),
            submitted("3"),  # held
            submitted("4"),  # excluded
            submitted("5"),  # in flight
            submitted("6", cpus_per_task=99),  # no gate could ever hold it
            submitted(
                "7", dependencies=(Dependency(kind=DependencyKind.AFTEROK, job_id=JobId("1")),)
            ),
            submitted("8"),  # its budget is spent (the last pass said so)
            submitted("9"),
            submitted("10"),
        ),
    )
    view.apply_job_event(JobHeld(event_id=event_id(), job_id=JobId("3"), at=NOW, by=UserName("a")))
    flight = plan(view, NOW)[0]
    in_flight = {JobId("5"): Placement(job_id=JobId("5"), attempt=1, allocation=flight.allocation)}
    waiting = {JobId("8"): Waiting(PendingReason.BUDGET, "spent")}
    instance = snapshot(view, NOW, in_flight, {JobId("4")}, waiting=waiting, window=3)
    assert [j.job_id for j in instance.jobs] == ["2", "1", "9"]
    assert [r.end for r in instance.held] == [NOW + 3600]  # the in-flight job's limit


def test_snapshot_does_not_follow_later_changes_of_the_view() -> None:
    view = _busy_cheap_gate()
    instance, same = snapshot(view, NOW), snapshot(view, NOW)
    view.apply_job_event(JobCompleted(event_id=event_id(), job_id=JobId("1"), at=NOW, attempt=1))
    view.apply_job_event(submitted("3"))
    view.apply_gate_event(capacity("dear", node("d", cpus=64, price=1.0)))
    assert instance == same
    assert snapshot(view, NOW) != instance


async def test_a_solve_in_a_worker_thread_is_unaffected_by_the_view_moving_on() -> None:
    view = _busy_cheap_gate()
    instance = snapshot(view, NOW)
    solving = asyncio.create_task(asyncio.to_thread(solve, instance, None, QUICK))
    for n in range(3, 50):  # the service keeps folding events meanwhile
        view.apply_job_event(submitted(str(n), cpus_per_task=8))
    advice = await solving
    assert advice.planned == {JobId("2"): Planned(NOW + 600, CHEAP)}


# -- invariants ------------------------------------------------------------------------------


def _overlap_free(instance: Instance, schedule: dict[JobId, Start]) -> None:
    """Brute force: at every start, no node holds more than it has, no GPU is given twice."""
    shapes = {(g.gate, n.name): n for g in instance.gates for n in g.nodes}
    durations = {j.job_id: j.duration_s for j in instance.jobs}
    runs = [(instance.now, r.end, r.gate, r.shares) for r in instance.held]
    runs += [(s.at, s.at + durations[j], s.gate, s.shares) for j, s in schedule.items()]
    for moment in {s.at for s in schedule.values()}:
        used: dict[tuple[GateName, str], list[int]] = defaultdict(lambda: [0, 0])
        gpus: set[tuple[GateName, str, int]] = set()
        for begin, end, gate, shares in runs:
            if not begin <= moment < end:
                continue
            for share in shares:
                u = used[(gate, share.node)]
                u[0] += share.cpus
                u[1] += share.memory_mb
                for gpu in share.gpus:
                    assert (gate, share.node, gpu) not in gpus
                    gpus.add((gate, share.node, gpu))
        for key, (cpus, memory) in used.items():
            assert cpus <= shapes[key].cpus and memory <= shapes[key].memory_mb


def _aggregate_ok(instance: Instance, plan: dict[JobId, Planned], step: int) -> None:
    """Brute force: at every step, what a gate runs fits its total cpus, memory and GPUs."""
    totals = {
        g.gate: [
            sum(n.cpus for n in g.nodes),
            sum(n.memory_mb for n in g.nodes),
            sum(n.gpus for n in g.nodes),
        ]
        for g in instance.gates
    }
    jobs = {j.job_id: j for j in instance.jobs}
    for moment in {p.start for p in plan.values()}:
        used: dict[GateName, list[int]] = defaultdict(lambda: [0, 0, 0])
        for release in instance.held:
            if release.end > moment:
                for s in release.shares:
                    u = used[release.gate]
                    u[0], u[1], u[2] = u[0] + s.cpus, u[1] + s.memory_mb, u[2] + len(s.gpus)
        for jid, p in plan.items():
            job = jobs[jid]
            if p.start <= moment < p.start + job.duration_s:
                n, need = job.spec.nodes, job.need
                u = used[p.gate]
                u[0], u[1], u[2] = (
                    u[0] + n * need.cpus,
                    u[1] + n * need.memory_mb,
                    u[2] + n * need.gpus,
                )
        for gate, u in used.items():
            assert all(a <= b for a, b in zip(u, totals[gate], strict=True)), (gate, moment)


def _gang_ok(instance: Instance, schedule: dict[JobId, Start]) -> None:
    shapes = {(g.gate, n.name): n for g in instance.gates for n in g.nodes}
    for job in instance.jobs:
        start = schedule[job.job_id]
        assert job.spec.gate in (None, start.gate)
        assert len({s.node for s in start.shares}) == len(start.shares) == job.spec.nodes
        assert all(Need(s.cpus, s.memory_mb, len(s.gpus)) == job.need for s in start.shares)
        assert all((start.gate, s.node) in shapes for s in start.shares)


SMALL: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "nodes": st.integers(1, 2),
        "tasks_per_node": st.integers(1, 4),
        "cpus_per_task": st.integers(1, 2),
        "memory_mb_per_node": st.sampled_from((0, 4000)),
        "gpus_per_node": st.sampled_from((0, 0, 1)),
        "time_limit_s": st.sampled_from((100, 1000, 3600)),
        "priority": st.integers(0, 2),
    }
)


@st.composite
def bursting(draw: st.DrawFn) -> View:
    """A free gate that running jobs keep busy for a while and an idle dear one, with a
    queue that fits either: the trade the optimiser is for, on a small scale."""
    view = View()
    for gate, price in (("cheap", 0.0), ("dear", draw(st.sampled_from((0.5, 5.0, 50.0))))):
        shapes = [
            node(
                f"{gate}{i}",
                cpus=draw(st.integers(4, 8)),
                gpus=draw(st.integers(0, 1)),
                price=price,
            )
            for i in range(draw(st.integers(1, 3)))
        ]
        view.apply_gate_event(capacity(gate, *shapes))
    number = 0
    for fields in draw(st.lists(SMALL, min_size=1, max_size=6)):
        number += 1
        view.apply_job_event(submitted(str(number), gate=CHEAP, **fields))
    for placement in plan(view, NOW):
        view.apply_job_event(scheduled(placement, at=NOW - draw(st.sampled_from((0, 60, 600)))))
    for fields in draw(st.lists(SMALL, min_size=1, max_size=10)):
        number += 1
        view.apply_job_event(submitted(str(number), **fields))
    return view


WEIGHTS = st.sampled_from(
    (ObjectiveWeights(), ObjectiveWeights(wait_per_hour=0.1), ObjectiveWeights(cost=0.0))
)
"""The defaults; waiting cheap (trades are common on the small instances); cost ignored."""


@settings(max_examples=100, deadline=None)
@given(st.one_of(bursting(), views()), WEIGHTS)
def test_cp_sat_plans_never_over_commit_a_gate(view: View, weights: ObjectiveWeights) -> None:
    grid = snapshot(view, NOW).on_grid(QUICK.step_s)
    if not grid.jobs:
        return
    relaxation, hint, _ = prepare(grid, weights, QUICK)
    status, found = cp_sat(relaxation, hint, QUICK, time.perf_counter() + 1.0)
    assert found is not None, status
    event(status)
    _aggregate_ok(grid, found, QUICK.step_s)
    for job in grid.jobs:  # gate constraints: only gates that could hold it
        gate = found[job.job_id].gate
        assert job.spec.gate in (None, gate)
        nodes = next(g.nodes for g in grid.gates if g.gate == gate)
        assert (
            sum(1 for n in nodes if job.need.within(n.cpus, n.memory_mb, n.gpus)) >= job.spec.nodes
        )


@settings(max_examples=150, deadline=None)
@given(st.one_of(bursting(), views()), WEIGHTS)
def test_advice_replays_fit_node_by_node_and_never_lose_to_greedy(
    view: View, weights: ObjectiveWeights
) -> None:
    instance = snapshot(view, NOW)
    advice = solve(instance, weights, QUICK)
    event(advice.status)
    replay = simulate(instance, advice.planned)
    assert set(replay) == {j.job_id for j in instance.jobs}
    _overlap_free(instance, replay)
    _gang_ok(instance, replay)
    assert advice.advised.objective <= advice.greedy.objective
    assert objective(instance, replay, weights) == advice.advised


def _before_any_end(view: View) -> float:
    return min([NOW, *(j.expected_end - 1 for j in view.active.values())])


@settings(max_examples=300, deadline=None)
@given(views())
def test_the_simulation_starts_now_what_the_greedy_pass_places(view: View) -> None:
    now = _before_any_end(view)  # a job past its limit would end "now" in the simulation
    instance = snapshot(view, now, window=1000)
    starts = {j: (s.gate, s.shares) for j, s in simulate(instance).items() if s.at == now}
    placed = {p.job_id: (p.allocation.gate, p.allocation.nodes) for p in plan(view, now)}
    assert starts == placed


@settings(max_examples=200, deadline=None)
@given(views(), st.integers(0, 3))
def test_greedy_schedules_fit_node_by_node(view: View, window: int) -> None:
    instance = snapshot(view, NOW, window=window * 4)
    schedule = simulate(instance)
    assert set(schedule) == {j.job_id for j in instance.jobs}
    _overlap_free(instance, schedule)
    _gang_ok(instance, schedule)
