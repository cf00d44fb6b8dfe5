"""The window as the optimiser sees it: a time-indexed problem over aggregated capacity.

Pure: no I/O, no clock. ``relax(grid, ...)`` turns an instance whose times are whole steps
(``Instance.on_grid``) into tasks and limits:

* a task per job: its duration and wait weight in steps, and one option per gate that could
  hold it (``spec.gate``, gang size, maximum price), priced at the job's lowest cost there;
* a limit per gate, per resource (cpus, memory, GPUs) and per group of node classes (nodes
  alike in size and price): the whole gate, and each set of classes some job can use only
  (the nodes big enough for it). An option counts against every limit of its gate whose
  group contains all the classes it could use; running jobs count until their release.

It is a relaxation: capacity is pooled, so a plan that fits the limits may not fit node by
node (fragmentation). ``list_schedule`` is a fast serial heuristic over the same limits:
jobs in greedy order, each at the gate and earliest start where it costs the objective
least, which is the trade greedy never makes (waiting for a cheaper gate).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from scheduler.capacity import GatePool, Need, could_hold
from scheduler.schedule import ObjectiveWeights, Schedule
from scheduler.window import Instance, WindowJob
from schemas.ids import GateName, JobId
from schemas.jobs import NodeShape, node_share

SCALE = 10_000
"""Objective units per currency unit: the solver's objective is integer."""

Demand = tuple[int, int, int]  # cpus, memory (MB), GPUs


@dataclass(frozen=True, slots=True)
class Option:
    """A task on one gate: the node classes it could use there, its demand, its cost."""

    gate: GateName
    usable: frozenset[int]
    demand: Demand
    cost: int
    limits: tuple[int, ...] = ()
    """Indices of the limits it counts against (set by ``relax``)."""


@dataclass(frozen=True, slots=True)
class Task:
    job_id: JobId
    duration: int
    wait: int
    """Objective units per step of waiting."""
    options: tuple[Option, ...]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``capacity`` of one resource on one group of one gate's node classes."""

    gate: GateName
    group: frozenset[int]
    resource: int
    capacity: int
    held: tuple[tuple[int, int], ...]
    """(release step, amount) of what running jobs hold there."""


@dataclass(frozen=True, slots=True)
class Relaxation:
    """Tasks and limits on a grid of ``step`` seconds from ``now``."""

    now: float
    step: int
    tasks: tuple[Task, ...]
    limits: tuple[Limit, ...]
    horizon: int
    """The latest start step of any task."""


Assignment = Mapping[JobId, tuple[int, GateName]]
"""A start step and a gate per task."""


class CostTable:
    """Per job, its lowest price per hour on each gate that could hold it: the cheapest
    ``nodes`` nodes of the gate that could hold its share, from the node classes."""

    def __init__(self, instance: Instance) -> None:
        self.pools = [GatePool(g.gate, g.nodes) for g in instance.gates]
        self.classes = {g.gate: classes(g.nodes) for g in instance.gates}
        self._cache: dict[tuple[GateName, Need, int], float] = {}
        self._gates: dict[tuple[GateName | None, int, Need, float | None], list[GateName]] = {}

    def per_hour(self, job: WindowJob) -> dict[GateName, float]:
        spec = job.spec
        key = (spec.gate, spec.nodes, job.need, spec.max_price_per_hour)
        gates = self._gates.get(key)
        if gates is None:
            gates = self._gates[key] = [p.gate for p in self.pools if could_hold(p, spec)]
        return {gate: self._lowest(gate, job.need, spec.nodes) for gate in gates}

    def _lowest(self, gate: GateName, need: Need, count: int) -> float:
        key = (gate, need, count)
        if key not in self._cache:
            prices = sorted(
                (node_share(shape, *need) * shape.price_per_hour, k)
                for shape, k in self.classes[gate]
                if _holds(shape, need)
            )
            total, left = 0.0, count
            for price, k in prices:
                total += price * min(k, left)
                left -= min(k, left)
            self._cache[key] = total
        return self._cache[key]


