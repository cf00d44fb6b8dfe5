"""The scheduler's view of the queue and of the gates, folded from events.

Pure: no I/O and no clock (liveness is judged with a ``now`` passed in). The view is mutable
for speed, since a fold over 10^5 events must not copy dictionaries, but it changes only
through ``apply_job_event`` and ``apply_gate_event``. Core is the only writer of job facts;
the view just follows them, and ``version`` counts the changes that are worth a new pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_never

import msgspec

from scheduler.usage import Decayed, Scope, Spend
from schemas.events import (
    AnyJobEvent,
    JobCancelled,
    JobCompleted,
    JobDependencyResolved,
    JobFailed,
    JobHeld,
    JobReleased,
    JobRequeued,
    JobScheduled,
    JobStagingIn,
    JobStagingOut,
    JobStarted,
    JobStopRequested,
    JobSubmitted,
    JobUsageRecorded,
    JobWaiting,
)
from schemas.gate import (
    AnyGateEvent,
    GateCapacity,
    RunEnded,
    RunStagingIn,
    RunStagingOut,
    RunStarted,
    is_live,
)
from schemas.ids import GateName, JobId, UserName
from schemas.jobs import Allocation, JobSpec, NodeShape, PendingReason


class PendingJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job waiting for a placement; ``held`` ones are not placeable."""

    job_id: JobId
    owner: UserName
    spec: JobSpec
    attempt: int = 1
    held: bool = False
    arrival: int = 0
    submitted_at: float = 0.0
    reason: PendingReason | None = None  # as core last recorded it (JobWaiting)
    reason_detail: str = ""
    met: tuple[JobId, ...] = ()  # dependencies core found satisfied
    broken: JobId | None = None  # a dependency that ended the wrong way
    broken_detail: str = ""


class ActiveJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job holding an allocation, from JobScheduled until it ends or is requeued."""

    job_id: JobId
    owner: UserName
    spec: JobSpec
    attempt: int
    allocation: Allocation
    since: float
    stopping: bool = False
    arrival: int = 0
    submitted_at: float = 0.0
    cost_per_hour: float = 0.0  # of its shares, at the prices of its placement
    billed: bool = False  # its usage is recorded: it counts as spent, no longer as estimate

    @property
    def estimated_cost(self) -> float:
        """What it will cost if it runs to its time limit (0 once billed)."""
        return 0.0 if self.billed else self.cost_per_hour * self.spec.time_limit_s / 3600

    @property
    def expected_end(self) -> float:
        """When the allocation should be free again, by the job's time limit."""
        return self.since + self.spec.time_limit_s


class GateInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a gate last said it has, and when."""

    gate: GateName
    nodes: tuple[NodeShape, ...]
    interval_s: float
    last_seen: float

    def is_live(self, now: float) -> bool:
        return is_live(self.last_seen, self.interval_s, now)


class View:
    """Pending and active jobs and the gates' nodes, as the events tell them."""

    def __init__(self, half_life_s: float = 7 * 86_400.0) -> None:
        self.pending: dict[JobId, PendingJob] = {}
        self.active: dict[JobId, ActiveJob] = {}
        self.gates: dict[GateName, GateInfo] = {}
        self._ended = bytearray()  # a bit per job number: ended (a late JobSubmitted is not
        # a new job). Bounded: 125 kB per million jobs, where a dict took ~90 bytes a job.
        self.spend = Spend()  # per user and account, for budgets
        self.used = Decayed(half_life_s)  # node-hours per user, for fair share
        self.version = 0
        self._arrivals = 0

    def live_gates(self, now: float) -> list[GateInfo]:
        """Gates that reported recently enough, in name order."""
        return [g for _, g in sorted(self.gates.items()) if g.is_live(now)]

    def apply_gate_event(self, event: AnyGateEvent) -> bool:
        """Fold one gate event; return whether the view changed in a way worth a pass."""
        match event:
            case GateCapacity():
                return self._on_capacity(event)
            case RunStagingIn() | RunStarted() | RunStagingOut() | RunEnded():
                return False  # core turns these into job events, which the view follows
            case _:
                assert_never(event)

    def _on_capacity(self, event: GateCapacity) -> bool:
        old = self.gates.get(event.gate)
        if old is not None and old.last_seen > event.at:
            return False  # an older heartbeat than the one we have
        self.gates[event.gate] = GateInfo(
            gate=event.gate,
            nodes=_unique(event.nodes),
            interval_s=event.interval_s,
            last_seen=event.at,
        )
        changed = (
            old is None
            or not old.is_live(event.at)  # back after silence
            or old.nodes != event.nodes
            or old.interval_s != event.interval_s
        )
        return self._bump(changed)

    def apply_job_event(self, event: AnyJobEvent) -> bool:
        """Fold one job event; return whether the view changed in a way worth a pass."""
        match event:
            case JobSubmitted():
                return self._on_submitted(event)
            case JobHeld() | JobReleased():
                return self._on_hold(event.job_id, held=isinstance(event, JobHeld))
            case JobScheduled():
                return self._on_scheduled(event)
            case JobStarted():
                return self._on_started(event)
            case JobStagingIn() | JobStagingOut():
                return False
            case JobUsageRecorded():
                return self._on_usage(event)
            case JobWaiting():
                return self._on_waiting(event)
            case JobDependencyResolved():
                return self._on_dependency(event)
            case JobStopRequested():
                return self._on_stop_requested(event)
            case JobCompleted() | JobFailed() | JobCancelled():
                return self._on_ended(event)
            case JobRequeued():
                return self._on_requeued(event)
            case _:
                assert_never(event)

    def _bump(self, changed: bool) -> bool:
        if changed:
            self.version += 1
        return changed

    def _on_submitted(self, event: JobSubmitted) -> bool:
        if event.job_id in self.pending or event.job_id in self.active or self.ended(event.job_id):
            return False  # a redelivered submission
        self._arrivals += 1
        self.pending[event.job_id] = PendingJob(
            job_id=event.job_id,
            owner=event.owner,
            spec=event.spec,
            arrival=self._arrivals,
            submitted_at=event.at,
        )
        return self._bump(True)

    def _on_hold(self, job_id: JobId, held: bool) -> bool:
        job = self.pending.get(job_id)
        if job is None or job.held == held:
            return False
        self.pending[job_id] = msgspec.structs.replace(job, held=held)
        return self._bump(True)

    def _on_scheduled(self, event: JobScheduled) -> bool:
        job = self.pending.pop(event.job_id, None)
        if job is None:
            return False  # unknown (submitted before the stream's retention) or duplicate
        self.active[event.job_id] = ActiveJob(
            job_id=job.job_id,
            owner=job.owner,
            spec=job.spec,
            attempt=event.attempt,
            allocation=event.allocation,
            since=event.at,
            arrival=job.arrival,
            submitted_at=job.submitted_at,
            cost_per_hour=event.price_per_hour,
        )
        return self._bump(True)

    def _on_started(self, event: JobStarted) -> bool:
        job = self.active.get(event.job_id)
        if job is not None and job.attempt == event.attempt:
            # The time limit runs from the start, so the end estimate moves; not worth a pass.
            self.active[event.job_id] = msgspec.structs.replace(job, since=max(job.since, event.at))
        return False

    def ended(self, job_id: JobId) -> bool:
        """Whether the job has ended (job ids that are not core's numbers: never)."""
        number = int(job_id) if job_id.isdigit() else -1
        byte = number >> 3
        return 0 <= byte < len(self._ended) and bool(self._ended[byte] >> (number & 7) & 1)

    def _mark_ended(self, job_id: JobId) -> None:
        if not job_id.isdigit() or len(job_id) > 12:
            return  # not a number core issues this side of a trillion jobs: nothing to mark
        number = int(job_id)
        byte = number >> 3
        if byte >= len(self._ended):
            self._ended.extend(bytes(byte + 1 - len(self._ended)))
        self._ended[byte] |= 1 << (number & 7)

    def _on_dependency(self, event: JobDependencyResolved) -> bool:
        job = self.pending.get(event.job_id)
        if job is None or event.dependency in job.met or event.dependency == job.broken:
            return False
        if event.satisfied:
            self.pending[event.job_id] = msgspec.structs.replace(
                job, met=(*job.met, event.dependency)
            )
        else:
            self.pending[event.job_id] = msgspec.structs.replace(
                job, broken=event.dependency, broken_detail=event.detail
            )
        return self._bump(True)

    def _on_waiting(self, event: JobWaiting) -> bool:
        job = self.pending.get(event.job_id)
        if job is not None and job.attempt == event.attempt:
            self.pending[event.job_id] = msgspec.structs.replace(
                job, reason=event.reason, reason_detail=event.detail
            )
        return False  # the scheduler's own report coming back: nothing to place

    def _on_usage(self, event: JobUsageRecorded) -> bool:
        self.spend.add(Scope.USER, event.owner, event.ended_at, event.cost)
        if event.account:
            self.spend.add(Scope.ACCOUNT, event.account, event.ended_at, event.cost)
        self.used.add(event.owner, event.node_hours, event.ended_at)
        job = self.active.get(event.job_id)
        if job is not None and job.attempt == event.attempt:
            self.active[event.job_id] = msgspec.structs.replace(job, billed=True)
        return False  # its end follows, and that is worth a pass

    def _on_stop_requested(self, event: JobStopRequested) -> bool:
        job = self.active.get(event.job_id)
        if job is not None and job.attempt == event.attempt:
            self.active[event.job_id] = msgspec.structs.replace(job, stopping=True)
        return False  # the allocation stays taken until the run has ended

    def _on_ended(self, event: JobCompleted | JobFailed | JobCancelled) -> bool:
        active = self.active.get(event.job_id)
        stale = isinstance(event, JobCompleted | JobFailed) and (
            active is not None and active.attempt != event.attempt
        )
        if stale:
            return False
        self._mark_ended(event.job_id)
        gone = self.pending.pop(event.job_id, None) is not None
        gone = self.active.pop(event.job_id, None) is not None or gone
        return self._bump(gone)

    def _on_requeued(self, event: JobRequeued) -> bool:
        active = self.active.pop(event.job_id, None)
        pending = self.pending.get(event.job_id)
        base = active if active is not None else pending
        if base is None:
            return False
        self.pending[event.job_id] = PendingJob(
            job_id=base.job_id,
            owner=base.owner,
            spec=base.spec,
            attempt=event.restart_count + 1,
            arrival=base.arrival,
            submitted_at=base.submitted_at,
            # it was placed, so its dependencies held (and core keeps them met)
            met=tuple(d.job_id for d in base.spec.dependencies),
        )
        return self._bump(True)


def _unique(nodes: tuple[NodeShape, ...]) -> tuple[NodeShape, ...]:
    """Keep the first node of each name: names identify nodes in allocations."""
    seen: set[str] = set()
    out: list[NodeShape] = []
    for node in nodes:
        if node.name not in seen:
            seen.add(node.name)
            out.append(node)
    return tuple(out)


def fold(job_events: Iterable[AnyJobEvent], gate_events: Iterable[AnyGateEvent] = ()) -> View:
    """A view of the given events, applied in order (for tests and tools)."""
    view = View()
    for gate_event in gate_events:
        view.apply_gate_event(gate_event)
    for job_event in job_events:
        view.apply_job_event(job_event)
    return view
