"""The ``skyport`` command as a user runs it (a fresh process), against a fake core."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from bus.connection import Bus
from bus.deployment import StateDir
from schemas.jobs import JobSpec
from tests.terminals.fakecore import FakeCore, detail, pretend_running, summary

SKYPORT = str(Path(sys.executable).parent / "skyport")


@pytest.fixture
async def fake(state: StateDir, nats_url: str, core_bus: Bus) -> FakeCore:
    """A core with no jobs serving on the real bus, and a deployment.json pointing at it."""
    core = FakeCore([])
    await core.serve(core_bus)
    pretend_running(state, nats_url)
    return core


async def run(state: StateDir, *args: str) -> tuple[int, str, str, float]:
    env = {**os.environ, "SKYPORT_USER": "alice", "SKYPORT_HOME": str(state.root)}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        SKYPORT,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - started


async def test_jobs_json_lists_every_page_quickly(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    await FakeCore([summary(n) for n in range(1000)], page=400).serve(core_bus)
    pretend_running(state, nats_url)
    code, out, err, elapsed = await run(state, "jobs", "--json")
    assert (code, err) == (0, "")
    assert [j["job_id"] for j in json.loads(out)] == [str(n) for n in range(1000)]
    print(f"skyport jobs --json, 1000 jobs in 3 pages: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0  # the 200 ms goal is measured by hand; CI machines vary


async def test_jobs_table_for_people(state: StateDir, nats_url: str, core_bus: Bus) -> None:
    await FakeCore([summary(7)]).serve(core_bus)
    pretend_running(state, nats_url)
    code, out, _, _ = await run(state, "jobs")
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["7", "job7", "alice", "pending(resources)"]


async def test_show_of_unknown_job_fails_with_one_line(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    await FakeCore([], details={"3": detail("3")}).serve(core_bus)
    pretend_running(state, nats_url)
    code, out, _, _ = await run(state, "show", "3", "--json")
    assert code == 0 and json.loads(out)["summary"]["job_id"] == "3"
    code, _, err, _ = await run(state, "show", "4")
    assert code == 1
    assert err == "skyport: unknown_job: no job 4\n"


async def test_submit_sends_the_directives_with_overrides(
    state: StateDir, fake: FakeCore, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SKYPORT --nodes=2 -J a --time=5\necho hi\n")
    code, out, _, _ = await run(state, "submit", str(script), "--nodes", "3", "--json")
    assert code == 0 and json.loads(out) == {"job_id": "1"}
    spec: JobSpec = fake.submitted[0].spec
    assert (spec.nodes, spec.name, spec.time_limit_s) == (3, "a", 300)


async def test_bad_directive_is_usage_error_and_submits_nothing(
    state: StateDir, fake: FakeCore, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SKYPORT --nodes=2\n#SKYPORT --wat=1\n")
    code, _, err, _ = await run(state, "submit", str(script))
    assert code == 2
    assert err == "skyport: line 3: #SKYPORT --wat=1: unknown option --wat\n"
    assert fake.submitted == []


async def test_cancel_many(state: StateDir, nats_url: str, core_bus: Bus) -> None:
    await FakeCore([]).serve(core_bus)
    pretend_running(state, nats_url)
    code, out, _, _ = await run(state, "cancel", "1", "2")
    assert code == 0 and out.splitlines() == ["1: cancel accepted", "2: cancel accepted"]


async def test_cancel_many_exits_1_if_any_was_refused(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    await FakeCore([], refuse={"2"}).serve(core_bus)
    pretend_running(state, nats_url)
    code, out, err, _ = await run(state, "cancel", "1", "2", "3")
    assert code == 1
    assert out.splitlines() == ["1: cancel accepted", "3: cancel accepted"]
    assert err == "skyport: 2: not_owner: job 2\n"


async def test_cancel_many_of_an_unreachable_deployment_exits_3(state: StateDir) -> None:
    pretend_running(state, "nats://127.0.0.1:1")
    code, out, err, _ = await run(state, "cancel", "1", "2")
    assert (code, out) == (3, "")
    assert err.startswith("skyport: cannot reach NATS") and len(err.splitlines()) == 1


async def test_environment_errors_name_the_line_or_option(
    state: StateDir, fake: FakeCore, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SKYPORT --export=A-B=1\ntrue\n")
    code, _, err, _ = await run(state, "submit", str(script))
    assert code == 2 and err.startswith("skyport: line 2: #SKYPORT --export=A-B=1: --export: ")
    script.write_text("#!/bin/sh\ntrue\n")
    code, _, err, _ = await run(state, "submit", str(script), "--env=SKYPORT_JOB_ID=1")
    assert code == 2 and err.startswith("skyport: command line --env: --env: environment ")
    assert fake.submitted == []


async def test_a_non_ascii_digit_is_a_usage_error_naming_the_line(
    state: StateDir, fake: FakeCore, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SWM time \u00b2\ntrue\n")
    code, _, err, _ = await run(state, "submit", str(script))
    assert code == 2 and err.startswith("skyport: line 2: #SWM time \u00b2: --time: ")
    assert "Traceback" not in err and fake.submitted == []


async def test_status_without_deployment_exits_3(state: StateDir) -> None:
    code, out, _, _ = await run(state, "status", "--json")
    assert code == 3
    assert json.loads(out) == {
        "state_dir": str(state.root),
        "running": False,
        "nats_url": None,
        "supervisor_pid": None,
        "started_at": None,
        "components": [],
    }


async def test_unreachable_deployment_exits_3(state: StateDir) -> None:
    pretend_running(state, "nats://127.0.0.1:1")
    code, _, err, _ = await run(state, "jobs")
    assert code == 3 and err.startswith("skyport: cannot reach NATS")


async def test_bad_usage_exits_2(state: StateDir) -> None:
    code, _, err, _ = await run(state, "jobs", "--state", "sleeping")
    assert code == 2 and "unknown state" in err


async def test_events_of_every_user_is_refused_to_a_user_at_once(
    state: StateDir, fake: FakeCore
) -> None:
    code, out, err, _ = await run(state, "events", "--all-users")
    assert code == 1 and out == ""
    # said by the client itself, not after the server's refusal timed out
    assert "alice is not an admin: cannot read the jobs of every user" in err
