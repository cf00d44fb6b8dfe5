"""The scheduler's optimiser: CP-SAT over a window of the queue, warm-started from greedy.

Pure in the domain sense: no I/O; it reads the clock only to keep to its budget and report
how long it took. ``solve(instance)`` blocks for about ``SolveOptions.time_limit_s`` (CP-SAT
runs its own threads and releases the GIL), so the service calls it in a worker thread and
keeps placing with the greedy pass meanwhile; the ``Advice`` it returns guides later passes.

The model is ``scheduler.relaxation``'s: per job a start variable and one optional interval
per gate that could hold it, exactly one chosen; per limit (gate, group of node classes,
resource) a cumulative constraint, with running jobs' holdings as fixed intervals up to
their release; minimise Σ wait weight × start + Σ the chosen gate's cost. The hint is the
greedy schedule, or the cost-aware list schedule when the model rates that better.

The model pools nodes, so its plan may not fit node by node. It is therefore only advice:
a plan is replayed through the greedy pass's own capacity code (``simulate``) as later
passes would follow it (a job not before its planned start, only on its planned gate) and
the replay priced with the same ``objective`` as greedy's schedule. The plan whose replay
is best becomes the advice, if that beats greedy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from scheduler.advice import Advice, Planned, Score, Status
from scheduler.relaxation import (
    Assignment,
    CostTable,
    Relaxation,
    assignment_of,
    list_schedule,
    relax,
    value,
)
from scheduler.schedule import ObjectiveWeights, Schedule, objective, simulate
from scheduler.window import Instance
from schemas.ids import GateName, JobId


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """The optimiser's knobs."""

    time_limit_s: float = 2.0
    """The whole solve's wall-clock budget; CP-SAT gets what the simulations leave."""
    workers: int = 2
    """CP-SAT search workers (threads)."""
    seed: int = 1
    """CP-SAT's random seed."""
    step_s: int = 60
    """The model's time grid: durations and releases are rounded up to whole steps."""
    horizon_s: float = 2 * 86_400.0
    """How far past greedy's last start the model may move a job (at most the longest job
    of the window)."""
    advice_ttl_s: float = 30.0
    """How long passes follow the advice unless a newer solve replaces it."""


REPLAY_RESERVE_S = 0.1
"""Of the budget, what is kept for replaying CP-SAT's plan after it stops."""


def solve(
    instance: Instance,
    weights: ObjectiveWeights | None = None,
    options: SolveOptions | None = None,
) -> Advice:
    """Advice for the window: the plan (list schedule's or CP-SAT's) whose replay is best,
    if that beats greedy's schedule; else no advice (greedy is the answer)."""
    weights, options = weights or ObjectiveWeights(), options or SolveOptions()
    started = time.perf_counter()
    report = _Report(instance, weights, options, started)
    if not instance.jobs:
        return report.advice(Status.EMPTY)
    greedy = simulate(instance)
    report.greedy = objective(instance, greedy, weights)
    if greedy_is_optimal(instance, greedy):
        return report.advice(Status.GREEDY_OPTIMAL)
    grid = instance.on_grid(options.step_s)
    relaxation, hint, listed = prepare(grid, weights, options)
    if listed is not None:
        report.listed = report.consider(listed)
    deadline = started + options.time_limit_s - REPLAY_RESERVE_S
    report.solver_status, found = cp_sat(relaxation, hint, options, deadline)
    if found is not None:
        report.consider(found)
    if report.best is None:
        return report.advice(Status.NO_SOLUTION if found is None else Status.NO_GAIN)
    return report.advice(Status.IMPROVED)


def greedy_is_optimal(instance: Instance, greedy: Schedule) -> bool:
    """Whether greedy already starts every job now at the lowest cost it could have: then
    nothing can beat it (waits are 0, costs minimal), and the solve is skipped."""
    costs = CostTable(instance)
    for job in instance.jobs:
        start = greedy[job.job_id]
        lowest = min(costs.per_hour(job).values()) * job.duration_s / 3600
        if start.at > instance.now or start.cost > lowest * (1 + 1e-9) + 1e-12:
            return False
    return True


class _Report:
    """What a solve found so far: greedy's score, the best replayed plan, the solver's say."""

    def __init__(
        self, instance: Instance, weights: ObjectiveWeights, options: SolveOptions, started: float
    ) -> None:
        self.instance = instance
        self.weights = weights
        self.options = options
        self.started = started
        self.greedy = Score(0.0, 0.0, 0.0)
        self.best: dict[JobId, Planned] | None = None
        self.best_score: Score | None = None
        self.listed: Score | None = None
        self.solver_status = ""

    def consider(self, plan: dict[JobId, Planned]) -> Score:
        """Replay ``plan`` as passes would follow it; keep it if the replay beats the best.
        Returns the replay's score."""
        score = objective(self.instance, simulate(self.instance, plan), self.weights)
        bar = self.greedy if self.best_score is None else self.best_score
        if score.objective < bar.objective - 1e-9 * max(1.0, abs(bar.objective)):
            self.best, self.best_score = plan, score
        return score

    def advice(self, status: Status) -> Advice:
        now = self.instance.now
        return Advice(
            status=status,
            made_at=now,
            valid_until=now + self.options.advice_ttl_s,
            planned=self.best if self.best is not None else {},
            greedy=self.greedy,
            advised=self.best_score or self.greedy,
            listed=self.listed,
            solver_status=self.solver_status,
            solve_s=time.perf_counter() - self.started,
        )


