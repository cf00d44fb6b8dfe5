"""The keeper process (gates.local.keeper) through its real socket: it starts and reaps the
local gate's jobs, records their statuses, and goes away once nobody needs it."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gates.base import GateOptions, RunPaths
from gates.local import keeper
from gates.local.gate import LocalGate
from gates.local.link import KeeperLink, reap_finished

ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture
async def runs(tmp_path: Path) -> AsyncIterator[Path]:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    yield runs_dir
    pid_file = runs_dir / keeper.PID_FILE
    if pid_file.exists():  # a test that failed half-way: do not leave its keeper behind
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    await asyncio.sleep(0.05)
    reap_finished()


def new_run(runs_dir: Path, name: str, script: str) -> Path:
    run = runs_dir / name
    (run / "workdir").mkdir(parents=True)
    (run / "job.sh").write_text(script)
    (run / "job.sh").chmod(0o700)
    return run


async def launch(link: KeeperLink, run: Path, argv: list[str] | None = None) -> keeper.Status:
    return await link.request(keeper.Launch(str(run), argv or [str(run / "job.sh")], ENV))


async def keeper_gone(runs_dir: Path, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while (runs_dir / keeper.PID_FILE).exists():
            await asyncio.sleep(0.02)


async def test_exit_statuses_are_reported_and_written_as_a_shell_reports_them(
    runs: Path,
) -> None:
    link = await KeeperLink.open(runs)
    try:
        cases = {
            "ok": ("#!/bin/sh\necho hi\n", 0),
            "fails": ("#!/bin/sh\nexit 7\n", 7),
            "killed": ("#!/bin/sh\nkill -KILL $$\n", 128 + signal.SIGKILL),
            "no-interpreter": ("#!/nonexistent/interpreter\n", 127),
        }
        started = {name: new_run(runs, name, script) for name, (script, _) in cases.items()}
        for name, run in started.items():
            status = await launch(link, run)
            if name == "no-interpreter":
                assert (status.state, status.code) == ("over", 127)
                continue
            assert status.state == "running" and status.pid > 0
            assert await asyncio.wait_for(link.exit_of(str(run)), 10) == cases[name][1]
        for name, run in started.items():
            assert (run / "exit").read_text() == f"{cases[name][1]}\n"
        assert (started["ok"] / "stdout").read_text() == "hi\n"
        assert "cannot start the job" in (started["no-interpreter"] / "stderr").read_text()
    finally:
        await link.close()


async def test_a_script_without_interpreter_line_is_started_the_other_way(runs: Path) -> None:
    run = new_run(runs, "plain", "echo plain $0\n")
    link = await KeeperLink.open(runs)
    try:
        script = str(run / "job.sh")
        launched = keeper.Launch(str(run), [script], ENV, otherwise=["/bin/sh", script])
        assert (await link.request(launched)).state == "running"
        assert await asyncio.wait_for(link.exit_of(str(run)), 10) == 0
    finally:
        await link.close()
    assert (run / "stdout").read_text() == f"plain {run / 'job.sh'}\n"


async def test_a_job_runs_in_its_own_session_cwd_and_environment(runs: Path) -> None:
    script = "#!/bin/sh\npwd\nenv | sort\nps -o sid= -o pgid= -p $$\necho $$\n"
    run = new_run(runs, "env", script)
    link = await KeeperLink.open(runs)
    try:
        env = {"PATH": "/usr/bin:/bin", "ONLY": "this"}
        status = await link.request(keeper.Launch(str(run), [str(run / "job.sh")], env))
        assert await asyncio.wait_for(link.exit_of(str(run)), 10) == 0
    finally:
        await link.close()
    lines = (run / "stdout").read_text().splitlines()
    assert lines[0] == str(run / "workdir")
    assert [x for x in lines if "=" in x and not x.startswith("PWD=")] == [
        "ONLY=this",
        "PATH=/usr/bin:/bin",
    ]
    sid, pgid = lines[-2].split()
    assert int(sid) == int(pgid) == int(lines[-1]) == status.pid  # leads its session


async def test_a_job_outlives_its_gate_and_the_keeper_leaves_when_it_is_over(
    runs: Path,
) -> None:
    run = new_run(runs, "long", "#!/bin/sh\nsleep 0.5\nexit 3\n")
    link = await KeeperLink.open(runs)
    await launch(link, run)
    await link.close()  # the gate goes away
    await asyncio.sleep(0.1)
    assert (runs / keeper.PID_FILE).exists()  # still there: a job of its own runs
    await keeper_gone(runs)
    assert (run / "exit").read_text() == "3\n"
    assert not (runs / keeper.SOCKET).exists()


async def test_a_second_gate_learns_what_the_keeper_knows_and_a_launch_is_not_repeated(
    runs: Path,
) -> None:
    run = new_run(runs, "once", "#!/bin/sh\necho once >> ../../count\nsleep 0.3\n")
    first = await KeeperLink.open(runs)
    second = await KeeperLink.open(runs)
    try:
        started = await launch(first, run)
        again = await launch(second, run)  # a restarted gate launching it "again"
        assert (again.state, again.pid) == ("running", started.pid)
        asked = await second.request(keeper.Ask(str(run)))
        assert (asked.state, asked.pid, asked.ticks) == ("running", started.pid, started.ticks)
        assert await asyncio.wait_for(second.exit_of(str(run)), 10) == 0
        over = await second.request(keeper.Ask(str(run)))
        assert (over.state, over.code) == ("over", 0)
        never = await second.request(keeper.Ask(str(runs / "never")))
        assert never.state == "unknown"
    finally:
        await first.close()
        await second.close()
    assert (runs / "count").read_text() == "once\n"


async def test_requests_outside_its_runs_directory_are_refused(runs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "workdir").mkdir(parents=True)
    link = await KeeperLink.open(runs)
    try:
        for where in (outside, runs / ".." / "runs" / "x", runs / ".hidden"):
            status = await launch(link, where, ["/bin/true"])
            assert status.state == "refused", where
        assert not (outside / "stdout").exists()
    finally:
        await link.close()


async def test_a_malformed_request_drops_that_connection_only(runs: Path) -> None:
    good = await KeeperLink.open(runs)
    with keeper.in_dir(runs) as here:
        reader, writer = await asyncio.open_unix_connection(f"{here}/{keeper.SOCKET}")
    try:
        writer.write(b'{"type": "launch", "run": 5}\n')
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the keeper
        run = new_run(runs, "after", "#!/bin/sh\ntrue\n")
        assert (await launch(good, run)).state == "running"
        assert await asyncio.wait_for(good.exit_of(str(run)), 10) == 0
    finally:
        writer.close()
        await writer.wait_closed()
        await good.close()


async def test_the_socket_is_private_and_a_second_keeper_does_not_take_over(
    runs: Path,
) -> None:
    link = await KeeperLink.open(runs)
    try:
        sock = runs / keeper.SOCKET
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        first = int((runs / keeper.PID_FILE).read_text())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gates.local.keeper", str(runs)
        )
        assert await asyncio.wait_for(proc.wait(), 15) == 0  # the lock is taken: it leaves
        assert int((runs / keeper.PID_FILE).read_text()) == first
        run = new_run(runs, "still", "#!/bin/sh\ntrue\n")
        assert (await launch(link, run)).state == "running"
    finally:
        await link.close()


async def test_the_gate_still_gets_the_status_when_its_link_to_a_live_keeper_breaks(
    runs: Path,
) -> None:
    run = new_run(runs, "relinked", "#!/bin/sh\nsleep 0.3\nexit 4\n")
    local = LocalGate("local", GateOptions(nodes=1))
    try:
        paths = RunPaths(run)
        handle = await local.launch(paths, ENV)
        waiting = asyncio.create_task(local.wait(handle, paths))
        await asyncio.sleep(0.05)
        await local.close()  # the link breaks; the keeper lives on for its job
        assert (await asyncio.wait_for(waiting, 10)).code == 4
    finally:
        await local.close()
