"""Given/when/then tests of the lifecycle process manager and the over-commit guard (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core import capacity
from core.batch import State, Working, apply, decide_command, decide_gate_event
from core.job import Actor, decide_cancel, decide_requeue, decide_submit, evolve, replay
from core.lifecycle import follow
from schemas.commands import PlaceJobs, Placement, PlaceReply, SubmitJob
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
    return NodeAllocation(node=node, host="h", cpus=cpus, memory_mb=mem, gpus=gpus)


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


SHARES = st.builds(
    share,
    st.sampled_from(["n0", "n1", "n2"]),
    st.integers(0, 5),
    st.integers(0, 600),
    st.lists(st.integers(0, 2), max_size=2, unique=True).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(SHARES, min_size=1, max_size=2), min_size=1, max_size=12))
def test_no_node_is_ever_over_committed(requests: list[list[NodeAllocation]]) -> None:
    state = State(gates={"local": _cap()})
    work = Working(state, {}, 1.0)
    placements = []
    for shares in requests:
        reply = decide_command(
            work,
            ALICE,
            SubmitJob(id=MessageId("s"), at=1.0, spec=JobSpec(script="x", nodes=len(shares))),
        )
        job_id = JobId(str(work.commit.last_job_id))
        alloc = Allocation(gate=GateName("local"), nodes=tuple(shares))
        placements.append(Placement(job_id=job_id, attempt=1, allocation=alloc))
        assert reply
    reply = decide_command(
        work,
        SCHED,
        PlaceJobs(id=MessageId("p"), at=1.0, plan_id=PlanId("p"), placements=tuple(placements)),
    )
    assert isinstance(reply, PlaceReply)
    usage = capacity.usage_of(j.allocation for j in work.active_allocations() if j.allocation)
    shapes = {n.name: n for n in NODES}
    for (_, node), use in usage.items():
        assert use.cpus <= shapes[node].cpus
        assert use.memory_mb <= shapes[node].memory_mb
        assert use.gpu_count <= shapes[node].gpus
    assert len(reply.accepted) + len(reply.rejected) == len(placements)
