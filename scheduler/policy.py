"""Placement policy: priority + EASY backfill over the priced capacity of the live gates.

Pure: ``run_pass(view, now, ...)`` reads the view and returns placements and, for every job
it leaves waiting, why; it does no I/O and reads no clock. ``Planner`` is the seam for other
policies: the service calls whatever planner it is given, and the greedy one is the default
and the fallback that is always available.

Rules of the greedy pass:

* Jobs are taken by score (``scheduler.priority``: priority, age, fair share), then FIFO.
* A job gets ``spec.nodes`` distinct nodes of one gate, each with its cpus, memory and GPUs
  free, or nothing (gang placement). ``spec.gate`` restricts the gate and
  ``spec.max_price_per_hour`` the price. A share of a node costs the node's price × the part
  of it the job takes (``schemas.jobs.node_share``). Within a gate the cheapest nodes that
  can hold the job are chosen, by best fit among equals; among the gates where it can start
  now, the one where it costs least per hour wins (ties: gate name). The pass alone never
  makes a job wait for a cheaper gate; the optimiser may (``Policy.advice``): a job its plan
  starts later is held back (blocking nobody), and one it starts now is placed only on the
  gate the plan chose.
* A job whose estimated cost (its price per hour × its time limit) does not fit what its
  user's or its account's budget leaves waits with reason ``budget`` (``scheduler.budgets``)
  and blocks nobody.
* The first job that does not fit gets a reservation (EASY backfill); later jobs start only
  if they cannot delay it. A job no live gate could ever hold is skipped, so it blocks nobody.
* Held, in-flight and excluded (backing-off) jobs are not placed; in-flight placements count
  as used capacity and spent budget. Neither are jobs whose dependencies core has not found
  satisfied (``scheduler.dependencies``); they block nobody.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scheduler.advice import NO_ADVICE, Advice
from scheduler.backfill import Release, Reservation, cheapest_now, reserve
from scheduler.budgets import Remaining
from scheduler.capacity import GatePool, Need, could_hold
from scheduler.dependencies import Readiness, open_dependencies, readiness
from scheduler.priority import Ranking, Weights, fair_factors
from scheduler.view import PendingJob, View
from schemas.accounts import Accounts
from schemas.commands import Placement
from schemas.ids import GateName, JobId
from schemas.jobs import Allocation, JobSpec, PendingReason, node_share


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a job was not placed: what ``skyport jobs`` shows."""

    reason: PendingReason
    detail: str


@dataclass(frozen=True, slots=True)
class Policy:
    """What a pass weighs besides the view: the queue's weights and the budgets."""

    weights: Weights = field(default_factory=Weights)
    accounts: Accounts | None = None
    advice: Advice = NO_ADVICE
    """The optimiser's latest plan: jobs it starts later are held back, the others placed
    only on the gate it chose (``scheduler.advice``)."""


@dataclass(slots=True)
class PassResult:
    placements: list[Placement]
    waiting: dict[JobId, Waiting]


DEFAULT_POLICY = Policy()


class Planner(Protocol):
    """Anything that turns a view into placements (greedy, or the optimiser around it)."""

    def __call__(
        self,
        view: View,
        now: float,
        in_flight: Mapping[JobId, Placement] = ...,
        excluded: Collection[JobId] = ...,
        policy: Policy = ...,
    ) -> PassResult: ...


def run_pass(
    view: View,
    now: float,
    in_flight: Mapping[JobId, Placement] | None = None,
    excluded: Collection[JobId] = (),
    policy: Policy = DEFAULT_POLICY,
) -> PassResult:
    """The greedy priority + backfill placements for this moment, and why the rest wait."""
    return Pass(view, now, in_flight or {}, policy).run(excluded)


def plan(
    view: View,
    now: float,
    in_flight: Mapping[JobId, Placement] | None = None,
    excluded: Collection[JobId] = (),
    policy: Policy = DEFAULT_POLICY,
) -> list[Placement]:
    """Just the placements of ``run_pass``."""
    return run_pass(view, now, in_flight, excluded, policy).placements


def queue(
    view: View,
    now: float,
    weights: Weights,
    skip: Collection[JobId] = (),
    extra: Sequence[PendingJob] = (),
) -> list[PendingJob]:
    """The placeable pending jobs (not held, not in ``skip``; and ``extra``) in the order a
    pass takes them."""
    ranking = Ranking(now, weights, fair_factors(view.used.at(now)))
    jobs = [j for j in view.pending.values() if not j.held and j.job_id not in skip]
    return sorted([*jobs, *extra], key=ranking.key)


