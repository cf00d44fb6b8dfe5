"""The gate protocol on the bus: commands core sends to a gate, events a gate reports. Pure."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from schemas.ids import GateName, JobId, MessageId, UserName
from schemas.jobs import Allocation, FailReason, JobSpec, NodeShape, RunOutcome, StagedOutput
from schemas.subjects import LogStream


class GateVerb(StrEnum):
    START = "start"
    STOP = "stop"


class GateCommand(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of commands to one gate; delivered through a JetStream work queue."""

    id: MessageId
    at: float
    job_id: JobId
    attempt: int


class StartRun(GateCommand, frozen=True, kw_only=True, tag="start_run"):
    """Stage in, run the script on the allocation, stage out, report every step."""

    owner: UserName
    spec: JobSpec
    allocation: Allocation
    restart_count: int = 0


class StopRun(GateCommand, frozen=True, kw_only=True, tag="stop_run"):
    """SIGTERM the run, wait the grace period, SIGKILL; stage out what is there."""

    reason: str = "cancel"
    grace_s: float = 10.0


AnyGateCommand = StartRun | StopRun

GATE_VERB_OF: dict[type[GateCommand], GateVerb] = {
    StartRun: GateVerb.START,
    StopRun: GateVerb.STOP,
}


class GateEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of what a gate reports; ``event_id`` is unique and is the JetStream message id."""

    event_id: MessageId
    at: float
    gate: GateName


LIVENESS_INTERVALS = 3.0
"""A gate is live while its last heartbeat is at most this many intervals old."""


def is_live(last_seen: float, interval_s: float, now: float) -> bool:
    """Whether a gate last heard at ``last_seen``, beating every ``interval_s``, is up at
    ``now`` (the one rule core's offers and the scheduler's view both use)."""
    return now - last_seen <= LIVENESS_INTERVALS * interval_s


class GateCapacity(GateEvent, frozen=True, kw_only=True, tag="gate_capacity"):
    """The nodes a gate has (with their prices), sent at start and periodically (a
    heartbeat)."""

    nodes: tuple[NodeShape, ...]
    interval_s: float = 10.0

    def live_at(self, now: float) -> bool:
        """Whether the gate still counts as up at ``now``, by this heartbeat."""
        return is_live(self.at, self.interval_s, now)


class RunEvent(GateEvent, frozen=True, kw_only=True):
    job_id: JobId
    attempt: int
    detail: str = ""


class RunStagingIn(RunEvent, frozen=True, kw_only=True, tag="run_staging_in"):
    pass


class RunStarted(RunEvent, frozen=True, kw_only=True, tag="run_started"):
    pass


class RunStagingOut(RunEvent, frozen=True, kw_only=True, tag="run_staging_out"):
    exit_code: int | None = None


class RunEnded(RunEvent, frozen=True, kw_only=True, tag="run_ended"):
    """The run is over and its outputs are staged out (as far as they could be)."""

    outcome: RunOutcome
    reason: FailReason | None = None
    exit_code: int | None = None
    outputs: tuple[StagedOutput, ...] = ()


AnyGateEvent = GateCapacity | RunStagingIn | RunStarted | RunStagingOut | RunEnded


class LogChunk(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="log_chunk"):
    """A piece of a run's output on ``subjects.log(owner, job_id, gate, stream)``, signed by
    that gate.

    For stdout and stderr, ``offset`` is the byte offset of ``data`` in the run's output file
    (at most 64 KiB of it per chunk, decoded as UTF-8 with replacement); a gate restarted
    mid-run may send a chunk overlapping one already sent, so readers drop bytes before the
    end of what they have shown. For ``system`` (Sky Port's own messages) ``offset`` is the
    message's ordinal in the run.
    """

    job_id: JobId
    attempt: int
    stream: LogStream
    offset: int
    data: str
    at: float


log_chunk_decoder = msgspec.json.Decoder(LogChunk)
