"""Fixtures of the gate tests: the local gate's runner in-process over a real nats-server,
a core-signed bus that sends it commands, and a verifying reader of what it reports."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from bus.connection import Bus, Delivery
from bus.deployment import StateDir
from gates.base import GateOptions
from gates.local.gate import LocalGate
from gates.runner import GateRunner, cancel_firmly
from gates.settings import RunnerSettings
from schemas import subjects
from schemas.gate import (
    AnyGateEvent,
    LogChunk,
    RunEnded,
    StartRun,
    StopRun,
    log_chunk_decoder,
)
from schemas.ids import GateName, JobId, MessageId, UserName
from schemas.jobs import Allocation, JobSpec, NodeAllocation
from tests.conftest import connect_as, kill_leftover_runs

SETTINGS = RunnerSettings(capacity_interval_s=0.5, timeout_grace_s=0.5, log_poll_s=0.05)


def start_run(spec: JobSpec, job_id: str | None = None, *, gpus: tuple[int, ...] = ()) -> StartRun:
    """A StartRun for alice on one or more local nodes."""
    return StartRun(
        id=MessageId(uuid.uuid4().hex),
        at=time.time(),
        job_id=JobId(job_id or f"j{uuid.uuid4().hex[:12]}"),
        attempt=1,
        owner=UserName("alice"),
        spec=spec,
        allocation=Allocation(
            gate=GateName("local"),
            nodes=tuple(
                NodeAllocation(
                    node=f"local-{i}",
                    host="localhost",
                    cpus=spec.cpus_per_node,
                    memory_mb=0,
                    gpus=gpus,
                )
                for i in range(spec.nodes)
            ),
        ),
    )


def stop_run(run: StartRun, grace_s: float = 0.5) -> StopRun:
    return StopRun(
        id=MessageId(uuid.uuid4().hex),
        at=time.time(),
        job_id=run.job_id,
        attempt=run.attempt,
        reason="cancel",
        grace_s=grace_s,
    )


class Reports:
    """Everything the gate reported, read back through verifying consumers."""

    def __init__(self) -> None:
        self.events: list[AnyGateEvent] = []
        self.logs: list[LogChunk] = []
        self.changed = asyncio.Condition()

    async def on_event(self, d: Delivery[AnyGateEvent]) -> None:
        async with self.changed:
            self.events.append(d.incoming.body)
            self.changed.notify_all()

    async def on_log(self, d: Delivery[LogChunk]) -> None:
        async with self.changed:
            self.logs.append(d.incoming.body)
            self.changed.notify_all()

    def of(self, job_id: str) -> list[AnyGateEvent]:
        return [e for e in self.events if getattr(e, "job_id", None) == job_id]

    def tags(self, job_id: str) -> list[str]:
        return [str(type(e).__struct_config__.tag) for e in self.of(job_id)]

    def text(self, job_id: str, stream: subjects.LogStream) -> str:
        chunks = [c for c in self.logs if c.job_id == job_id and c.stream is stream]
        return "".join(c.data for c in sorted(chunks, key=lambda c: c.offset))

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(pred)

    async def ended(self, job_id: str, timeout: float = 15.0) -> RunEnded:
        await self.wait_for(lambda: any(isinstance(e, RunEnded) for e in self.of(job_id)), timeout)
        return next(e for e in self.of(job_id) if isinstance(e, RunEnded))


@pytest.fixture
async def reports(core_bus: Bus, state: StateDir, nats_url: str) -> AsyncIterator[Reports]:
    """The gate's reports as core sees them, and every log line as an admin reads them."""
    r = Reports()
    admin = await connect_as(state, nats_url, "admin")
    subs = [
        await core_bus.replay(
            subjects.gate_events_of("local"), msgspec.json.Decoder(AnyGateEvent), r.on_event
        ),
        await admin.replay(subjects.ALL_LOGS, log_chunk_decoder, r.on_log),
    ]
    yield r
    for sub in subs:
        await sub.unsubscribe()
    await admin.close()


class GateProcess:
    """The runner of the local gate as a task of the test, stoppable and restartable."""

    def __init__(self, state: StateDir, url: str) -> None:
        self.state = state
        self.url = url
        self.bus: Bus | None = None
        self.task: asyncio.Task[None] | None = None
        self.runner: GateRunner | None = None

    async def start(self) -> GateRunner:
        self.bus = await connect_as(self.state, self.url, "local")
        gate = LocalGate("local", GateOptions(nodes=2, cpus=2, memory_mb=1024, gpus=2))
        self.runner = GateRunner(self.bus, gate, self.state.gate_dir("local"), SETTINGS)
        self.task = asyncio.create_task(self.runner.run())
        return self.runner

    async def stop(self) -> None:
        if self.task is not None:
            await cancel_firmly([self.task])
            self.task = None
        if self.bus is not None:
            await self.bus.close()
            self.bus = None


@pytest.fixture
async def gate(state: StateDir, nats_url: str, core_bus: Bus) -> AsyncIterator[GateProcess]:
    proc = GateProcess(state, nats_url)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()
        kill_leftover_runs(state)


async def send(core_bus: Bus, cmd: StartRun | StopRun) -> None:
    verb = "start" if isinstance(cmd, StartRun) else "stop"
    await core_bus.js_publish(subjects.gate_command("local", verb), cmd, msg_id=cmd.id)


def run_dir(state: StateDir, run: StartRun) -> Path:
    return state.gate_dir("local") / "runs" / f"{run.job_id}-{run.attempt}"
