"""The local gate end to end over a real nats-server: commands in, events and logs out."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tracemalloc
from pathlib import Path

import pytest

from bus import objects
from bus.connection import Bus
from bus.deployment import StateDir
from gates import records, staging
from gates.environment import DEFAULT_PATH
from gates.records import Phase
from schemas.gate import GateCapacity, RunEnded, RunStagingOut, RunStarted
from schemas.jobs import FailReason, JobSpec, RunOutcome, StagedInput
from schemas.subjects import LogStream, files_bucket
from tests.gates.conftest import GateProcess, Reports, send, start_run, stop_run

ALICE_FILES = files_bucket("alice")  # the runs of these tests are alice's


async def test_trivial_job_reports_started_and_ended_only(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    run = start_run(JobSpec(script="true\n"))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED
    assert ended.exit_code == 0
    assert reports.tags(run.job_id) == ["run_started", "run_ended"]  # nothing to stage


async def test_a_job_with_files_to_stage_reports_every_phase_in_order(
    core_bus: Bus, alice_bus: Bus, gate: GateProcess, reports: Reports, tmp_path: Path
) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"x\n")
    size, digest = await objects.put_file(alice_bus.js, ALICE_FILES, "inputs/alice/u9/in.txt", src)
    staged = StagedInput(name="in.txt", obj="inputs/alice/u9/in.txt", size=size, sha256=digest)
    spec = JobSpec(script="cp in.txt out.txt\n", inputs=(staged,), outputs=("out.txt",))
    run = start_run(spec)
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED, ended.detail
    assert reports.tags(run.job_id) == [
        "run_staging_in",
        "run_started",
        "run_staging_out",
        "run_ended",
    ]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_job_reads_a_staged_input_sees_its_environment_and_stages_out_outputs(
    core_bus: Bus, alice_bus: Bus, gate: GateProcess, reports: Reports, tmp_path: Path
) -> None:
    src = tmp_path / "input.txt"
    src.write_bytes(b"hello from the object store\n")
    await objects.put_file(alice_bus.js, ALICE_FILES, "inputs/alice/u1/input.txt", src)
    script = """
