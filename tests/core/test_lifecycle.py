"""Given/when/then tests of the lifecycle process manager and the over-commit guard (pure)."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from core import capacity
from core.batch import State, Working, apply, decide_command, decide_gate_event
from core.job import Actor, decide_cancel, decide_requeue, decide_submit, evolve, replay
from core.lifecycle import follow
from schemas.commands import Accepted, PlaceJobs, Placement, PlaceReply, RejectCode, SubmitJob
from schemas.gate import GateCapacity, StartRun, StopRun
from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import Allocation, JobSpec, NodeAllocation, NodeShape

ALICE = Actor(name=UserName("alice"))
SCHED = Actor(name=UserName("scheduler"))
NODES = (
    NodeShape(name="n0", cpus=4, memory_mb=1000, gpus=2),
    NodeShape(name="n1", cpus=2, memory_mb=500),
)


def share(node: str, cpus: int, mem: int = 0, gpus: tuple[int, ...] = ()) -> NodeAllocation:
    return NodeAllocation(node=node, host="localhost", cpus=cpus, memory_mb=mem, gpus=gpus)


def test_a_scheduled_job_is_started_on_its_gate() -> None:
    job = replay(list(decide_submit(JobId("3"), ALICE, JobSpec(script="x"), 1.0)))
    assert job is not None
    state = State(jobs={job.job_id: job}, gates={"local": _cap()})
    work = Working(state, {}, 2.0)
    alloc = Allocation(gate=GateName("local"), nodes=(share("n0", 1),))
    decide_command(
        work,
        SCHED,
        PlaceJobs(
            id=MessageId("p"),
            at=1.0,
            plan_id=PlanId("p"),
            placements=(Placement(job_id=job.job_id, attempt=1, allocation=alloc),),
        ),
    )
    ((subject, start),) = work.commit.outbox
    assert subject == "skyport.v1.cmd.gate.local.start"
    assert isinstance(start, StartRun) and start.id == "3-1-start" and start.allocation == alloc


def test_only_the_first_stop_request_of_an_attempt_sends_stop_run() -> None:
    job = replay(list(decide_submit(JobId("3"), ALICE, JobSpec(script="x"), 1.0)))
    assert job is not None
    state = State(jobs={job.job_id: job}, gates={"local": _cap()})
    work = Working(state, {}, 2.0)
    alloc = Allocation(gate=GateName("local"), nodes=(share("n0", 1),))
    place = Placement(job_id=job.job_id, attempt=1, allocation=alloc)
    decide_command(
        work, SCHED, PlaceJobs(id=MessageId("p"), at=1.0, plan_id=PlanId("p"), placements=(place,))
    )
    apply(state, work.commit)
    job = state.jobs[job.job_id]
    (requeue,) = decide_requeue(job, ALICE, 3.0)
    after = evolve(job, requeue)
    ((subject, stop),) = follow(job, after, requeue)
    assert subject == "skyport.v1.cmd.gate.local.stop"
    assert isinstance(stop, StopRun) and stop.reason == "requeue" and stop.id == "3-1-stop"
    (cancel,) = decide_cancel(after, ALICE, 4.0)
    assert follow(after, evolve(after, cancel), cancel) == []


def _cap(nodes: tuple[NodeShape, ...] = NODES) -> GateCapacity:
    return GateCapacity(event_id=MessageId("c"), at=0.0, gate=GateName("local"), nodes=nodes)


def test_capacity_reports_are_kept_per_gate() -> None:
    state = State()
    work = Working(state, {}, 1.0)
    decide_gate_event(work, _cap())
    apply(state, work.commit)
    assert state.gates["local"].nodes == NODES


def _submit_and_place(
    work: Working, requests: list[tuple[JobSpec, tuple[NodeAllocation, ...]]]
) -> PlaceReply:
    placements = []
    for spec, shares in requests:
        reply = decide_command(work, ALICE, SubmitJob(id=MessageId("s"), at=1.0, spec=spec))
        assert isinstance(reply, Accepted) and reply.job_id is not None, reply
        alloc = Allocation(gate=GateName("local"), nodes=shares)
        placements.append(Placement(job_id=reply.job_id, attempt=1, allocation=alloc))
    reply = decide_command(
        work,
        SCHED,
        PlaceJobs(id=MessageId("p"), at=1.0, plan_id=PlanId("p"), placements=tuple(placements)),
    )
    assert isinstance(reply, PlaceReply)
    return reply


def test_shares_that_understate_the_job_or_name_another_host_are_refused() -> None:
    node = NodeShape(name="n0", cpus=8, memory_mb=1000, gpus=2, host="node0.example")
    work = Working(State(gates={"local": _cap((node,))}), {}, 1.0)
    spec = JobSpec(script="x", cpus_per_task=8, memory_mb_per_node=1000, gpus_per_node=2)
    liar = NodeAllocation(node="n0", host="203.0.113.9", cpus=0, memory_mb=0)
    reply = _submit_and_place(work, [(spec, (liar,))] * 20)
    assert reply.accepted == ()
    assert {r.code for r in reply.rejected} == {RejectCode.INVALID_STATE}
    assert "needs 8 cpus, 1000 MB and 2 GPUs per node" in reply.rejected[0].detail
    honest = NodeAllocation(node="n0", host="node0.example", cpus=8, memory_mb=1000, gpus=(0, 1))
    other_host = msgspec.structs.replace(honest, host="203.0.113.9")
    bad_gpu = msgspec.structs.replace(honest, gpus=(1, 2))
    reply = _submit_and_place(
        work, [(spec, (other_host,)), (spec, (bad_gpu,)), (spec, (honest,)), (spec, (honest,))]
    )
    assert reply.accepted == ("23",)
    assert [r.detail for r in reply.rejected] == [
        "node n0 is on host node0.example, not 203.0.113.9",
        "node n0 has GPUs 0..1, not [1, 2]",
        "over-commits node n0",
    ]


@st.composite
def requests(draw: st.DrawFn) -> tuple[JobSpec, tuple[NodeAllocation, ...]]:
    """A job's per-node request and shares of exactly that size on distinct nodes."""
    cpus, mem, gpus = draw(st.integers(1, 5)), draw(st.integers(0, 600)), draw(st.integers(0, 2))
    nodes = draw(st.lists(st.sampled_from(["n0", "n1", "n2"]), min_size=1, max_size=2, unique=True))
    indices = st.lists(st.integers(0, 2), min_size=gpus, max_size=gpus, unique=True)
    shares = tuple(share(n, cpus, mem, tuple(draw(indices))) for n in nodes)
    spec = JobSpec(
        script="x",
        nodes=len(nodes),
        cpus_per_task=cpus,
        memory_mb_per_node=mem,
        gpus_per_node=gpus,
    )
    return spec, shares


@settings(max_examples=150, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=12))
def test_no_node_is_ever_over_committed(
    jobs: list[tuple[JobSpec, tuple[NodeAllocation, ...]]],
) -> None:
    work = Working(State(gates={"local": _cap()}), {}, 1.0)
    reply = _submit_and_place(work, jobs)
    usage = capacity.usage_of(j.allocation for j in work.active_allocations() if j.allocation)
    shapes = {n.name: n for n in NODES}
    for (_, node), use in usage.items():
        assert use.cpus <= shapes[node].cpus
        assert use.memory_mb <= shapes[node].memory_mb
        assert use.gpu_count <= shapes[node].gpus
        assert all(0 <= g < shapes[node].gpus for g in use.gpus)
    assert len(reply.accepted) + len(reply.rejected) == len(jobs)


def test_offers_say_a_gate_is_down_after_three_silent_intervals() -> None:
    cap = _cap()  # heard at 0.0, every 10 s
    (fresh,) = capacity.offers({"local": cap}, (), now=30.0)
    (stale,) = capacity.offers({"local": cap}, (), now=30.5)
    assert fresh.live and not stale.live and stale.last_seen == 0.0
    assert [o.used_cpus for o in stale.nodes] == [0] * len(NODES)
