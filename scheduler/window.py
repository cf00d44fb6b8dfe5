"""The window of the queue the optimiser plans: a frozen copy of the jobs and the capacity.

Pure: no I/O, no clock. ``snapshot(view, now, ...)`` copies out of the view what a plan of
the next hours needs: the live gates' nodes, what running and in-flight jobs hold and when
it comes free (their time limits, as the greedy pass assumes), and the first ``window``
placeable pending jobs in the greedy order. The copy holds only frozen values, so a solve
can run in a worker thread while the view keeps changing.

A job is in the window under the greedy pass's own rules, in its order (``policy.queue``):
not held, not excluded (backing off), not in flight, its dependencies satisfied, some live
gate (its ``spec.gate`` if it names one) has ``spec.nodes`` nodes that could hold it
within its maximum price, and the last pass did not leave it waiting for its budget.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace

from scheduler.backfill import Release
from scheduler.capacity import GatePool, Need, could_hold
from scheduler.dependencies import Readiness, readiness
from scheduler.policy import DEFAULT_POLICY, Policy, Waiting, queue
from scheduler.view import PendingJob, View
from schemas.commands import Placement
from schemas.ids import GateName, JobId
from schemas.jobs import JobSpec, NodeShape, PendingReason

DEFAULT_WINDOW = 200


@dataclass(frozen=True, slots=True)
class GateNodes:
    """The nodes a live gate offers."""

    gate: GateName
    nodes: tuple[NodeShape, ...]


@dataclass(frozen=True, slots=True)
class WindowJob:
    """One pending job of the window; it runs for ``duration_s`` (its time limit)."""

    job_id: JobId
    attempt: int
    spec: JobSpec
    duration_s: float

    @property
    def need(self) -> Need:
        return Need.of(self.spec)


@dataclass(frozen=True, slots=True)
class Instance:
    """A window of the queue over the capacity at ``now``; ``jobs`` are in greedy order."""

    now: float
    gates: tuple[GateNodes, ...]
    held: tuple[Release, ...]
    jobs: tuple[WindowJob, ...]

    def on_grid(self, step_s: int) -> Instance:
        """The same instance with every duration and every release rounded up to a whole
        number of ``step_s`` from ``now`` (what a time-indexed model can represent)."""

        def up(seconds: float) -> float:
            return max(0, math.ceil(seconds / step_s - 1e-9)) * step_s

        held = tuple(replace(r, end=self.now + up(r.end - self.now)) for r in self.held)
        jobs = tuple(replace(j, duration_s=up(j.duration_s)) for j in self.jobs)
        return replace(self, held=held, jobs=jobs)


def snapshot(
    view: View,
    now: float,
    in_flight: Mapping[JobId, Placement] | None = None,
    excluded: Collection[JobId] = (),
    policy: Policy = DEFAULT_POLICY,
    waiting: Mapping[JobId, Waiting] | None = None,
    window: int = DEFAULT_WINDOW,
) -> Instance:
    """The first ``window`` placeable pending jobs and the capacity they compete for.

    ``waiting`` is the last pass's (``PassResult.waiting``): a job it left waiting for its
    budget stays out of the window (no start time cures that).
    """
    in_flight = in_flight or {}
    gates = tuple(GateNodes(g.gate, g.nodes) for g in view.live_gates(now))
    live = {g.gate for g in gates}
    held = tuple(r for r in _releases(view, now, in_flight) if r.gate in live)
    jobs: list[WindowJob] = []
    skip = set(excluded) | set(in_flight)
    for job in _placeable(queue(view, now, policy.weights, skip), gates, waiting or {}):
        if len(jobs) == window:
            break
        jobs.append(WindowJob(job.job_id, job.attempt, job.spec, float(job.spec.time_limit_s)))
    return Instance(now=now, gates=gates, held=held, jobs=tuple(jobs))


def _releases(view: View, now: float, in_flight: Mapping[JobId, Placement]) -> Iterator[Release]:
    """What running and in-flight jobs hold, freed at their time limits (the greedy pass's
    rule: a job past its limit is expected to end now)."""
    for active in view.active.values():
        alloc = active.allocation
        yield Release(max(active.expected_end, now), alloc.gate, alloc.nodes)
    for job_id, placement in in_flight.items():
        pending = view.pending.get(job_id)
        if pending is not None and job_id not in view.active:
            alloc = placement.allocation
            yield Release(now + pending.spec.time_limit_s, alloc.gate, alloc.nodes)


_UNTIMELY = PendingReason.BUDGET
"""The one reason to wait that the window cannot see in the view (the others, held, a
dependency, no gate, it checks itself) and that capacity coming free does not cure."""


def _placeable(
    ordered: list[PendingJob],
    gates: tuple[GateNodes, ...],
    waiting: Mapping[JobId, Waiting],
) -> Iterator[PendingJob]:
    pools = [GatePool(g.gate, g.nodes) for g in gates]
    capable: dict[tuple[GateName | None, int, Need, float | None], bool] = {}
    for job in ordered:
        last = waiting.get(job.job_id)
        if job.spec.dependencies and readiness(job) is not Readiness.READY:
            continue
        if last is not None and last.reason is _UNTIMELY:
            continue
        spec = job.spec
        key = (spec.gate, spec.nodes, Need.of(spec), spec.max_price_per_hour)
        if key not in capable:
            capable[key] = any(could_hold(pool, spec) for pool in pools)
        if capable[key]:
            yield job
