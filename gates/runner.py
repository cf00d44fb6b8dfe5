"""The generic gate runner: all the bus work of one gate instance (I/O).

It consumes the gate's work queue of commands (durable pull consumer ``gate-<name>``),
reports its capacity as a heartbeat, adopts the runs found on disk at start, and runs one
``RunSupervisor`` per run. A StartRun is acknowledged once its record is on disk (a
restarted gate resumes it from there); a StopRun once it is remembered on disk and passed
to the run. A StartRun redelivered for a run that has a record is a no-op. A supervisor
that fails is replaced, after a pause, by a new one resumed from the run's record, so a run
is never left without its time limit and stops while the gate runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Collection, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from bus.connection import Bus, Delivery
from bus.streams import wait_for_streams
from gates import records
from gates.base import Gate, RunPaths
from gates.records import Phase, RunRecord
from gates.settings import RunnerSettings
from gates.supervisor import RunSupervisor
from schemas import subjects
from schemas.gate import AnyGateCommand, GateCapacity, StartRun, StopRun
from schemas.ids import GateName, InvalidTokenError, MessageId

log = logging.getLogger("skyport.gates.runner")

_command_decoder = msgspec.json.Decoder(AnyGateCommand)
CANCEL_RETRY_S = 0.05
RESUPERVISE_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # pauses before supervising a failed run anew


async def cancel_firmly(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again while they are not.

    Python 3.11's ``asyncio.wait_for`` (used inside nats-py) drops a cancellation that
    arrives as its inner future completes; a task that lost its cancellation that way would
    otherwise keep a gate from stopping until its job ends.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_S)


class GateRunner:
    """Serves one gate instance until cancelled; running jobs survive the cancellation."""

    def __init__(
        self, bus: Bus, gate: Gate, gate_dir: Path, settings: RunnerSettings | None = None
    ) -> None:
        self.bus = bus
        self.gate = gate
        self.gate_dir = gate_dir
        self.settings = settings or RunnerSettings()
        self.active: dict[str, RunSupervisor] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Adopt the runs on disk, then serve commands until cancelled."""
        try:
            await wait_for_streams(
                self.bus.js,
                (subjects.STREAM_GATE_COMMANDS, subjects.STREAM_GATE_EVENTS, subjects.STREAM_LOGS),
                self.gate.name,
            )
            self._adopt_all()
            self._spawn(self._heartbeat(), "heartbeat")
            await self._consume()
        finally:
            while self._tasks:  # stop the runs' supervisors (never their jobs) first
                with contextlib.suppress(asyncio.CancelledError):
                    await cancel_firmly(self._tasks)
            await self.gate.close()

    def _spawn(self, coro: Coroutine[None, None, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- commands --------------------------------------------------------------------------

    async def _consume(self) -> None:
        name = self.gate.name
        async for batch in self.bus.pull(
            subjects.STREAM_GATE_COMMANDS,
            durable=subjects.gate_commands_consumer(name),
            filter_subject=subjects.gate_commands_of(name),
            decoder=_command_decoder,
        ):
            for delivery in batch:
                await self._handle(delivery)

    async def _handle(self, delivery: Delivery[AnyGateCommand]) -> None:
        cmd = delivery.incoming.body
        try:
            match cmd:
                case StartRun():
                    await self._on_start(cmd)
                case StopRun():
                    self._on_stop(cmd)
        except (InvalidTokenError, ValueError) as exc:  # hostile or broken: never retry it
            log.warning(
                "gate %s dropped %s %s: %s", self.gate.name, type(cmd).__name__, cmd.id, exc
            )
        except Exception:  # message-loop boundary: log, let it come back later
            log.exception(
                "gate %s failed on %s (%s)", self.gate.name, delivery.incoming.subject, cmd.id
            )
            await delivery.nak(delay=1.0)
            return
        await delivery.ack()

    async def _on_start(self, cmd: StartRun) -> None:
        key = records.run_key(cmd.job_id, cmd.attempt)
        subjects.log(cmd.owner, cmd.job_id, self.gate.name, subjects.LogStream.SYSTEM)  # checks
        if key in self.active:
            return
        paths = records.run_paths(self.gate_dir, cmd.job_id, cmd.attempt)
        created = _record_new_run(paths, cmd)  # inline: see RunSupervisor._launch
        if created is None:
            log.info(
                "gate %s: run %s already known, StartRun %s ignored", self.gate.name, key, cmd.id
            )
            return
        record, stop = created
        supervisor = RunSupervisor(self.bus, self.gate, paths, record, self.settings, fresh=True)
        if stop is not None:  # a StopRun that came first
            supervisor.request_stop(stop)
        self._supervise(key, supervisor)

    def _on_stop(self, cmd: StopRun) -> None:
        key = records.run_key(cmd.job_id, cmd.attempt)
        paths = records.run_paths(self.gate_dir, cmd.job_id, cmd.attempt)
        supervisor = self.active.get(key)
        if supervisor is None:
            record = records.load(paths)
            if record is not None and record.phase is Phase.ENDED:
                return  # already over: a late stop is a no-op
        records.mark_stop(paths, cmd)
        if supervisor is not None:
            supervisor.request_stop(cmd)

    # -- runs ------------------------------------------------------------------------------

    def _adopt_all(self) -> None:
        for paths in records.all_runs(self.gate_dir):
            supervisor = self._from_disk(paths)
            if supervisor is not None:
                log.info(
                    "gate %s adopts run %s (%s)",
                    self.gate.name,
                    paths.root.name,
                    supervisor.record.phase,
                )
                self._supervise(paths.root.name, supervisor)

    def _from_disk(self, paths: RunPaths) -> RunSupervisor | None:
        """A supervisor resuming the run from its record; None if it is over (or damaged)."""
        try:
            record = records.load(paths)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.exception("gate %s: damaged run record %s", self.gate.name, paths.record)
            return None
        if record is None or record.phase is Phase.ENDED:
            return None
        supervisor = RunSupervisor(self.bus, self.gate, paths, record, self.settings)
        stop = records.stop_mark(paths)
        if stop is not None:
            supervisor.request_stop(stop)
        return supervisor

    def _supervise(self, key: str, supervisor: RunSupervisor) -> None:
        self.active[key] = supervisor
        self._spawn(self._run_one(key, supervisor), f"run-{key}")

    async def _run_one(self, key: str, supervisor: RunSupervisor) -> None:
        """Supervise the run to its end; if its supervisor fails, resume it from its record."""
        try:
            for failures in itertools.count():
                try:
                    await supervisor.run()
                    return
                except Exception:  # one run's failure must not stop the gate or the run
                    pause = RESUPERVISE_S[min(failures, len(RESUPERVISE_S) - 1)]
                    log.exception(
                        "gate %s: supervising run %s failed; resuming it in %g s",
                        self.gate.name,
                        key,
                        pause,
                    )
                await asyncio.sleep(pause)
                fresh = await asyncio.to_thread(self._from_disk, supervisor.paths)
                if fresh is None:
                    return
                self.active[key] = fresh
                stop = supervisor.stop_requested  # a StopRun that came after the mark was read
                if stop is not None:
                    fresh.request_stop(stop)
                supervisor = fresh
        finally:
            self.active.pop(key, None)

    # -- capacity --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        subject = subjects.gate_event(self.gate.name, "gate_capacity")
        while True:
            event = GateCapacity(
                event_id=MessageId(uuid.uuid4().hex),
                at=time.time(),
                gate=GateName(self.gate.name),
                nodes=await self.gate.nodes(),
                interval_s=self.settings.capacity_interval_s,
            )
            try:
                await self.bus.js_publish(subject, event, msg_id=event.event_id)
            except Exception:  # a missed heartbeat is not fatal; the next one may pass
                log.exception("gate %s: capacity report failed", self.gate.name)
            await asyncio.sleep(self.settings.capacity_interval_s)


def _record_new_run(paths: RunPaths, cmd: StartRun) -> tuple[RunRecord, StopRun | None] | None:
    """Record a new run on disk; None if the run is known already."""
    if records.load(paths) is not None:
        return None
    record = RunRecord(start=cmd, phase=Phase.STAGING_IN)
    records.create(paths, record)
    return record, records.stop_mark(paths)