def estimated_cost(spec: JobSpec, price_per_hour: float) -> float:
    """What a job costs if it runs to its time limit at ``price_per_hour``."""
    return price_per_hour * spec.time_limit_s / 3600


_FailKey = tuple[GateName | None, int, Need, float | None, bool, bool]


class Pass:
    """The mutable working state of one pass (``run_pass`` is the pure interface; the dry
    run, ``scheduler.dryrun``, also reads the state a pass leaves)."""

    def __init__(
        self, view: View, now: float, in_flight: Mapping[JobId, Placement], policy: Policy
    ) -> None:
        self.view = view
        self.now = now
        self.in_flight = in_flight
        self.policy = policy
        self.pools = {g.gate: GatePool(g.gate, g.nodes) for g in view.live_gates(now)}
        self.budgets = Remaining(policy.accounts, view.spend, now)
        self.releases: list[Release] = []
        self.reservation: Reservation | None = None
        self.top: JobId | None = None  # the job the reservation is for
        self.failed: set[_FailKey] = set()
        self.capable: dict[tuple[GateName | None, int, Need, float | None], list[GatePool]] = {}
        self.waiting: dict[JobId, Waiting] = {}
        self._charge_held()

    def _charge_held(self) -> None:
        for job in self.view.active.values():
            self._charge(job.allocation, max(job.expected_end, self.now))
            self.budgets.charge(job.owner, job.spec.account or job.owner, job.estimated_cost)
        for job_id, placement in self.in_flight.items():
            pending = self.view.pending.get(job_id)
            if pending is not None and job_id not in self.view.active:
                self._charge(placement.allocation, self.now + pending.spec.time_limit_s)
                cost = estimated_cost(pending.spec, self.price_of(placement.allocation))
                self.budgets.charge(pending.owner, pending.spec.account or pending.owner, cost)

    def _charge(self, allocation: Allocation, end: float) -> None:
        pool = self.pools.get(allocation.gate)
        if pool is None:
            return  # a gate that is not live: its capacity is not offered anyway
        for share in allocation.nodes:
            pool.hold(share)
        self.releases.append(Release(end, allocation.gate, allocation.nodes))

    def price_of(self, allocation: Allocation) -> float:
        pool = self.pools.get(allocation.gate)
        price = 0.0
        for share in allocation.nodes:
            i = pool.index.get(share.node) if pool is not None else None
            if pool is not None and i is not None:
                shape = pool.nodes[i].shape
                fraction = node_share(shape, share.cpus, share.memory_mb, len(share.gpus))
                price += fraction * shape.price_per_hour
        return price

    def run(self, excluded: Collection[JobId], extra: Sequence[PendingJob] = ()) -> PassResult:
        """Place what can start; ``extra`` jobs are queued as if submitted (dry runs)."""
        skip = set(excluded) | set(self.in_flight)
        placements: list[Placement] = []
        for job in queue(self.view, self.now, self.policy.weights, skip, extra):
            outcome = self._decide(job)
            if isinstance(outcome, Placement):
                placements.append(outcome)
            else:
                self.waiting[job.job_id] = outcome
        return PassResult(placements, self.waiting)

    def _decide(self, job: PendingJob) -> Placement | Waiting:
        if job.spec.dependencies:
            ready = readiness(job)
            if ready is not Readiness.READY:
                return _dependency_wait(job, ready)
        pools = self.capable_pools(job)
        if not pools:
            return Waiting(PendingReason.NO_GATE, _no_gate(job.spec))
        if self.budgets.capped:
            need = Need.of(job.spec)
            cheapest = min(p.levels(need)[0] for p in pools) * job.spec.nodes
            account = job.spec.account or job.owner
            cost = estimated_cost(job.spec, cheapest)
            refused = self.budgets.refusal(job.owner, account, cost)
            if refused is not None:
                return Waiting(PendingReason.BUDGET, refused)
        advice = self.policy.advice
        if advice.planned:
            if advice.defers(job.job_id, self.now):
                return _deferred(advice, job.job_id)  # it blocks nobody, reserves nothing
            pinned = advice.gate_for(job.job_id, self.now)
            pools = [p for p in pools if p.gate == pinned] or pools  # gate gone: as greedy
        found = self._try_place(job, pools)  # a placement, or a budget that cannot pay it
        return found if found is not None else self._blocked(job, pools)

    def _blocked(self, job: PendingJob, pools: list[GatePool]) -> Waiting:
        res = self.reservation
        if res is None:
            need = Need.of(job.spec)
            self.reservation = res = reserve(need, job.spec.nodes, pools, self.releases, self.now)
            self.top = job.job_id
            if res is None:
                return Waiting(PendingReason.RESOURCES, "waiting for resources")
            # No start time in the text: it moves as running jobs overrun or end early, and
            # core records every change of a reason (skyport submit --dry-run gives times).
            return Waiting(
                PendingReason.RESOURCES,
                f"waiting for resources: first in line, with gate {res.gate} reserved",
            )
        if any(p.gate == res.gate for p in pools):
            # Not naming the first job: its text would change whenever the first job does,
            # for every job behind it, and core records each change.
            return Waiting(
                PendingReason.PRIORITY,
                f"behind a job that comes first and has gate {res.gate} reserved",
            )
        return Waiting(PendingReason.RESOURCES, "waiting for resources")

    def capable_pools(self, job: PendingJob) -> list[GatePool]:
        spec = job.spec
        key = (spec.gate, spec.nodes, Need.of(spec), spec.max_price_per_hour)
        pools = self.capable.get(key)
        if pools is None:
            pools = [p for p in self.pools.values() if could_hold(p, spec)]
            self.capable[key] = pools
        return pools

    def _try_place(self, job: PendingJob, pools: list[GatePool]) -> Placement | Waiting | None:
        """The cheapest placement that starts now; a budget ``Waiting`` if the cheapest is
        too dear for the budget; None if nothing fits now."""
        spec, need = job.spec, Need.of(job.spec)
        end = self.now + spec.time_limit_s
        res = self.reservation
        ends_in_time = res is None or end <= res.start
        top = spec.max_price_per_hour
        where = pools[0].gate if len(pools) == 1 else spec.gate  # one pool: pinned or asked
        key = (where, spec.nodes, need, top, res is not None, ends_in_time)
        if key in self.failed:
            return None  # free capacity only shrinks during a pass
        best = cheapest_now(pools, need, spec.nodes, res, ends_in_time, top)
        if best is None:
            self.failed.add(key)
            return None
        account = spec.account or job.owner
        cost = estimated_cost(spec, best.price)
        refused = self.budgets.refusal(job.owner, account, cost)
        if refused is not None:
            return Waiting(PendingReason.BUDGET, refused)
        self.budgets.charge(job.owner, account, cost)
        shares = best.take(need, res)
        self.releases.append(Release(end, best.pool.gate, shares))
        allocation = Allocation(gate=best.pool.gate, nodes=shares)
        return Placement(job_id=job.job_id, attempt=job.attempt, allocation=allocation)


