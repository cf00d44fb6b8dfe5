"""``skyport submit --dry-run``: where a job would run if submitted now, when, at what cost,
and why every other gate was not chosen. Pure.

The job is put in the queue as if just submitted (it ranks as it would, behind the jobs of
equal score) and a real greedy pass is run over the view; nothing is sent and the view is
not changed. If the pass would leave it waiting, its start is estimated from the running
and just-placed jobs' time limits: exact when it would be the first job waiting (it holds
the reservation), else a lower bound, since jobs ahead of it may take the nodes first.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from scheduler.backfill import reserve
from scheduler.capacity import GatePool, Need
from scheduler.policy import DEFAULT_POLICY, Pass, Policy, Waiting, estimated_cost, queue
from scheduler.view import PendingJob, View
from schemas.commands import GateOption, OptionVerdict, Placement, PlanReport
from schemas.ids import GateName, JobId, MessageId, UserName
from schemas.jobs import JobSpec, PendingReason

DRY_RUN_ID = JobId("dry-run")  # not a job id core issues, so it ranks after real ones


def dry_run(
    view: View,
    now: float,
    owner: UserName,
    spec: JobSpec,
    to: MessageId,
    in_flight: Mapping[JobId, Placement] | None = None,
    excluded: Collection[JobId] = (),
    policy: Policy = DEFAULT_POLICY,
) -> PlanReport:
    """The report for ``spec`` submitted by ``owner`` at ``now`` (the answer to ``to``)."""
    job = PendingJob(job_id=DRY_RUN_ID, owner=owner, spec=spec, arrival=1 << 62, submitted_at=now)
    run = Pass(view, now, in_flight or {}, policy)
    result = run.run(excluded, extra=(job,))
    skip = set(excluded) | set(in_flight or {})
    order = queue(view, now, policy.weights, skip, extra=(job,))
    ahead = next(i for i, j in enumerate(order) if j.job_id == DRY_RUN_ID)
    probe = Pass(view, now, in_flight or {}, policy)  # capacity and budgets before the pass
    placed = next((p for p in result.placements if p.job_id == DRY_RUN_ID), None)
    options = tuple(_option(probe, GateName(g), job, placed) for g in sorted(view.gates))
    if placed is not None:
        price = run.price_of(placed.allocation)
        return PlanReport(
            to=to,
            gate=placed.allocation.gate,
            start_at=now,
            price_per_hour=price,
            estimated_cost=estimated_cost(spec, price),
            detail=f"would start now on gate {placed.allocation.gate}",
            ahead=ahead,
            options=options,
        )
    return _waiting(run, job, result.waiting[DRY_RUN_ID], to, ahead, options)


def _waiting(
    run: Pass,
    job: PendingJob,
    why: Waiting,
    to: MessageId,
    ahead: int,
    options: tuple[GateOption, ...],
) -> PlanReport:
    report = PlanReport(to=to, reason=why.reason, detail=why.detail, ahead=ahead, options=options)
    if why.reason not in (PendingReason.RESOURCES, PendingReason.PRIORITY):
        return report  # it would not start whatever frees up
    pools = run.capable_pools(job)
    res = reserve(Need.of(job.spec), job.spec.nodes, pools, run.releases, run.now)
    if res is None:
        return report
    pool = run.pools[res.gate]
    price = min(pool.levels(Need.of(job.spec))) * job.spec.nodes
    return PlanReport(
        to=to,
        gate=res.gate,
        start_at=res.start,
        start_is_bound=run.top != DRY_RUN_ID,
        price_per_hour=price,
        estimated_cost=estimated_cost(job.spec, price),
        reason=why.reason,
        detail=why.detail,
        ahead=ahead,
        options=options,
    )


def _option(probe: Pass, gate: GateName, job: PendingJob, placed: Placement | None) -> GateOption:
    """How one gate stands for the job: the checks of a pass, one by one."""
    spec, need = job.spec, Need.of(job.spec)
    if spec.gate is not None and spec.gate != gate:
        return GateOption(
            gate=gate, verdict=OptionVerdict.NOT_REQUESTED, detail=f"the job asks for {spec.gate}"
        )
    pool = probe.pools.get(gate)
    if pool is None:
        return GateOption(gate=gate, verdict=OptionVerdict.DOWN, detail="no heartbeat lately")
    capable = pool.capable(need)
    if capable < spec.nodes:
        detail = f"{capable} of its nodes could hold the job's share; it needs {spec.nodes}"
        return GateOption(gate=gate, verdict=OptionVerdict.TOO_SMALL, detail=detail)
    if placed is not None and placed.allocation.gate == gate:
        price = probe.price_of(placed.allocation)
        return _priced(gate, OptionVerdict.CHOSEN, spec, price, "it starts here now")
    price = pool.levels(need)[0] * spec.nodes
    return _unchosen(probe, pool, job, price, placed is not None)


def _unchosen(
    probe: Pass, pool: GatePool, job: PendingJob, price: float, placed_elsewhere: bool
) -> GateOption:
    spec, gate = job.spec, pool.gate
    top = spec.max_price_per_hour
    if top is not None and price > top:
        detail = f"at least {price:.2f} an hour; the job allows {top:g}"
        return _priced(gate, OptionVerdict.OVER_PRICE, spec, price, detail)
    refused = probe.budgets.refusal(
        job.owner, spec.account or job.owner, estimated_cost(spec, price)
    )
    if refused is not None:
        return _priced(gate, OptionVerdict.OVER_BUDGET, spec, price, refused)
    if pool.find_cheapest(Need.of(spec), spec.nodes) is None:
        return _priced(gate, OptionVerdict.BUSY, spec, price, "not enough free nodes now")
    if placed_elsewhere:
        return _priced(gate, OptionVerdict.DEARER, spec, price, "room now, at a higher price")
    detail = "room now, but kept for a job ahead of it (backfill)"
    return _priced(gate, OptionVerdict.BUSY, spec, price, detail)


def _priced(
    gate: GateName, verdict: OptionVerdict, spec: JobSpec, price: float, detail: str
) -> GateOption:
    return GateOption(
        gate=gate,
        verdict=verdict,
        price_per_hour=price,
        estimated_cost=estimated_cost(spec, price),
        detail=detail,
    )
