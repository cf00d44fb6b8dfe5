"""``python -m core`` as its own process: serves a submission, stops on SIGTERM with exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from bus.deployment import StateDir
from schemas.commands import Accepted
from tests.conftest import connect_as
from tests.core.conftest import send, submit_job, wait_ready

ROOT = Path(__file__).resolve().parents[2]


async def test_core_runs_as_a_process_and_stops_cleanly(state: StateDir, nats_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "--state-dir", str(state.root), "--nats-url", nats_url],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )
    try:
        alice = await connect_as(state, nats_url, "alice")
        await wait_ready(alice)
        reply = await send(alice, submit_job())
        assert isinstance(reply, Accepted) and reply.job_id == "1"
        await alice.close()
        assert state.core_db.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, None, 20)
    assert proc.returncode == 0, err.decode()
    assert state.seed_path("core").read_bytes().strip() not in err  # seeds are never logged


async def test_a_second_core_on_the_same_database_exits_2_naming_the_holder(
    state: StateDir, nats_url: str
) -> None:
    argv = [sys.executable, "-m", "core", "--state-dir", str(state.root), "--nats-url", nats_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        alice = await connect_as(state, nats_url, "alice")
        await wait_ready(alice)
        await alice.close()
        second = await asyncio.to_thread(
            subprocess.run, argv, env=env, stderr=subprocess.PIPE, timeout=20
        )
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(first.communicate, None, 20)
    assert first.returncode == 0, err.decode()
    assert second.returncode == 2, second.stderr.decode()
    message = second.stderr.decode()
    assert f"{state.core_db}.lock" in message and f"pid {first.pid}" in message, message
