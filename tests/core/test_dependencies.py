"""Core resolves dependencies: when a job ends, every pending job that waits for it learns
whether that ending satisfies it, and a placement of a job still waiting is refused."""

from __future__ import annotations

from bus.connection import Bus
from bus.deployment import StateDir
from core.batch import State, Working, apply, decide_command, index_dependents
from core.job import Actor, Job, decide_cancel, decide_submit
from core.store import Store
from schemas.commands import (
    Accepted,
    AnyCommand,
    AnyReply,
    CancelJob,
    PlaceJobs,
    Placement,
    PlaceReply,
    RejectCode,
    SubmitJob,
)
from schemas.events import JobDependencyResolved
from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import (
    Allocation,
    Dependency,
    DependencyKind,
    JobSpec,
    JobState,
    NodeAllocation,
    PendingReason,
)
from tests.core.conftest import start_core

ALICE = Actor(name=UserName("alice"))
_n = iter(range(1, 10_000))


class Core:
    """Batches decided against a State and applied to it, as core's writer does; finished
    jobs are "loaded" from what earlier batches recorded, as the store would."""

    def __init__(self) -> None:
        self.state = State()
        self.recorded: dict[JobId, Job] = {}
        self.resolved: list[JobDependencyResolved] = []

    def batch(self, *cmds: AnyCommand) -> list[AnyReply]:
        finished = {j: job for j, job in self.recorded.items() if job.finished}
        work = Working(self.state, finished, 1000.0)
        replies = [decide_command(work, ALICE, cmd) for cmd in cmds]
        apply(self.state, work.commit)
        self.recorded.update(work.commit.jobs)
        self.resolved += [e for _, e in work.commit.events if isinstance(e, JobDependencyResolved)]
        return replies


def _submit(*deps: tuple[DependencyKind, str]) -> SubmitJob:
    spec = JobSpec(
        script="true", dependencies=tuple(Dependency(kind=k, job_id=JobId(j)) for k, j in deps)
    )
    return SubmitJob(id=MessageId(f"s{next(_n)}"), at=1000.0, spec=spec)


def _cancel(job_id: str) -> CancelJob:
    return CancelJob(id=MessageId(f"c{next(_n)}"), at=1000.0, job_id=JobId(job_id))


def test_a_dependency_that_ends_later_is_resolved_on_its_dependents() -> None:
    core = Core()
    core.batch(_submit())  # job 1
    core.batch(_submit((DependencyKind.AFTEROK, "1")), _submit((DependencyKind.AFTERNOTOK, "1")))
    assert core.state.jobs[JobId("2")].reason == PendingReason.DEPENDENCY
    assert core.state.dependents == {JobId("1"): {JobId("2"), JobId("3")}}
    core.batch(_cancel("1"))
    assert [(e.job_id, e.dependency, e.ended_as, e.satisfied) for e in core.resolved] == [
        ("2", "1", JobState.CANCELLED, False),
        ("3", "1", JobState.CANCELLED, True),
    ]
    assert core.state.jobs[JobId("2")].reason == PendingReason.DEPENDENCY_NEVER
    assert core.state.jobs[JobId("3")].dependencies_met
    assert JobId("1") not in core.state.dependents  # resolved, so forgotten


def test_a_dependency_that_ended_before_the_submission_is_resolved_at_once() -> None:
    core = Core()
    core.batch(_submit(), _submit())  # jobs 1 and 2
    core.batch(_cancel("1"))
    core.batch(_submit((DependencyKind.AFTERANY, "1"), (DependencyKind.AFTEROK, "2")))
    job = core.state.jobs[JobId("3")]
    assert job.met == ("1",) and not job.dependencies_met  # job 2 has not ended
    assert core.state.dependents == {JobId("2"): {JobId("3")}}


def test_the_same_batch_may_end_a_job_and_submit_one_that_depends_on_it_in_any_order() -> None:
    core = Core()
    core.batch(_submit(), _submit())  # jobs 1 and 2
    core.batch(_submit((DependencyKind.AFTERNOTOK, "1")), _cancel("1"))  # job 3, then end 1
    core.batch(_cancel("2"), _submit((DependencyKind.AFTERNOTOK, "2")))
    assert [(e.job_id, e.satisfied) for e in core.resolved] == [("3", True), ("4", True)]


def test_a_placement_of_a_job_still_waiting_for_a_dependency_is_refused() -> None:
    core = Core()
    core.batch(_submit(), _submit((DependencyKind.AFTEROK, "1")))
    share = NodeAllocation(node="n", host="h", cpus=1, memory_mb=0)
    place = PlaceJobs(
        id=MessageId("p"),
        at=1000.0,
        plan_id=PlanId("p"),
        placements=(
            Placement(
                job_id=JobId("2"),
                attempt=1,
                allocation=Allocation(gate=GateName("g"), nodes=(share,)),
            ),
        ),
    )
    [reply] = core.batch(place)
    assert isinstance(reply, PlaceReply) and not reply.accepted
    [refusal] = reply.rejected
    assert refusal.code is RejectCode.INVALID_STATE and "waits for job 1" in refusal.detail


def test_the_dependents_index_is_rebuilt_from_the_unfinished_jobs() -> None:
    core = Core()
    replies = core.batch(
        _submit(),
        _submit((DependencyKind.AFTEROK, "1")),
        _submit((DependencyKind.AFTERANY, "1"), (DependencyKind.AFTERANY, "2")),
    )
    assert all(isinstance(r, Accepted) for r in replies)
    assert (
        index_dependents(core.state.jobs.values())
        == core.state.dependents
        == {
            JobId("1"): {JobId("2"), JobId("3")},
            JobId("2"): {JobId("3")},
        }
    )


async def test_at_start_core_resolves_dependencies_on_jobs_that_ended_unresolved(
    state: StateDir, core_bus: Bus, nats_url: str, db_url: str
) -> None:
    # As a store written before core resolved dependencies: job 2 waits for job 1, which
    # was cancelled, and nothing was recorded on job 2.
    store = Store(db_url)
    try:
        work = Working(State(), {}, 1000.0)
        work.append(decide_submit(JobId("1"), ALICE, JobSpec(script="true"), 1000.0), True)
        work.append(decide_cancel(work.job(JobId("1")) or _never(), ALICE, 1000.0))
        dep = Dependency(kind=DependencyKind.AFTERNOTOK, job_id=JobId("1"))
        spec = JobSpec(script="true", dependencies=(dep,))
        work.append(decide_submit(JobId("2"), ALICE, spec, 1000.0), True)
        work.commit.last_job_id = 2
        work.commit.new_jobs.update({JobId("1"), JobId("2")})
        store.commit(work.commit)
    finally:
        store.close()
    core = await start_core(state, nats_url, db_url)
    try:
        job = core.service.state.jobs[JobId("2")]
        assert job.dependencies_met and core.service.state.dependents == {}
        [event] = [
            e for e in core.store.job_events(JobId("2")) if isinstance(e, JobDependencyResolved)
        ]
        assert (event.dependency, event.ended_as, event.satisfied) == (
            "1",
            JobState.CANCELLED,
            True,
        )
    finally:
        await core.close()


def test_a_cancelled_dependent_leaves_the_index() -> None:
    core = Core()
    core.batch(_submit(), _submit((DependencyKind.AFTEROK, "1")))
    assert core.state.dependents == {JobId("1"): {JobId("2")}}
    core.batch(_cancel("2"))
    assert core.state.dependents == {}


def _never() -> Job:
    raise AssertionError("job 1 was just submitted")