def prepare(
    grid: Instance, weights: ObjectiveWeights, options: SolveOptions
) -> tuple[Relaxation, Assignment, dict[JobId, Planned] | None]:
    """The relaxation of ``grid`` (an instance on the grid), CP-SAT's hint (greedy's
    schedule, or the list schedule if the model rates it better) and the list schedule as a
    plan (None unless it is the hint)."""
    step = options.step_s
    greedy = simulate(grid)
    relaxation = relax(grid, greedy, weights, step, options.horizon_s)
    hint: Assignment = assignment_of(greedy, grid.now, step)
    listed = list_schedule(relaxation)
    if listed is None or value(relaxation, listed) >= value(relaxation, hint):
        return relaxation, hint, None
    return relaxation, listed, _as_plan(listed, grid.now, step)


def _as_plan(assignment: Assignment, now: float, step: int) -> dict[JobId, Planned]:
    return {jid: Planned(now + start * step, gate) for jid, (start, gate) in assignment.items()}


def cp_sat(
    relaxation: Relaxation, hint: Assignment, options: SolveOptions, deadline: float
) -> tuple[str, dict[JobId, Planned] | None]:
    """CP-SAT's status name and plan (None if it found none) by ``deadline`` (a
    ``time.perf_counter`` value)."""
    model = _Model(relaxation, hint)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, deadline - time.perf_counter())
    solver.parameters.num_workers = options.workers
    solver.parameters.random_seed = options.seed
    # Probing the 2,000-odd optional intervals costs ~0.4 s of presolve and, measured on the
    # benchmark, buys nothing within a budget of seconds.
    solver.parameters.cp_model_probing_level = 0
    status = solver.solve(model.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return solver.status_name(status), None
    return solver.status_name(status), _as_plan(model.read(solver), relaxation.now, relaxation.step)


class _Model:
    """The CP-SAT model of a relaxation, hinted with an assignment."""

    def __init__(self, relaxation: Relaxation, hint: Assignment) -> None:
        self.model = cp_model.CpModel()
        self.starts: dict[JobId, cp_model.IntVar] = {}
        self.chosen: dict[JobId, dict[GateName, cp_model.IntVar]] = {}
        uses: list[list[tuple[cp_model.IntervalVar, int]]] = [[] for _ in relaxation.limits]
        terms: list[cp_model.LinearExprT] = []
        for task in relaxation.tasks:
            jid, (hinted_start, hinted_gate) = task.job_id, hint[task.job_id]
            start = self.starts[jid] = self.model.new_int_var(0, relaxation.horizon, f"s{jid}")
            self.model.add_hint(start, hinted_start)
            terms.append(task.wait * start)
            chosen = self.chosen[jid] = {}
            for option in task.options:
                on = chosen[option.gate] = self.model.new_bool_var(f"on{jid}_{option.gate}")
                self.model.add_hint(on, option.gate == hinted_gate)
                terms.append(option.cost * on)
                interval = self.model.new_optional_fixed_size_interval_var(
                    start, task.duration, on, f"i{jid}_{option.gate}"
                )
                for k in option.limits:
                    uses[k].append((interval, option.demand[relaxation.limits[k].resource]))
            self.model.add_exactly_one(chosen.values())
        self._limits(relaxation, uses)
        self.model.minimize(sum(terms))

    def _limits(
        self, relaxation: Relaxation, uses: list[list[tuple[cp_model.IntervalVar, int]]]
    ) -> None:
        held: dict[tuple[GateName, int], cp_model.IntervalVar] = {}
        for k, limit in enumerate(relaxation.limits):
            for end, amount in limit.held:
                key = (limit.gate, end)
                if key not in held:
                    held[key] = self.model.new_fixed_size_interval_var(0, end, f"h{key}")
                uses[k].append((held[key], amount))
            intervals, demands = [u[0] for u in uses[k]], [u[1] for u in uses[k]]
            self.model.add_cumulative(intervals, demands, limit.capacity)

    def read(self, solver: cp_model.CpSolver) -> dict[JobId, tuple[int, GateName]]:
        out = {}
        for jid, start in self.starts.items():
            gate = next(g for g, on in self.chosen[jid].items() if solver.boolean_value(on))
            out[jid] = (solver.value(start), gate)
        return out
