"""Group commit, the deciding half: a batch of work decided in order against an overlay. Pure.

Core's in-memory state (``State``) is only changed after the store has committed a batch:
every item is decided against a ``Working`` overlay, and what the batch wants written (events,
inbox marks, job rows with snapshots, gate commands, gate capacities) gathers in a ``Commit``.
A failing item leaves the overlay as it was, so it cannot spoil the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from core import capacity
from core.job import (
    Actor,
    Job,
    JobRuleError,
    decide_cancel,
    decide_hold,
    decide_place,
    decide_release,
    decide_requeue,
    decide_run_event,
    decide_submit,
    evolve,
)
from core.lifecycle import Outbound, follow
from core.waiting import decide_dependency, decide_waiting
from schemas.accounts import Accounts
from schemas.commands import (
    Accepted,
    AnyCommand,
    AnyReply,
    CancelJob,
    HoldJob,
    PlaceJobs,
    PlaceRejection,
    PlaceReply,
    RejectCode,
    Rejected,
    ReleaseJob,
    ReportWaiting,
    RequeueJob,
    SubmitJob,
)
from schemas.events import AnyJobEvent
from schemas.gate import GateCapacity, RunEvent
from schemas.ids import JobId, MessageId
from schemas.jobs import Allocation, JobState, NodeShape, node_share


@dataclass
class State:
    """What core keeps in memory: non-finished jobs, gates' nodes, the last job id, and the
    accounts file (who may charge which account)."""

    jobs: dict[JobId, Job] = field(default_factory=dict)
    gates: dict[str, GateCapacity] = field(default_factory=dict)
    last_job_id: int = 0
    accounts: Accounts = field(default_factory=Accounts)
    dependents: dict[JobId, set[JobId]] = field(default_factory=dict)
    """Per unfinished job: the pending jobs that wait for it to end (``index_dependents``)."""


@dataclass
class Commit:
    """Everything one batch writes, in one transaction."""

    events: list[tuple[Job, AnyJobEvent]] = field(default_factory=list)
    inbox: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[JobId, Job] = field(default_factory=dict)
    new_jobs: set[JobId] = field(default_factory=set)
    outbox: list[Outbound] = field(default_factory=list)
    gates: dict[str, GateCapacity] = field(default_factory=dict)
    last_job_id: int = 0
    dependents: dict[JobId, set[JobId]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.events or self.inbox or self.gates)


_reply_encoder = msgspec.json.Encoder()


class Working:
    """An overlay over ``State`` that collects one batch's changes in a ``Commit``."""

    def __init__(self, state: State, loaded: dict[JobId, Job], now: float) -> None:
        self.state = state
        self.loaded = loaded  # finished jobs read from the store for this batch
        self.now = now
        self.commit = Commit(last_job_id=state.last_job_id)

    def job(self, job_id: JobId) -> Job | None:
        return (
            self.commit.jobs.get(job_id) or self.state.jobs.get(job_id) or self.loaded.get(job_id)
        )

    def nodes(self, gate: str) -> dict[str, NodeShape] | None:
        cap = self.commit.gates.get(gate) or self.state.gates.get(gate)
        return None if cap is None else {n.name: n for n in cap.nodes}

    def active_allocations(self) -> Iterable[Job]:
        merged = {**self.state.jobs, **self.commit.jobs}
        return (j for j in merged.values() if j.on_gate and j.allocation is not None)

    def append(self, events: list[AnyJobEvent], is_new: bool = False) -> Job | None:
        """Fold events into the overlay and queue them, their job row and gate commands."""
        job: Job | None = None
        for event in events:
            before = self.job(event.job_id) if not is_new else None
            job = evolve(before, event)
            self.commit.events.append((job, event))
            self.commit.jobs[job.job_id] = job
            self.commit.outbox.extend(follow(before, job, event))
            is_new = False
            if job.finished and (before is None or not before.finished):
                self.resolve_dependents(job)
        return job

    def resolve_dependents(self, ended: Job) -> None:
        """Record on every pending job that waits for ``ended`` how that ending counts."""
        waiting = self.state.dependents.get(ended.job_id, set())
        waiting = waiting | self.commit.dependents.get(ended.job_id, set())
        for job_id in sorted(waiting, key=int):
            dependent = self.job(job_id)
            if dependent is not None:
                self.append(decide_dependency(dependent, ended, self.now))

    def register_dependencies(self, job: Job) -> None:
        """A new job's dependencies: those already ended are resolved now, the others when
        they end."""
        for dep in job.spec.dependencies:
            other = self.job(dep.job_id)
            if other is not None and other.finished:
                self.append(decide_dependency(job, other, self.now))
                job = self.job(job.job_id) or job
            else:
                self.commit.dependents.setdefault(dep.job_id, set()).add(job.job_id)

    def mark(self, key: str, reply: AnyReply | None) -> None:
        self.commit.inbox[key] = b"" if reply is None else _reply_encoder.encode(reply)


