"""A schedule of a window over time: the greedy pass replayed into the future, and its worth.

Pure: no I/O, no clock. ``simulate(instance)`` applies the greedy pass's rule (priority
order, the cheapest gate where a job can start now, the cheapest best-fitting nodes there,
EASY backfill; the same ``GatePool`` and ``reserve`` code) at ``now`` and again each time
running jobs reach their time limits, until every job of the window has started. Given a
plan (``Planned`` per job), a job waits until its planned start and then goes only to its
planned gate, when it fits there: what passes do with the optimiser's advice
(``scheduler.advice``). ``objective`` prices any schedule with one formula, so greedy's and
the optimiser's schedules compare like for like.

Budgets are not simulated: the window leaves out the jobs the last pass refused for
budget, and a pass that follows the advice still checks every placement against them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.advice import Planned, Score
from scheduler.backfill import Release, Reservation, cheapest_now, reserve
from scheduler.capacity import GatePool, Need, could_hold
from scheduler.window import Instance, WindowJob
from schemas.ids import GateName, JobId
from schemas.jobs import NodeAllocation


@dataclass(frozen=True, slots=True)
class ObjectiveWeights:
    """What the optimiser minimises: waiting and spending, in currency units."""

    wait_per_hour: float = 100.0
    """What one hour of one job's waiting is worth (currency units), at priority 0. High by
    default: a job should not wait long to save money (the greedy rule never makes it); at
    1.0 the optimiser will hold jobs back for hours to save a few units."""
    cost: float = 1.0
    """Weight of one currency unit spent on nodes (0: ignore cost, optimise waits only)."""
    priority_doubling: float = 100.0
    """Every this many priority points (> 0) double a job's wait weight; as many below 0
    halve it (at most 10 times either way)."""

    def wait_weight(self, priority: int) -> float:
        """The currency value of one hour of a job's waiting, by its priority."""
        doublings = max(-10.0, min(10.0, priority / self.priority_doubling))
        return self.wait_per_hour * math.pow(2.0, doublings)


@dataclass(frozen=True, slots=True)
class Start:
    """When a job of the window starts, where, on which shares, and what its run costs."""

    at: float
    gate: GateName
    shares: tuple[NodeAllocation, ...]
    cost: float


Schedule = Mapping[JobId, Start]


def objective(instance: Instance, schedule: Schedule, weights: ObjectiveWeights) -> Score:
    """Σ wait weight × hours waited (from ``now``) + cost weight × Σ cost, over the window."""
    total = cost = wait = 0.0
    for job in instance.jobs:
        start = schedule.get(job.job_id)
        if start is None:
            raise ValueError(f"job {job.job_id} is not in the schedule")
        waited = start.at - instance.now
        wait += waited
        cost += start.cost
        total += weights.wait_weight(job.spec.priority) * waited / 3600
    total += weights.cost * cost
    return Score(objective=total, cost=cost, mean_wait_s=wait / max(1, len(instance.jobs)))


def simulate(instance: Instance, plan: Mapping[JobId, Planned] | None = None) -> dict[JobId, Start]:
    """When and where the greedy pass would start each job of the window (following
    ``plan`` if given), if every job ran to its time limit."""
    return _Simulation(instance, plan or {}).run()


_FailKey = tuple[GateName | None, int, Need, float | None, bool, bool]


