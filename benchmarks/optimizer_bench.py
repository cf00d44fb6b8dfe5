"""Optimiser benchmark: CP-SAT against greedy on one 200-job window at a fixed time budget.

The instance is the cloud-bursting trade the optimiser is for: 1,000 nodes of mixed sizes in
four gates at different prices (``scheduler_bench``'s gates: a free pool, two clusters, a
dear cloud), the three cheap ones busy with running jobs that end over the next hours, the
cloud idle, and 200 pending jobs of every size. Greedy starts what it can now, on the cloud
if nothing cheaper has room; the optimiser may hold a job back for a cheap gate when the
wait is worth less than the money, or let a more valuable job go first. Both schedules are
priced by the same simulation and objective (``scheduler.schedule``).
``sched_list_objective`` is the optimiser's list schedule alone (CP-SAT's hint), so what
CP-SAT adds to it shows.

Prints one JSON line per figure. Seeded, so runs are comparable (CP-SAT stops on a wall-clock
budget, so its figures move a little from run to run). Run with
``python -m benchmarks.optimizer_bench``.
"""

from __future__ import annotations

import random
import time

from benchmarks.figures import emit
from benchmarks.scheduler_bench import _gates
from scheduler.optimizer import SolveOptions, solve
from scheduler.policy import plan
from scheduler.schedule import ObjectiveWeights
from scheduler.view import View
from scheduler.window import snapshot
from schemas.events import JobCancelled, JobCompleted, JobScheduled, JobSubmitted
from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import JobSpec

NOW = 1_000_000.0
BUDGET_S = 2.0
WINDOW = 200
CHEAP = (GateName("pool"), GateName("hpc-a"), GateName("hpc-b"))
USER = UserName("alice")


def _submitted(number: int, spec: JobSpec, at: float) -> JobSubmitted:
    return JobSubmitted(
        event_id=MessageId(f"s{number}"),
        job_id=JobId(str(number)),
        at=at,
        owner=USER,
        spec=spec,
    )


def _earlier(rng: random.Random, gate: GateName) -> JobSpec:
    """A job that ran before the window: whole nodes or big parts of them, 1-4 hours."""
    return JobSpec(
        script="true",
        nodes=rng.choice((1, 1, 2, 4)),
        tasks_per_node=rng.choice((8, 16, 32)),
        memory_mb_per_node=rng.choice((0, 8000, 32_000)),
        time_limit_s=rng.choice((1800, 3600, 7200, 10_800, 14_400)),
        gate=gate,
    )


def _pending(rng: random.Random) -> JobSpec:
    """A job of the window: one core to 8 nodes, 10 minutes to 4 hours, some urgent."""
    return JobSpec(
        script="true",
        nodes=rng.choice((1, 1, 1, 2, 4, 8)),
        tasks_per_node=rng.choice((1, 2, 4, 8, 16)),
        cpus_per_task=rng.choice((1, 1, 2)),
        memory_mb_per_node=rng.choice((0, 1000, 8000, 64_000)),
        gpus_per_node=rng.choice((0, 0, 0, 1, 2)),
        time_limit_s=rng.choice((600, 1800, 3600, 7200, 14_400)),
        priority=rng.choice((0, 0, 0, 10, 100)),
    )


def build_view(seed: int = 11, nodes: int = 1_000, window: int = WINDOW) -> View:
    """The cheap gates filled by jobs started over the last four hours; ``window`` pending."""
    rng = random.Random(seed)
    view = View()
    for gate in _gates(nodes):
        view.apply_gate_event(gate)
    number = 0
    for step in range(17):  # every 15 minutes over the last four hours, a new batch starts
        at = NOW - 4 * 3600 + step * 900 - 60
        _complete(view, at)
        for _ in range(300):
            number += 1
            view.apply_job_event(_submitted(number, _earlier(rng, rng.choice(CHEAP)), at))
        for placement in plan(view, at):
            view.apply_job_event(
                JobScheduled(
                    event_id=MessageId(f"p{placement.job_id}"),
                    job_id=placement.job_id,
                    at=at,
                    attempt=placement.attempt,
                    allocation=placement.allocation,
                    plan_id=PlanId("bench"),
                )
            )
        for job_id in list(view.pending):  # what did not start is withdrawn
            view.apply_job_event(
                JobCancelled(event_id=MessageId(f"x{job_id}"), job_id=job_id, at=at, by=USER)
            )
    _complete(view, NOW)
    for _ in range(window):
        number += 1
        view.apply_job_event(_submitted(number, _pending(rng), NOW))
    return view


def _complete(view: View, at: float) -> None:
    for job in [j for j in view.active.values() if j.expected_end <= at]:
        view.apply_job_event(
            JobCompleted(event_id=MessageId(f"c{job.job_id}"), job_id=job.job_id, at=at, attempt=1)
        )


def main() -> None:
    view = build_view()
    started = time.perf_counter()
    instance = snapshot(view, NOW, window=WINDOW)
    snapshot_s = time.perf_counter() - started
    advice = solve(instance, ObjectiveWeights(), SolveOptions(time_limit_s=BUDGET_S))
    greedy, best, listed = advice.greedy, advice.advised, advice.listed
    emit("sched_cpsat_budget_s", BUDGET_S, "s", jobs=len(instance.jobs), running=len(view.active))
    emit("sched_greedy_objective", greedy.objective, "units")
    emit("sched_cpsat_objective", best.objective, "units", status=advice.status)
    emit("sched_list_objective", listed.objective if listed else greedy.objective, "units")
    emit("sched_greedy_cost", greedy.cost, "units")
    emit("sched_cpsat_cost", best.cost, "units")
    emit("sched_greedy_mean_wait_s", greedy.mean_wait_s, "s")
    emit("sched_cpsat_mean_wait_s", best.mean_wait_s, "s")
    emit("sched_cpsat_gain_pct", advice.gain_pct, "%", solver=advice.solver_status)
    emit("sched_cpsat_solve_s", advice.solve_s, "s", target=BUDGET_S + 0.5)
    emit("sched_window_snapshot_s", snapshot_s, "s")


if __name__ == "__main__":
    main()