def decide_command(work: Working, actor: Actor, cmd: AnyCommand) -> AnyReply:
    """Decide one user or scheduler command against the overlay; return the reply."""
    if isinstance(cmd, SubmitJob):
        refused = _bad_account(work, actor, cmd) or _bad_dependency(work, actor, cmd)
        if refused is not None:
            return refused
        job_id = JobId(str(work.commit.last_job_id + 1))
        job = work.append(decide_submit(job_id, actor, cmd.spec, work.now), is_new=True)
        if job is not None:
            work.register_dependencies(job)
        work.commit.last_job_id += 1
        work.commit.new_jobs.add(job_id)
        return Accepted(to=cmd.id, job_id=job_id, detail=f"job {job_id} submitted")
    if isinstance(cmd, PlaceJobs):
        return _place(work, cmd)
    if isinstance(cmd, ReportWaiting):
        return _waiting(work, cmd)
    job = work.job(cmd.job_id)
    if job is None:
        return Rejected(to=cmd.id, code=RejectCode.UNKNOWN_JOB, detail=f"no job {cmd.job_id}")
    decide = _DECIDERS[type(cmd)]
    try:
        events = decide(job, actor, work.now)
    except JobRuleError as err:
        return Rejected(to=cmd.id, code=err.code, detail=err.detail)
    work.append(events)
    if not events:
        return Accepted(to=cmd.id, job_id=job.job_id, detail=_unchanged(job))
    return Accepted(to=cmd.id, job_id=job.job_id, detail=events[-1].detail)


_DECIDERS: dict[type[AnyCommand], Callable[[Job, Actor, float], list[AnyJobEvent]]] = {
    CancelJob: decide_cancel,
    RequeueJob: decide_requeue,
    HoldJob: decide_hold,
    ReleaseJob: decide_release,
}


def _billing(alloc: Allocation, nodes: dict[str, NodeShape] | None) -> tuple[float, float]:
    """Price per hour and whole-node equivalent of an allocation's shares (unknown nodes,
    which the capacity check refuses anyway, count for nothing)."""
    price = share = 0.0
    for part in alloc.nodes:
        node = (nodes or {}).get(part.node)
        if node is not None:
            fraction = node_share(node, part.cpus, part.memory_mb, len(part.gpus))
            price += fraction * node.price_per_hour
            share += fraction
    return price, share


def _bad_account(work: Working, actor: Actor, cmd: SubmitJob) -> Rejected | None:
    """Only a member may charge an account (``Accounts.refusal``)."""
    why = work.state.accounts.refusal(actor.name, cmd.spec.account, actor.admin)
    return None if why is None else Rejected(to=cmd.id, code=RejectCode.NOT_MEMBER, detail=why)


def _bad_dependency(work: Working, actor: Actor, cmd: SubmitJob) -> Rejected | None:
    """A dependency must name an existing job of the submitter's (any job, for an admin)."""
    for dep in cmd.spec.dependencies:
        other = work.job(dep.job_id)
        if other is None:
            detail = f"dependency on job {dep.job_id}, which does not exist"
            return Rejected(to=cmd.id, code=RejectCode.UNKNOWN_JOB, detail=detail)
        if other.owner != actor.name and not actor.admin:
            detail = f"dependency on job {dep.job_id}, which is not yours"
            return Rejected(to=cmd.id, code=RejectCode.NOT_OWNER, detail=detail)
    return None