set -eu
mkdir -p out
tr a-z A-Z < data/input.txt > out/upper.txt
{
  echo "job=$SKYPORT_JOB_ID nodes=$SKYPORT_NUM_NODES rank=$SKYPORT_NODE_RANK"
  echo "nodelist=$SKYPORT_NODELIST omp=$OMP_NUM_THREADS cuda=$CUDA_VISIBLE_DEVICES"
  echo "restarts=$SKYPORT_RESTART_COUNT color=$COLOR"
  test -d "$SKYPORT_CHECKPOINT_DIR" && echo "checkpoint=$SKYPORT_CHECKPOINT_DIR"
  cat "$SKYPORT_HOSTFILE"
} > out/env.txt
echo state > "$SKYPORT_CHECKPOINT_DIR/step-1"
"""
    spec = JobSpec(
        script=script,
        nodes=2,
        tasks_per_node=2,
        cpus_per_task=3,
        env={"COLOR": "blue"},
        inputs=(
            StagedInput(
                name="data/input.txt",
                obj="inputs/alice/u1/input.txt",
                size=src.stat().st_size,
                sha256=_sha(src.read_bytes()),
            ),
        ),
        outputs=("out/*.txt", "absent.dat"),
    )
    run = start_run(spec, gpus=(0, 1))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED, ended.detail
    assert "outputs missing: absent.dat: no such file" in ended.detail
    by_name = {o.name: o for o in ended.outputs}
    assert set(by_name) == {"out/env.txt", "out/upper.txt", "checkpoint/step-1"}
    assert by_name["out/upper.txt"].obj == f"jobs/{run.job_id}/out/upper.txt"
    got = tmp_path / "upper.txt"
    await objects.get_file(
        alice_bus.js,
        ALICE_FILES,
        by_name["out/upper.txt"].obj,
        got,
        by_name["out/upper.txt"].sha256,
    )
    assert got.read_text() == "HELLO FROM THE OBJECT STORE\n"
    env_file = tmp_path / "env.txt"
    await objects.get_file(alice_bus.js, ALICE_FILES, by_name["out/env.txt"].obj, env_file)
    lines = env_file.read_text().splitlines()
    assert lines[0] == f"job={run.job_id} nodes=2 rank=0"
    assert lines[1] == "nodelist=local-0,local-1 omp=3 cuda=0,1"
    assert lines[2] == "restarts=0 color=blue"
    assert lines[3].startswith("checkpoint=") and lines[3].endswith("/workdir/checkpoint")
    assert lines[4:] == ["localhost slots=2", "localhost slots=2"]


async def test_non_zero_exit_fails_with_the_exit_code_and_stderr_is_streamed(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    run = start_run(JobSpec(script="echo oops >&2\ntouch out\nexit 3\n", outputs=("out",)))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert (ended.outcome, ended.reason, ended.exit_code) == (
        RunOutcome.FAILED,
        FailReason.EXIT_CODE,
        3,
    )
    staging_out = next(e for e in reports.of(run.job_id) if isinstance(e, RunStagingOut))
    assert staging_out.exit_code == 3
    assert reports.text(run.job_id, LogStream.STDERR) == "oops\n"


async def test_a_job_killed_by_a_signal_fails_with_reason_signal(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    run = start_run(JobSpec(script="kill -KILL $$\n"))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert (ended.outcome, ended.reason, ended.exit_code) == (
        RunOutcome.FAILED,
        FailReason.SIGNAL,
        137,
    )
    assert "SIGKILL" in ended.detail


async def test_time_limit_terminates_the_job_and_fails_it_with_timeout(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    run = start_run(JobSpec(script="echo start\nsleep 30\n", time_limit_s=1))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id, timeout=10)
    assert (ended.outcome, ended.reason) == (RunOutcome.FAILED, FailReason.TIMEOUT)
    assert ended.exit_code == 143  # bash killed by SIGTERM, as its shell reports it
    started = next(e for e in reports.of(run.job_id) if isinstance(e, RunStarted))
    assert 1.0 <= ended.at - started.at < 3.0
    assert "time limit" in reports.text(run.job_id, LogStream.SYSTEM)


async def test_cancel_sends_sigterm_then_sigkill_after_the_grace_period(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    script = "trap 'echo got TERM' TERM\necho ready\nwhile true; do sleep 0.05; done\n"
    run = start_run(JobSpec(script=script))
    await send(core_bus, run)
    await reports.wait_for(lambda: "ready" in reports.text(run.job_id, LogStream.STDOUT))
    await send(core_bus, stop_run(run, grace_s=0.5))
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.CANCELLED
    assert ended.exit_code == 137
    assert "got TERM" in reports.text(run.job_id, LogStream.STDOUT)
    system = reports.text(run.job_id, LogStream.SYSTEM)
    assert "SIGTERM" in system and "SIGKILL" in system


async def test_stdout_is_streamed_while_the_job_runs(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    run = start_run(JobSpec(script="echo first\nsleep 1\necho second\n"))
    await send(core_bus, run)
    await reports.wait_for(lambda: "first" in reports.text(run.job_id, LogStream.STDOUT))
    assert not any(isinstance(e, RunEnded) for e in reports.of(run.job_id))
    await reports.ended(run.job_id)
    assert reports.text(run.job_id, LogStream.STDOUT) == "first\nsecond\n"


async def test_missing_input_fails_the_run_with_staging_naming_the_file(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    missing = StagedInput(name="in/x.bin", obj="inputs/alice/u9/x.bin", size=1, sha256="0" * 64)
    run = start_run(JobSpec(script="touch ran\n", inputs=(missing,), outputs=("ran",)))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert (ended.outcome, ended.reason) == (RunOutcome.FAILED, FailReason.STAGING)
    assert "in/x.bin" in ended.detail
    assert reports.tags(run.job_id) == ["run_staging_in", "run_ended"]


async def test_outputs_that_are_symlinks_or_lead_through_symlinks_are_not_staged_out(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    script = "ln -s /etc/hostname leak\nln -s /etc evil\necho ok > fine\n"
    run = start_run(JobSpec(script=script, outputs=("leak", "evil/hostname", "fine")))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED
    assert [o.name for o in ended.outputs] == ["fine"]
    assert "leak: is or goes through a symbolic link" in ended.detail
    assert "evil/hostname: is or goes through a symbolic link" in ended.detail


async def test_capacity_is_reported_with_the_virtual_nodes(
    gate: GateProcess, reports: Reports
) -> None:
    await reports.wait_for(lambda: any(isinstance(e, GateCapacity) for e in reports.events))
    cap = next(e for e in reports.events if isinstance(e, GateCapacity))
    assert [(n.name, n.cpus, n.memory_mb, n.gpus) for n in cap.nodes] == [
        ("local-0", 2, 1024, 2),
        ("local-1", 2, 1024, 2),
    ]


async def test_a_script_with_a_shebang_runs_with_its_own_interpreter(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    script = f"#!{sys.executable}\nimport os\nprint('python', os.environ['SKYPORT_JOB_ID'])\n"
    run = start_run(JobSpec(script=script))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED, ended.detail
    assert reports.text(run.job_id, LogStream.STDOUT) == f"python {run.job_id}\n"


async def test_the_job_alone_gets_its_environment_and_its_supervising_shell_a_fixed_one(
    core_bus: Bus, gate: GateProcess, reports: Reports, tmp_path: Path
) -> None:
    weird = "a b\n$(echo no) `echo no` *=x\\ 'q\""
    # the job's parent is the shell that supervises it; it must not have run with errexit
    script = 'printf "[%s]\\n" "$WEIRD"\ntr "\\0" "\\n" < /proc/$PPID/environ\n'
    errexit = tmp_path / "errexit.sh"
    errexit.write_text("set -o errexit\n")
    env = {"WEIRD": weird, "BASH_ENV": str(errexit)}
    run = start_run(JobSpec(script=script, env=env))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert (ended.outcome, ended.exit_code) == (RunOutcome.COMPLETED, 0), ended.detail
    assert reports.text(run.job_id, LogStream.STDOUT) == f"[{weird}]\nPATH={DEFAULT_PATH}\n"


@pytest.mark.timeout(30)  # the old glob search never ended, freezing the gate's event loop
async def test_an_output_pattern_over_a_symlink_loop_stages_what_is_really_there(
    core_bus: Bus, gate: GateProcess, reports: Reports
) -> None:
    script = "ln -s . a\nln -s . b\necho r > result.txt\n"
    run = start_run(JobSpec(script=script, outputs=("**/*.txt",)))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert ended.outcome is RunOutcome.COMPLETED, ended.detail
    assert [o.name for o in ended.outputs] == ["result.txt"]


async def test_an_output_search_cut_short_is_named_in_the_detail(
    core_bus: Bus, gate: GateProcess, reports: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "SEARCH_S", 0.0)
    run = start_run(JobSpec(script="echo r > result.txt\n", outputs=("*.txt",)))
    await send(core_bus, run)
    ended = await reports.ended(run.job_id)
    assert "outputs truncated: *.txt: search stopped after 0 match(es): too slow" in ended.detail


async def test_a_huge_burst_of_output_is_streamed_with_bounded_memory(
    core_bus: Bus, gate: GateProcess, state: StateDir
) -> None:
    size = 24 * 2**20  # written at once: the gate reads it at most MAX_READ at a time
    script = f"head -c {size} /dev/zero | tr '\\0' a > ../big\ncat ../big\n"
    run = start_run(JobSpec(script=script))
    paths = records.run_paths(state.gate_dir("local"), run.job_id, run.attempt)
    tracemalloc.start()
    try:
        await send(core_bus, run)
        async with asyncio.timeout(30):
            while (record := records.load(paths)) is None or record.phase is not Phase.ENDED:
                await asyncio.sleep(0.05)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records.log_offsets(paths)["stdout"] == size
    assert peak < size // 4
