"""The bus failing for a while (a stalled nats-server, a missing stream) or a supervisor
failing: reports are delayed, never lost, poisoned or doubled, and the runs stay under
control: time limits and stops are enforced meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import msgspec
import pytest

from bus import server
from bus.connection import Bus
from bus.deployment import StateDir
from bus.streams import ensure_streams
from gates import reporter
from gates.base import ExitStatus, GateOptions, RunHandle, RunPaths
from gates.local.gate import LocalGate
from gates.outcome import Verdict
from gates.reporter import RunReporter
from gates.runner import GateRunner, cancel_firmly
from schemas import subjects
from schemas.gate import AnyGateEvent
from schemas.jobs import FailReason, JobSpec, RunOutcome
from schemas.subjects import LogStream
from tests.conftest import connect_as
from tests.gates.conftest import SETTINGS, GateProcess, Reports, run_dir, send, start_run, stop_run

TICK = "while true; do date +%s.%N >> ../ticks; echo tick; sleep 0.1; done\n"
STALL_S = 8.0  # longer than a JetStream publish waits for its acknowledgement (5 s)


def _last_tick(paths: RunPaths) -> float:
    return float((paths.root / "ticks").read_text().split()[-1])


async def test_a_stalled_bus_delays_the_reports_but_not_a_time_limit_or_a_stop(
    core_bus: Bus,
    gate: GateProcess,
    reports: Reports,
    state: StateDir,
    nats_server: server.RunningServer,
) -> None:
    limited = start_run(JobSpec(script=TICK, time_limit_s=6))
    stopped = start_run(JobSpec(script=TICK))
    for run in (limited, stopped):
        await send(core_bus, run)
    await reports.wait_for(
        lambda: all("tick" in reports.text(r.job_id, LogStream.STDOUT) for r in (limited, stopped))
    )
    stall_started = time.time()
    os.kill(nats_server.pid, signal.SIGSTOP)
    try:  # the gate's output publishes time out meanwhile, and the time limit passes
        await asyncio.sleep(STALL_S)
    finally:
        os.kill(nats_server.pid, signal.SIGCONT)
    await send(core_bus, stop_run(stopped))
    timed_out = await reports.ended(limited.job_id, timeout=20)
    cancelled = await reports.ended(stopped.job_id, timeout=20)
    assert (timed_out.outcome, timed_out.reason) == (RunOutcome.FAILED, FailReason.TIMEOUT)
    assert cancelled.outcome is RunOutcome.CANCELLED
    # the time limit was enforced while the bus was stalled, not once it came back
    assert _last_tick(RunPaths(run_dir(state, limited))) < stall_started + STALL_S
    await asyncio.sleep(0.5)  # anything reported twice would have arrived by now
    for run in (limited, stopped):
        assert reports.tags(run.job_id) == ["run_started", "run_ended"]
        text = reports.text(run.job_id, LogStream.STDOUT)
        assert text and set(text.split()) == {"tick"}  # the whole output, in order


async def test_an_event_that_failed_for_a_while_neither_poisons_nor_loses_later_ones(
    state: StateDir, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter, "RETRY_S", (0.01, 0.02))
    gate_bus = await connect_as(state, nats_url, "local")
    core_bus = await connect_as(state, nats_url, "core")
    try:
        run = start_run(JobSpec(script="true\n"))
        report = RunReporter(gate_bus, "local", run)
        report.staging_in("1 input file(s)")
        report.started("on local-0")
        report.ended(Verdict(RunOutcome.COMPLETED, None, 0, "exit 0"), ())
        await asyncio.sleep(0.5)  # no stream answers yet: every try fails at once
        await ensure_streams(core_bus.js)
        await asyncio.wait_for(report.drain(), 10)
        reports = Reports()
        sub = await core_bus.replay(
            subjects.gate_events_of("local"), msgspec.json.Decoder(AnyGateEvent), reports.on_event
        )
        await reports.ended(run.job_id)
        await sub.unsubscribe()
        assert reports.tags(run.job_id) == ["run_staging_in", "run_started", "run_ended"]
    finally:
        await gate_bus.close()
        await core_bus.close()


class LosesTrackOnce(LocalGate):
    """A local gate whose first wait for each run fails, as a bus or disk error would make
    a supervisor fail."""

    def __init__(self, name: str, options: GateOptions) -> None:
        super().__init__(name, options)
        self.failed: set[RunPaths] = set()

    async def wait(self, handle: RunHandle, paths: RunPaths) -> ExitStatus:
        if paths not in self.failed:
            self.failed.add(paths)
            raise RuntimeError("lost track of the run")
        return await super().wait(handle, paths)


async def test_a_run_whose_supervisor_failed_is_supervised_again_to_its_end(
    core_bus: Bus, reports: Reports, state: StateDir, nats_url: str
) -> None:
    bus = await connect_as(state, nats_url, "local")
    gate = LosesTrackOnce("local", GateOptions(nodes=1, cpus=2, memory_mb=1024))
    runner = GateRunner(bus, gate, state.gate_dir("local"), SETTINGS)
    task = asyncio.create_task(runner.run())
    try:
        limited = start_run(JobSpec(script=TICK, time_limit_s=2))
        stopped = start_run(JobSpec(script=TICK))
        for run in (limited, stopped):
            await send(core_bus, run)
        await reports.wait_for(lambda: len(gate.failed) == 2)
        await send(core_bus, stop_run(stopped))
        timed_out = await reports.ended(limited.job_id)
        cancelled = await reports.ended(stopped.job_id)
        assert (timed_out.outcome, timed_out.reason) == (RunOutcome.FAILED, FailReason.TIMEOUT)
        assert cancelled.outcome is RunOutcome.CANCELLED
        await asyncio.sleep(0.3)
        for run in (limited, stopped):
            assert reports.tags(run.job_id) == ["run_started", "run_ended"]
        assert runner.active == {}
    finally:
        await cancel_firmly([task])
        await bus.close()
