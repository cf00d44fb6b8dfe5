"""Invariants of the greedy pass, checked by hypothesis against a brute-force model.

No node is over-committed, a gang job gets all its nodes or none, held jobs are never placed,
the first blocked job could not have fitted at its turn (priority order), jobs started
behind it never delay the earliest start it had without them (EASY backfill), and no job
starts before its dependencies are satisfied, and no pass spends past a budget.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from scheduler.capacity import Need
from scheduler.policy import Policy, plan, queue, run_pass
from scheduler.priority import Weights
from scheduler.usage import Scope
from scheduler.view import PendingJob, View
from schemas.accounts import AccountEntry, Accounts, Budget, UserEntry
from schemas.commands import Placement
from schemas.events import JobCancelled, JobCompleted, JobFailed, JobHeld
from schemas.gate import GateCapacity
from schemas.ids import GateName, JobId, UserName
from schemas.jobs import (
    Allocation,
    Dependency,
    DependencyKind,
    FailReason,
    JobState,
    NodeShape,
    PendingReason,
)
from tests.scheduler.factories import (
    NOW,
    capacity,
    event_id,
    resolved,
    scheduled,
    submitted,
    used,
)

GATES = ("g1", "g2")


@st.composite
def gates(draw: st.DrawFn) -> list[GateCapacity]:
    out = []
    for gate in draw(st.lists(st.sampled_from(GATES), min_size=1, max_size=2, unique=True)):
        count = draw(st.integers(1, 4))
        nodes = tuple(
            NodeShape(
                name=f"{gate}-n{i}",
                cpus=draw(st.integers(1, 8)),
                memory_mb=draw(st.sampled_from((0, 1000, 4000))),
                gpus=draw(st.integers(0, 2)),
                price_per_hour=draw(st.sampled_from((0.0, 0.0, 1.0, 2.5))),  # cheapest first
            )
            for i in range(count)
        )
        out.append(capacity(gate, *nodes))
    return out


job_fields: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "nodes": st.integers(1, 3),
        "tasks_per_node": st.integers(1, 4),
        "cpus_per_task": st.integers(1, 2),
        "memory_mb_per_node": st.sampled_from((0, 500, 2000)),
        "gpus_per_node": st.integers(0, 2),
        "time_limit_s": st.sampled_from((10, 100, 1000)),
        "priority": st.integers(0, 2),
        "gate": st.sampled_from((None, None, *GATES)),
    }
)


@st.composite
def views(draw: st.DrawFn) -> View:
    """Gates, jobs already running (placed by an earlier pass), and a new queue."""
    view = View()
    for gate in draw(gates()):
        view.apply_gate_event(gate)
    number = 0
    for fields in draw(st.lists(job_fields, min_size=2, max_size=8)):
        number += 1
        view.apply_job_event(submitted(str(number), **fields))
    earlier = NOW - draw(st.sampled_from((0, 50, 500)))
    for placement in plan(view, earlier):
        view.apply_job_event(scheduled(placement, at=earlier))
    for fields in draw(st.lists(job_fields, min_size=2, max_size=14)):
        number += 1
        view.apply_job_event(submitted(str(number), **fields))
        if draw(st.booleans()) and draw(st.booleans()):
            view.apply_job_event(
                JobHeld(event_id=event_id(), job_id=JobId(str(number)), at=NOW, by=UserName("a"))
            )
    return view


def _shapes(view: View) -> dict[tuple[GateName, str], NodeShape]:
    return {(g.gate, n.name): n for g in view.live_gates(NOW) for n in g.nodes}


def _used(allocations: Iterable[Allocation]) -> dict[tuple[GateName, str], list[int]]:
    used: dict[tuple[GateName, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for alloc in allocations:
        for share in alloc.nodes:
            u = used[(alloc.gate, share.node)]
            u[0] += share.cpus
            u[1] += share.memory_mb
            u[2] += len(share.gpus)
    return used


def _fits(
    view: View, job: PendingJob, held: list[tuple[float, Allocation]], at: float | None
) -> bool:
    """Brute force: does ``job`` have its nodes now (None) or once jobs ending by ``at`` end?

    Jobs past their time limit are expected to end at NOW, but hold their nodes until then.
    """
    need = Need.of(job.spec)
    used = _used(a for end, a in held if at is None or end > at)
    free_nodes: dict[GateName, int] = defaultdict(int)
    for (gate, name), shape in _shapes(view).items():
        u = used[(gate, name)]
        if need.within(shape.cpus - u[0], shape.memory_mb - u[1], shape.gpus - u[2]):
            free_nodes[gate] += 1
    gates = [job.spec.gate] if job.spec.gate is not None else list(free_nodes)
    return any(free_nodes[g] >= job.spec.nodes for g in gates)


def _capable(view: View, job: PendingJob) -> bool:
    return _fits(view, job, [], None)


def _running(view: View) -> list[tuple[float, Allocation]]:
    return [(max(j.expected_end, NOW), j.allocation) for j in view.active.values()]


def _new(view: View, placements: list[Placement]) -> list[tuple[float, Allocation]]:
    return [(NOW + view.pending[p.job_id].spec.time_limit_s, p.allocation) for p in placements]


@settings(max_examples=300, deadline=None)
@given(views())
def test_no_node_is_over_committed(view: View) -> None:
    placements = plan(view, NOW)
    allocations = [j.allocation for j in view.active.values()] + [p.allocation for p in placements]
    shapes = _shapes(view)
    for key, (cpus, memory, gpus) in _used(allocations).items():
        shape = shapes[key]
        assert cpus <= shape.cpus and memory <= shape.memory_mb and gpus <= shape.gpus
    gpu_owners: dict[tuple[GateName, str, int], int] = {}
    for n, alloc in enumerate(allocations):
        for share in alloc.nodes:
            for gpu in share.gpus:
                assert 0 <= gpu < shapes[(alloc.gate, share.node)].gpus
                assert gpu_owners.setdefault((alloc.gate, share.node, gpu), n) == n


@settings(max_examples=300, deadline=None)
@given(views())
def test_gang_job_gets_all_its_nodes_on_one_gate_or_none(view: View) -> None:
    for placement in plan(view, NOW):
        job = view.pending[placement.job_id]
        shares = placement.allocation.nodes
        assert len({s.node for s in shares}) == len(shares) == job.spec.nodes
        assert job.spec.gate in (None, placement.allocation.gate)
        need = Need.of(job.spec)
        assert all(Need(s.cpus, s.memory_mb, len(s.gpus)) == need for s in shares)
        assert placement.attempt == job.attempt


@settings(max_examples=300, deadline=None)
@given(views())
def test_held_jobs_are_never_placed(view: View) -> None:
    held = {j.job_id for j in view.pending.values() if j.held}
    assert not held & {p.job_id for p in plan(view, NOW)}


@settings(max_examples=500, deadline=None)
@given(views())
def test_backfill_never_delays_the_top_reservation(view: View) -> None:
    placements = plan(view, NOW)
    placed = {p.job_id for p in placements}
    order = queue(view, NOW, Weights())
    blocked = next((j for j in order if j.job_id not in placed and _capable(view, j)), None)
    if blocked is None:
        return
    ahead_of = {j.job_id for j in order[: order.index(blocked)]}
    before = [p for p in placements if p.job_id in ahead_of]
    ahead = _running(view) + _new(view, before)
    # Priority order: at its turn, the blocked job really did not fit.
    assert not _fits(view, blocked, ahead, None)
    # Its earliest start without anything behind it ...
    start = min(t for t in sorted({NOW, *(e for e, _ in ahead)}) if _fits(view, blocked, ahead, t))
    event("backfilled" if len(before) < len(placements) else "nothing behind the blocked job")
    # ... still holds with everything the pass started.
    assert _fits(view, blocked, _running(view) + _new(view, placements), start)


@st.composite
def views_with_dependencies(draw: st.DrawFn) -> tuple[View, dict[JobId, str]]:
    """Gates; earlier jobs of which some ended (completed, failed or cancelled); and a queue
    whose jobs may depend on the earlier ones, in every kind. With how each earlier job
    ended ("running" if it has not)."""
    outcomes: dict[JobId, str] = {}
    view = View()
    for gate in draw(gates()):
        view.apply_gate_event(gate)
    earlier = draw(st.integers(1, 6))
    for n in range(1, earlier + 1):
        view.apply_job_event(submitted(str(n), cpus_per_task=1, gate=draw(st.sampled_from(GATES))))
        end = draw(st.sampled_from(("running", "completed", "failed", "cancelled")))
        eid, jid = event_id(), JobId(str(n))
        outcomes[jid] = end
        if end == "completed":
            view.apply_job_event(JobCompleted(event_id=eid, job_id=jid, at=NOW, attempt=1))
        elif end == "failed":
            reason = FailReason.EXIT_CODE
            view.apply_job_event(
                JobFailed(event_id=eid, job_id=jid, at=NOW, attempt=1, reason=reason)
            )
        elif end == "cancelled":
            view.apply_job_event(JobCancelled(event_id=eid, job_id=jid, at=NOW, by=UserName("a")))
    for n in range(earlier + 1, earlier + draw(st.integers(2, 10)) + 1):
        deps = draw(
            st.lists(
                st.builds(
                    Dependency,
                    kind=st.sampled_from(list(DependencyKind)),
                    job_id=st.integers(1, earlier).map(lambda i: JobId(str(i))),
                ),
                max_size=3,
                unique_by=lambda d: d.job_id,
            )
        )
        fields = {**draw(job_fields), "dependencies": tuple(deps)}
        view.apply_job_event(submitted(str(n), **fields))
        for dep in deps:  # what core records for the dependencies that have ended
            if outcomes[dep.job_id] != "running":
                view.apply_job_event(resolved(str(n), dep, JobState(outcomes[dep.job_id])))
    return view, outcomes


ALLOWED = {
    DependencyKind.AFTEROK: {"completed"},
    DependencyKind.AFTERNOTOK: {"failed", "cancelled"},
    DependencyKind.AFTERANY: {"completed", "failed", "cancelled"},
}


@settings(max_examples=300, deadline=None)
@given(views_with_dependencies())
def test_dependencies_hold(drawn: tuple[View, dict[JobId, str]]) -> None:
    view, outcomes = drawn
    placed = plan(view, NOW)
    for placement in placed:
        for dep in view.pending[placement.job_id].spec.dependencies:
            assert outcomes[dep.job_id] in ALLOWED[dep.kind], (placement.job_id, dep)
    dependent = [p for p in placed if view.pending[p.job_id].spec.dependencies]
    event("placed a dependent job" if dependent else "placed no dependent job")


CAPS = st.sampled_from((None, 0.0, 0.5, 2.0, 10.0, 50.0))


def _cost_per_hour(view: View, allocation: Allocation) -> float:
    """Brute force: each share's part of its node × the node's price."""
    shapes = _shapes(view)
    total = 0.0
    for share in allocation.nodes:
        shape = shapes[(allocation.gate, share.node)]
        parts = [share.cpus / shape.cpus]
        parts += [share.memory_mb / shape.memory_mb] if shape.memory_mb else []
        parts += [len(share.gpus) / shape.gpus] if shape.gpus else []
        total += max(parts) * shape.price_per_hour
    return total


@st.composite
def budgeted_views(draw: st.DrawFn) -> tuple[View, Accounts]:
    """Two users (one account between them), jobs running at their placements' prices,
    spend already recorded, and caps drawn on both users and the account."""
    view = View()
    for gate in draw(gates()):
        view.apply_gate_event(gate)
    owners = st.sampled_from(("alice", "bob"))
    accounts = st.sampled_from((None, "physics"))
    number = 0
    for running in (True, False):
        for fields in draw(st.lists(job_fields, min_size=1, max_size=8)):
            number += 1
            owner, account = draw(owners), draw(accounts)
            view.apply_job_event(submitted(str(number), owner=owner, account=account, **fields))
        if running:
            for p in plan(view, NOW):
                price = _cost_per_hour(view, p.allocation)
                view.apply_job_event(scheduled(p, price_per_hour=price))
    for n in range(draw(st.integers(0, 3))):
        cost = draw(st.sampled_from((0.0, 1.0, 5.0)))
        view.apply_job_event(used(f"{900 + n}", cost, draw(owners), draw(accounts)))
    caps = {who: draw(CAPS) for who in ("alice", "bob", "physics")}
    return view, Accounts(
        users={u: UserEntry(budget=_budget(caps[u])) for u in ("alice", "bob")},
        accounts={
            "physics": AccountEntry(members=("alice", "bob"), budget=_budget(caps["physics"]))
        },
    )


def _budget(limit: float | None) -> Budget | None:
    return None if limit is None else Budget(limit=limit)


@settings(max_examples=400, deadline=None)
@given(budgeted_views())
def test_placements_never_exceed_a_budget(drawn: tuple[View, Accounts]) -> None:
    view, accounts = drawn
    result = run_pass(view, NOW, policy=Policy(accounts=accounts))
    scopes = [(Scope.USER, "alice"), (Scope.USER, "bob"), (Scope.ACCOUNT, "physics")]
    for scope in scopes:
        budget = (
            accounts.user_budget(scope[1])
            if scope[0] is Scope.USER
            else accounts.account_budget(scope[1])
        )
        if budget is None:
            continue

        def charges(owner: str, account: str | None, scope: tuple[Scope, str] = scope) -> bool:
            return scope in ((Scope.USER, owner), (Scope.ACCOUNT, account or owner))

        running = sum(
            j.estimated_cost for j in view.active.values() if charges(j.owner, j.spec.account)
        )
        left = budget.limit - view.spend.since(*scope, 0) - running
        new = 0.0
        for p in result.placements:
            job = view.pending[p.job_id]
            cost = _cost_per_hour(view, p.allocation) * job.spec.time_limit_s / 3600
            if cost > 0 and charges(job.owner, job.spec.account):
                new += cost
        assert new <= max(left, 0.0) + 1e-9
    refused = [w for w in result.waiting.values() if w.reason is PendingReason.BUDGET]
    event("some job waits for budget" if refused else "no budget wait")
