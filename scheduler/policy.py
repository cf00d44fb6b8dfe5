"""Placement policy: priority + FIFO + EASY backfill over the capacity of the live gates.

Pure: ``plan(view, now, ...)`` reads the view and returns placements; it does no I/O and
reads no clock. ``Planner`` is the seam for other policies (the CP-SAT optimiser, cost-aware
placement): the service calls whatever planner it is given, and the greedy one is the
default and the fallback that is always available.

Rules of the greedy pass:

* Jobs are taken by priority (highest first), then FIFO by numeric job id.
* A job gets ``spec.nodes`` distinct nodes of one gate, each with its cpus, memory and GPUs
  free, or nothing (gang placement). ``spec.gate`` restricts the gate. A share of a node
  costs the node's price × the part of it the job takes (``schemas.jobs.node_share``).
  Within a gate the cheapest nodes that can hold the job are chosen, by best fit (fewest
  free cpus left) among equals; among the gates where it can start now, the one where it
  costs least per hour wins (ties: gate name). A job is never made to wait for a cheaper
  gate.
* The first job that does not fit gets a reservation (EASY backfill); later jobs start only
  if they cannot delay it. A job no live gate could ever hold is skipped, so it blocks nobody.
* Held, in-flight and excluded (backing-off) jobs are not placed; in-flight placements count
  as used capacity. Neither are jobs whose dependencies are not satisfied
  (``scheduler.dependencies``); they block nobody.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from scheduler.backfill import Release, Reservation, reserve
from scheduler.capacity import GatePool, Need
from scheduler.dependencies import Readiness, readiness
from scheduler.view import PendingJob, View
from schemas.commands import Placement
from schemas.ids import GateName, JobId
from schemas.jobs import Allocation


class Planner(Protocol):
    """Anything that turns a view into placements (greedy now, an optimiser later)."""

    def __call__(
        self,
        view: View,
        now: float,
        in_flight: Mapping[JobId, Placement] = ...,
        excluded: Collection[JobId] = ...,
    ) -> list[Placement]: ...


def plan(
    view: View,
    now: float,
    in_flight: Mapping[JobId, Placement] | None = None,
    excluded: Collection[JobId] = (),
) -> list[Placement]:
    """The greedy priority + backfill placements for this moment."""
    return _Pass(view, now, in_flight or {}).run(excluded)


_FailKey = tuple[GateName | None, int, Need, bool, bool]


class _Pass:
    """The mutable working state of one pass (private: ``plan`` is the pure interface)."""

    def __init__(self, view: View, now: float, in_flight: Mapping[JobId, Placement]) -> None:
        self.view = view
        self.now = now
        self.in_flight = in_flight
        self.pools = {g.gate: GatePool(g.gate, g.nodes) for g in view.live_gates(now)}
        self.releases: list[Release] = []
        self.reservation: Reservation | None = None
        self.failed: set[_FailKey] = set()
        self.capable: dict[tuple[GateName | None, int, Need], list[GatePool]] = {}
        self._charge_held()

    def _charge_held(self) -> None:
        for job in self.view.active.values():
            self._charge(job.allocation, max(job.expected_end, self.now))
        for job_id, placement in self.in_flight.items():
            pending = self.view.pending.get(job_id)
            if pending is not None and job_id not in self.view.active:
                self._charge(placement.allocation, self.now + pending.spec.time_limit_s)

    def _charge(self, allocation: Allocation, end: float) -> None:
        pool = self.pools.get(allocation.gate)
        if pool is None:
            return  # a gate that is not live: its capacity is not offered anyway
        for share in allocation.nodes:
            pool.hold(share)
        self.releases.append(Release(end, allocation.gate, allocation.nodes))

    def run(self, excluded: Collection[JobId]) -> list[Placement]:
        if all(pool.free_cpus <= 0 for pool in self.pools.values()):
            return []  # every job needs a cpu: a full (or absent) cluster places nothing
        skip = set(excluded) | set(self.in_flight)
        queue = sorted(
            (j for j in self.view.pending.values() if not j.held and j.job_id not in skip),
            key=lambda j: j.rank,
        )
        placements: list[Placement] = []
        for job in queue:
            deps = job.spec.dependencies
            if deps and readiness(deps, self.view.ended) is not Readiness.READY:
                continue  # not startable yet (or ever): it blocks nobody, reserves nothing
            pools = self._capable_pools(job)
            if not pools:
                continue  # never fits what is live: must not block anyone
            placement = self._try_place(job, pools)
            if placement is not None:
                placements.append(placement)
            elif self.reservation is None:
                need = Need.of(job.spec)
                self.reservation = reserve(need, job.spec.nodes, pools, self.releases, self.now)
        return placements

    def _capable_pools(self, job: PendingJob) -> list[GatePool]:
        spec = job.spec
        key = (spec.gate, spec.nodes, Need.of(spec))
        pools = self.capable.get(key)
        if pools is None:
            candidates = [self.pools[spec.gate]] if spec.gate in self.pools else []
            if spec.gate is None:
                candidates = list(self.pools.values())
            pools = [p for p in candidates if p.capable(key[2]) >= spec.nodes]
            self.capable[key] = pools
        return pools

    def _try_place(self, job: PendingJob, pools: list[GatePool]) -> Placement | None:
        spec, need = job.spec, Need.of(job.spec)
        end = self.now + spec.time_limit_s
        res = self.reservation
        ends_in_time = res is None or end <= res.start
        key = (spec.gate, spec.nodes, need, res is not None, ends_in_time)
        if key in self.failed:
            return None  # free capacity only shrinks during a pass
        best: tuple[float, GatePool, list[int], bool] | None = None
        for pool in pools:  # every gate where it starts now; the cheapest wins, then by name
            guarded = res is not None and not ends_in_time and res.gate == pool.gate
            admit = (lambda i: res.admits(i, need)) if guarded and res is not None else None
            chosen = pool.find_cheapest(need, spec.nodes, admit)
            if chosen is None:
                continue
            price = sum(pool.cost(i, need) for i in chosen)
            if best is None or price < best[0]:
                best = (price, pool, chosen, guarded)
                if price == 0:
                    break  # nothing is cheaper than free
        if best is None:
            self.failed.add(key)
            return None
        _, pool, chosen, guarded = best
        shares = tuple(pool.take(i, need) for i in chosen)
        if guarded and res is not None:
            for i in chosen:
                res.charge(i, need)
        allocation = Allocation(gate=pool.gate, nodes=shares)
        self.releases.append(Release(end, pool.gate, shares))
        return Placement(job_id=job.job_id, attempt=job.attempt, allocation=allocation)


greedy: Planner = plan
"""The default planner (typed as a ``Planner`` so that the seam is checked)."""
