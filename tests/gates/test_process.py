"""``python -m gates`` as its own process: serves, survives SIGKILL, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bus.connection import Bus
from bus.deployment import StateDir
from schemas.gate import GateCapacity, RunStarted
from schemas.jobs import JobSpec, RunOutcome
from schemas.subjects import LogStream
from tests.gates.conftest import Reports, send, start_run


class GateCommand:
    """Starts gate processes and stops them by PID at the end of the test."""

    def __init__(self, state: StateDir, url: str) -> None:
        self.argv = [
            sys.executable, "-m", "gates", "--gate", "local", "--state-dir", str(state.root),
            "--nats-url", url, "--nodes", "1", "--cpus", "4", "--capacity-interval", "0.5",
            "--log-level", "WARNING",
        ]  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.argv)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def gate_command(state: StateDir, nats_url: str) -> Iterator[GateCommand]:
    cmd = GateCommand(state, nats_url)
    try:
        yield cmd
    finally:
        cmd.stop_all()


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    async with asyncio.timeout(timeout):
        while proc.poll() is None:
            await asyncio.sleep(0.05)
    return proc.returncode


async def test_the_gate_process_reports_capacity_and_stops_cleanly_on_sigterm(
    core_bus: Bus, reports: Reports, gate_command: GateCommand
) -> None:
    proc = gate_command.start()
    await reports.wait_for(lambda: any(isinstance(e, GateCapacity) for e in reports.events))
    run = start_run(JobSpec(script="echo hi\n"))
    await send(core_bus, run)
    assert (await reports.ended(run.job_id)).outcome is RunOutcome.COMPLETED
    proc.send_signal(signal.SIGTERM)
    assert await _wait_exit(proc) == 0


async def test_a_sigkilled_gate_process_leaves_the_job_running_and_its_successor_reports_it(
    core_bus: Bus, reports: Reports, gate_command: GateCommand
) -> None:
    proc = gate_command.start()
    run = start_run(JobSpec(script="echo one\nsleep 1\necho two\n"))
    await send(core_bus, run)
    await reports.wait_for(lambda: any(isinstance(e, RunStarted) for e in reports.of(run.job_id)))
    proc.kill()
    await _wait_exit(proc)
    gate_command.start()
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED
    await asyncio.sleep(0.3)
    assert reports.tags(run.job_id) == ["run_started", "run_ended"]
    assert reports.text(run.job_id, LogStream.STDOUT) == "one\ntwo\n"