def _unchanged(job: Job) -> str:
    if job.finished:
        return f"job {job.job_id} is already {job.state}: nothing changed"
    return f"job {job.job_id} is already being stopped: nothing changed"


def _place(work: Working, cmd: PlaceJobs) -> PlaceReply:
    usage = capacity.usage_of(j.allocation for j in work.active_allocations() if j.allocation)
    accepted: list[JobId] = []
    rejected: list[PlaceRejection] = []
    for placement in cmd.placements:
        job = work.job(placement.job_id)
        if job is None:
            rejected.append(
                PlaceRejection(
                    job_id=placement.job_id,
                    code=RejectCode.UNKNOWN_JOB,
                    detail=f"no job {placement.job_id}",
                )
            )
            continue
        try:
            price, share = _billing(placement.allocation, work.nodes(placement.allocation.gate))
            events = decide_place(job, placement, cmd.plan_id, work.now, price, share)
        except JobRuleError as err:
            rejected.append(PlaceRejection(job_id=job.job_id, code=err.code, detail=err.detail))
            continue
        why = capacity.misfit(placement.allocation, work.nodes(placement.allocation.gate), usage)
        if why is not None:
            rejected.append(
                PlaceRejection(job_id=job.job_id, code=RejectCode.INVALID_STATE, detail=why)
            )
            continue
        capacity.add(usage, placement.allocation)
        work.append(events)
        accepted.append(job.job_id)
    return PlaceReply(to=cmd.id, accepted=tuple(accepted), rejected=tuple(rejected))


def _waiting(work: Working, cmd: ReportWaiting) -> Accepted:
    """Record the pending reasons that changed; notes of unknown or moved-on jobs are moot."""
    recorded = 0
    for note in cmd.notes:
        job = work.job(note.job_id)
        if job is not None:
            events = decide_waiting(job, note, work.now)
            work.append(events)
            recorded += len(events)
    return Accepted(to=cmd.id, detail=f"{recorded} of {len(cmd.notes)} reasons recorded")


def decide_gate_event(work: Working, ev: GateCapacity | RunEvent) -> None:
    """Fold one gate report into the overlay (stale or unknown runs change nothing)."""
    if isinstance(ev, GateCapacity):
        work.commit.gates[ev.gate] = ev
        return
    job = work.job(ev.job_id)
    if job is None or job.finished:
        return
    work.append(decide_run_event(job, ev, work.now))


def apply(state: State, commit: Commit) -> None:
    """After the commit is durable: make the overlay the state (finished jobs leave memory)."""
    for dependency, waiting in commit.dependents.items():
        state.dependents.setdefault(dependency, set()).update(waiting)
    for job_id, job in commit.jobs.items():
        if job.finished:
            state.jobs.pop(job_id, None)
            state.dependents.pop(job_id, None)  # its dependents were resolved in the commit
            for dep in job.spec.dependencies:  # and it waits for nothing any more
                others = state.dependents.get(dep.job_id)
                if others is not None:
                    others.discard(job_id)
                    if not others:
                        del state.dependents[dep.job_id]
        else:
            state.jobs[job_id] = job
    state.gates.update(commit.gates)
    state.last_job_id = max(state.last_job_id, commit.last_job_id)


def index_dependents(jobs: Iterable[Job]) -> dict[JobId, set[JobId]]:
    """Which pending jobs wait for which job to end (rebuilt from the jobs at load)."""
    index: dict[JobId, set[JobId]] = {}
    for job in jobs:
        if job.state is JobState.PENDING:
            for dep in job.spec.dependencies:
                if dep.job_id not in job.met and dep.job_id != job.broken:
                    index.setdefault(dep.job_id, set()).add(job.job_id)
    return index


def inbox_key(kind: str, sender: str, message_id: MessageId) -> str:
    """Inbox keys are per sender so one identity cannot pre-empt another's message ids."""
    return f"{kind}:{sender}:{message_id}"