def _deferred(advice: Advice, job_id: JobId) -> Waiting:
    gate = advice.planned[job_id].gate  # not its time: each solve moves it a little
    return Waiting(
        PendingReason.RESOURCES,
        f"held back by the optimiser for a better start on gate {gate} later",
    )


def _dependency_wait(job: PendingJob, ready: Readiness) -> Waiting:
    if ready is Readiness.NEVER:
        return Waiting(PendingReason.DEPENDENCY_NEVER, job.broken_detail)
    open_ = open_dependencies(job)
    shown = ", ".join(open_[:5]) + (", ..." if len(open_) > 5 else "")
    return Waiting(PendingReason.DEPENDENCY, f"waiting for job {shown} to end")


def _no_gate(spec: JobSpec) -> str:
    what = (
        f"{spec.nodes} node(s) with {spec.cpus_per_node} cpus, {spec.memory_mb_per_node} MB "
        f"and {spec.gpus_per_node} GPUs"
    )
    where = "no live gate has" if spec.gate is None else f"gate {spec.gate} is down or lacks"
    top = spec.max_price_per_hour
    price = "" if top is None else f" for at most {top:g} an hour"
    return f"{where} {what}{price}"


greedy: Planner = run_pass
"""The default planner (typed as a ``Planner`` so that the seam is checked)."""