def classes(nodes: tuple[NodeShape, ...]) -> list[tuple[NodeShape, int]]:
    """The gate's nodes grouped by size and price: a nameless shape and a count each."""
    counts = Counter(_kind(n) for n in nodes)
    return [
        (NodeShape(name="", cpus=c, memory_mb=m, gpus=g, price_per_hour=p), k)
        for (c, m, g, p), k in counts.items()
    ]


def _kind(n: NodeShape) -> tuple[int, int, int, float]:
    return (n.cpus, n.memory_mb, n.gpus, n.price_per_hour)


def _holds(shape: NodeShape, need: Need) -> bool:
    return need.within(shape.cpus, shape.memory_mb, shape.gpus)


def _amounts(shape: NodeShape) -> Demand:
    return (shape.cpus, shape.memory_mb, shape.gpus)


def relax(
    grid: Instance, start: Schedule, weights: ObjectiveWeights, step_s: int, horizon_s: float
) -> Relaxation:
    """The relaxation of ``grid`` (times on whole ``step_s``), with a horizon that leaves
    room for ``start`` (a schedule of it, greedy's) and ``horizon_s`` more."""
    costs = CostTable(grid)
    tasks = [_task(job, costs, weights, step_s) for job in grid.jobs]
    limits: list[Limit] = []
    for gate in grid.gates:
        limits += _limits(gate.gate, gate.nodes, costs.classes[gate.gate], tasks, grid, step_s)
    tasks = [_bind(task, limits) for task in tasks]
    last = max(round((s.at - grid.now) / step_s) for s in start.values())
    longest = max(t.duration for t in tasks)
    horizon = last + min(longest, max(1, round(horizon_s / step_s)))
    return Relaxation(grid.now, step_s, tuple(tasks), tuple(limits), horizon)


def _task(job: WindowJob, costs: CostTable, weights: ObjectiveWeights, step_s: int) -> Task:
    need, n = job.need, job.spec.nodes
    options = []
    for gate, price in costs.per_hour(job).items():
        usable = frozenset(
            i for i, (shape, _) in enumerate(costs.classes[gate]) if _holds(shape, need)
        )
        cost = round(SCALE * weights.cost * price * job.duration_s / 3600)
        demand = (n * need.cpus, n * need.memory_mb, n * need.gpus)
        options.append(Option(gate, usable, demand, cost))
    wait = round(SCALE * weights.wait_weight(job.spec.priority) * step_s / 3600)
    return Task(job.job_id, round(job.duration_s / step_s), wait, tuple(options))


def _limits(
    gate: GateName,
    nodes: tuple[NodeShape, ...],
    kinds: list[tuple[NodeShape, int]],
    tasks: list[Task],
    grid: Instance,
    step_s: int,
) -> Iterator[Limit]:
    """The gate's limits that can bind: some task could count against them and all that
    could, together with what is held, might exceed the capacity."""
    options = [o for t in tasks for o in t.options if o.gate == gate]
    held = _held(gate, nodes, kinds, grid, step_s)
    for group in {o.usable for o in options} | {frozenset(range(len(kinds)))}:
        for r in range(3):
            capacity = sum(k * _amounts(s)[r] for i, (s, k) in enumerate(kinds) if i in group)
            amounts = tuple(
                (end, sum(by[i][r] for i in group if i in by)) for end, by in held.items()
            )
            amounts = tuple((end, a) for end, a in amounts if a > 0)
            demand = sum(o.demand[r] for o in options if o.usable <= group)
            if demand > 0 and demand + sum(a for _, a in amounts) > capacity:
                yield Limit(gate, group, r, capacity, amounts)


