"""Crash safety of the local gate: runs outlive the gate, are adopted, reported once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from bus.connection import Bus
from bus.deployment import StateDir
from gates import records, staging
from gates.base import GateOptions, RunPaths
from gates.environment import job_environment
from gates.local.gate import LocalGate
from schemas.gate import RunEnded, RunStarted, StartRun
from schemas.jobs import JobSpec, RunOutcome
from schemas.subjects import LogStream
from tests.gates.conftest import GateProcess, Reports, run_dir, send, start_run, stop_run

TAGS = ["run_started", "run_ended"]  # nothing to stage in these runs


async def test_a_run_survives_a_gate_restart_and_is_reported_once(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    script = "echo before\nsleep 1\necho after\necho done > result.txt\n"
    run = start_run(JobSpec(script=script, outputs=("result.txt",)))
    await send(core_bus, run)
    await reports.wait_for(lambda: "before" in reports.text(run.job_id, LogStream.STDOUT))
    await gate.stop()
    await gate.start()
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED
    assert [o.name for o in ended.outputs] == ["result.txt"]
    await asyncio.sleep(0.3)  # anything published twice would have arrived by now
    assert reports.tags(run.job_id) == ["run_started", "run_staging_out", "run_ended"]
    assert reports.text(run.job_id, LogStream.STDOUT) == "before\nafter\n"


async def test_a_run_that_ended_while_the_gate_was_down_is_staged_out_on_restart(
    core_bus: Bus, gate: GateProcess, reports: Reports, state: StateDir
) -> None:
    run = start_run(JobSpec(script="sleep 0.3\nexit 4\n"))
    await send(core_bus, run)
    await reports.wait_for(lambda: any(isinstance(e, RunStarted) for e in reports.of(run.job_id)))
    await gate.stop()
    exit_file = run_dir(state, run) / "exit"
    async with asyncio.timeout(5):
        while not exit_file.exists():
            await asyncio.sleep(0.05)
    assert not any(isinstance(e, RunEnded) for e in reports.of(run.job_id))
    await gate.start()
    ended = await reports.ended(run.job_id)
    assert ended.exit_code == 4
    assert reports.tags(run.job_id) == TAGS


async def test_a_redelivered_start_does_not_run_the_job_twice(
    core_bus: Bus, gate: GateProcess, reports: Reports, state: StateDir
) -> None:
    run = start_run(JobSpec(script="echo once >> ../../count\n"))
    await send(core_bus, run)
    await reports.ended(run.job_id)
    again = start_run(run.spec, run.job_id)  # same run, new command id: not de-duplicated
    await send(core_bus, again)
    later = start_run(JobSpec(script="true\n"))
    await send(core_bus, later)  # commands are handled in order: this one proves it was seen
    await reports.ended(later.job_id)
    assert reports.tags(run.job_id) == TAGS
    assert (run_dir(state, run).parent / "count").read_text() == "once\n"


async def test_a_stop_before_the_start_cancels_the_run_without_running_it(
    core_bus: Bus, gate: GateProcess, reports: Reports, state: StateDir
) -> None:
    run = start_run(JobSpec(script="touch ran\n"))
    await send(core_bus, stop_run(run))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.CANCELLED
    assert reports.tags(run.job_id) == ["run_ended"]
    assert not (run_dir(state, run) / "workdir" / "ran").exists()


def _launching_record(state: StateDir, run: StartRun) -> RunPaths:
    """What a gate killed inside ``launch`` leaves: a STAGING_IN record and no handle."""
    paths = records.run_paths(state.gate_dir("local"), run.job_id, run.attempt)
    records.create(paths, records.RunRecord(start=run, phase=records.Phase.STAGING_IN))
    staging.prepare_workdir(paths)
    paths.script.write_text(run.spec.script)
    paths.hostfile.write_text("localhost slots=1\n")
    return paths


async def test_a_gate_killed_between_spawn_and_record_adopts_the_run_it_spawned(
    core_bus: Bus, gate: GateProcess, reports: Reports, state: StateDir
) -> None:
    await gate.stop()
    run = start_run(JobSpec(script="echo once >> ../../count\nsleep 0.3\nexit 5\n"))
    paths = _launching_record(state, run)
    spawner = LocalGate("local", GateOptions(nodes=1))
    await spawner.launch(paths, {"PATH": os.environ["PATH"]})  # the handle is "lost"
    await spawner.close()
    await gate.start()
    ended = await reports.ended(run.job_id)
    assert (ended.outcome, ended.exit_code) == (RunOutcome.FAILED, 5)
    assert (paths.root.parent / "count").read_text() == "once\n"  # not launched again


async def test_a_run_whose_spawn_never_happened_is_launched_after_restart(
    core_bus: Bus, gate: GateProcess, reports: Reports, state: StateDir
) -> None:
    await gate.stop()
    run = start_run(JobSpec(script="echo ran\n"))
    _launching_record(state, run)
    await gate.start()
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED, ended.detail
    assert reports.text(run.job_id, LogStream.STDOUT) == "ran\n"


async def test_a_slow_bash_env_of_the_job_does_not_make_a_restarted_gate_run_it_twice(
    core_bus: Bus, gate: GateProcess, reports: Reports, state: StateDir, tmp_path: Path
) -> None:
    await gate.stop()
    bash_env = tmp_path / "env.sh"  # the job's own: it must run in the job, not before
    bash_env.write_text(f"sleep 3\necho sourced >> {tmp_path}/sourced\n")
    run = start_run(JobSpec(script="echo once >> ../../count\n", env={"BASH_ENV": str(bash_env)}))
    paths = _launching_record(state, run)
    env = job_environment(
        run,
        workdir=str(paths.workdir),
        hostfile=str(paths.hostfile),
        checkpoint_dir=str(paths.checkpoint),
        host_env=os.environ,
    )
    spawner = LocalGate("local", GateOptions(nodes=1))
    await spawner.launch(paths, env)  # the handle is "lost"
    await spawner.close()
    await gate.start()
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED, ended.detail
    assert (paths.root.parent / "count").read_text() == "once\n"
    assert (tmp_path / "sourced").read_text() == "sourced\n"


async def test_a_job_whose_keeper_was_killed_is_found_and_reported_as_lost(
    state: StateDir,
) -> None:
    run = start_run(JobSpec(script="sleep 0.5\n"))
    paths = _launching_record(state, run)
    local = LocalGate("local", GateOptions(nodes=1))
    try:
        handle = await local.launch(paths, {"PATH": os.environ["PATH"]})
        keeper_pid = int((paths.root.parent / "keeper.pid").read_text())
        os.kill(keeper_pid, signal.SIGKILL)
        await local.close()
        found = await local.recover(paths)  # a new keeper, which never saw the job
        assert found is not None
        assert (found.pid, found.start_ticks) == (handle.pid, handle.start_ticks)
        status = await local.wait(found, paths)
        assert status.code is None  # the status died with its keeper
        assert not local.alive(found)
    finally:
        await local.close()