class _Simulation:
    """The mutable state of one simulation (private: ``simulate`` is the interface)."""

    def __init__(self, instance: Instance, plan: Mapping[JobId, Planned]) -> None:
        self.instance = instance
        self.plan = plan
        self.shapes = {g.gate: g.nodes for g in instance.gates}
        self.running: dict[GateName, list[Release]] = {gate: [] for gate in self.shapes}
        self.ends: list[tuple[float, GateName]] = []
        for release in instance.held:
            if release.gate in self.running:
                self._hold(release)
        self.pools = {gate: self._pool(gate) for gate in self.shapes}
        self.capable: dict[tuple[GateName | None, int, Need, float | None], list[GateName]] = {}

    def run(self) -> dict[JobId, Start]:
        waiting = list(self.instance.jobs)
        wakes = sorted({p.start for p in self.plan.values()}, reverse=True)
        now, starts = self.instance.now, {}
        first = True
        while waiting:
            if not first:
                self._free(now)  # the first pass sees what the view holds, as the real one
            first = False
            starts.update(self._pass(now, [j for j in waiting if not self._defers(j, now)]))
            waiting = [j for j in waiting if j.job_id not in starts]
            while wakes and wakes[-1] <= now:
                wakes.pop()
            later = [self.ends[0][0]] if self.ends else []
            later += wakes[-1:]
            if not later:
                break  # nothing will come free: cannot happen for capable jobs
            now = min(later)
        return starts

    def _defers(self, job: WindowJob, now: float) -> bool:
        planned = self.plan.get(job.job_id)
        return planned is not None and planned.start > now

    def _hold(self, release: Release) -> None:
        self.running[release.gate].append(release)
        heapq.heappush(self.ends, (release.end, release.gate))

    def _pool(self, gate: GateName) -> GatePool:
        pool = GatePool(gate, self.shapes[gate])
        for release in self.running[gate]:
            for share in release.shares:
                pool.hold(share)
        return pool

    def _free(self, now: float) -> None:
        """Release what ends by ``now``: rebuild the pools of the gates it was on."""
        gates = set()
        while self.ends and self.ends[0][0] <= now:
            gates.add(heapq.heappop(self.ends)[1])
        for gate in gates:
            self.running[gate] = [r for r in self.running[gate] if r.end > now]
            self.pools[gate] = self._pool(gate)

    def _pass(self, now: float, jobs: list[WindowJob]) -> dict[JobId, Start]:
        """One greedy pass at ``now`` over ``jobs`` (the rule of ``scheduler.policy``)."""
        starts: dict[JobId, Start] = {}
        if all(pool.free_cpus <= 0 for pool in self.pools.values()):
            return starts
        reservation: Reservation | None = None
        failed: set[_FailKey] = set()
        for job in jobs:
            gates = self._gates_for(job, self._capable(job))
            start = self._try_place(job, gates, now, reservation, failed)
            if start is not None:
                starts[job.job_id] = start
            elif reservation is None:
                releases = [r for rs in self.running.values() for r in rs]
                pools = [self.pools[g] for g in gates]
                reservation = reserve(job.need, job.spec.nodes, pools, releases, now)
        return starts

    def _capable(self, job: WindowJob) -> list[GateName]:
        spec = job.spec
        key = (spec.gate, spec.nodes, job.need, spec.max_price_per_hour)
        gates = self.capable.get(key)
        if gates is None:
            gates = [g for g, pool in self.pools.items() if could_hold(pool, spec)]
            self.capable[key] = gates
        return gates

    def _try_place(
        self,
        job: WindowJob,
        gates: list[GateName],
        now: float,
        res: Reservation | None,
        failed: set[_FailKey],
    ) -> Start | None:
        spec, need = job.spec, job.need
        end = now + job.duration_s
        ends_in_time = res is None or end <= res.start
        planned = self.plan.get(job.job_id)
        gate = spec.gate if planned is None else planned.gate
        key = (gate, spec.nodes, need, spec.max_price_per_hour, res is not None, ends_in_time)
        if key in failed:
            return None
        pools = [self.pools[g] for g in gates]
        found = cheapest_now(pools, need, spec.nodes, res, ends_in_time, spec.max_price_per_hour)
        if found is None:
            failed.add(key)
            return None
        shares = found.take(need, res)
        self._hold(Release(end, found.pool.gate, shares))
        return Start(now, found.pool.gate, shares, found.price * job.duration_s / 3600)

    def _gates_for(self, job: WindowJob, gates: list[GateName]) -> list[GateName]:
        planned = self.plan.get(job.job_id)
        if planned is None:
            return gates
        return [planned.gate] if planned.gate in gates else gates  # its gate is gone: no pin