def _held(
    gate: GateName,
    nodes: tuple[NodeShape, ...],
    kinds: list[tuple[NodeShape, int]],
    grid: Instance,
    step_s: int,
) -> dict[int, dict[int, list[int]]]:
    """Per release step, per node class: what running jobs hold on ``gate`` (never more
    than a node has, even if the gate shrank under them)."""
    index = {_kind(s): i for i, (s, _) in enumerate(kinds)}
    of_node = {n.name: (index[_kind(n)], n) for n in nodes}
    left = {name: list(_amounts(shape)) for name, (_, shape) in of_node.items()}
    by_step: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * 3))
    for release in grid.held:
        end = round((release.end - grid.now) / step_s)
        if release.gate != gate or end <= 0:
            continue
        for share in release.shares:
            if share.node not in of_node:
                continue  # the gate no longer has that node
            free, held = left[share.node], by_step[end][of_node[share.node][0]]
            for r, amount in enumerate((share.cpus, share.memory_mb, len(share.gpus))):
                taken = max(0, min(amount, free[r]))
                free[r] -= taken
                held[r] += taken
    return by_step


def _bind(task: Task, limits: list[Limit]) -> Task:
    options = tuple(
        Option(
            o.gate,
            o.usable,
            o.demand,
            o.cost,
            tuple(
                k
                for k, lim in enumerate(limits)
                if lim.gate == o.gate and o.usable <= lim.group and o.demand[lim.resource] > 0
            ),
        )
        for o in task.options
    )
    return Task(task.job_id, task.duration, task.wait, options)


def assignment_of(schedule: Schedule, now: float, step_s: int) -> dict[JobId, tuple[int, GateName]]:
    """A schedule of a grid instance as an assignment of steps and gates."""
    return {jid: (round((s.at - now) / step_s), s.gate) for jid, s in schedule.items()}


def value(relaxation: Relaxation, assignment: Assignment) -> int:
    """The relaxation's objective of ``assignment``."""
    total = 0
    for task in relaxation.tasks:
        start, gate = assignment[task.job_id]
        total += task.wait * start + next(o.cost for o in task.options if o.gate == gate)
    return total


def list_schedule(relaxation: Relaxation) -> dict[JobId, tuple[int, GateName]] | None:
    """Each task in turn at the gate and earliest start that fit the limits left and add
    least to the objective; None if some task fits nowhere within the horizon."""
    span = relaxation.horizon + max(t.duration for t in relaxation.tasks) + 1
    usage = [_profile(lim, span) for lim in relaxation.limits]
    out: dict[JobId, tuple[int, GateName]] = {}
    for task in relaxation.tasks:
        best: tuple[int, int, Option] | None = None
        for option in task.options:
            start = _earliest(relaxation, usage, task, option)
            if start is not None:
                price = task.wait * start + option.cost
                if best is None or price < best[0]:
                    best = (price, start, option)
        if best is None:
            return None
        _, start, option = best
        for k in option.limits:
            add = option.demand[relaxation.limits[k].resource]
            row = usage[k]
            end = start + task.duration
            row[start:end] = [u + add for u in row[start:end]]
        out[task.job_id] = (start, option.gate)
    return out


def _profile(limit: Limit, span: int) -> list[int]:
    row = [0] * span
    for end, amount in limit.held:
        row[:end] = [u + amount for u in row[:end]]
    return row[:span]


def _earliest(
    relaxation: Relaxation, usage: list[list[int]], task: Task, option: Option
) -> int | None:
    """The first start at which ``option`` fits every limit it counts against."""
    start = 0
    while start <= relaxation.horizon:
        moved = False
        for k in option.limits:
            limit = relaxation.limits[k]
            room = limit.capacity - option.demand[limit.resource]
            window = usage[k][start : start + task.duration]
            if max(window, default=0) > room:
                over = [i for i, u in enumerate(window) if u > room]
                start += over[-1] + 1  # no start before the last overfull step can fit
                moved = True
                break
        if not moved:
            return start
    return None
