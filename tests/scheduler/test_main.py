"""``python -m scheduler`` as its own process: it catches up, then exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from bus.connection import Bus
from bus.deployment import StateDir

ROOT = Path(__file__).resolve().parents[2]


async def _wait_for_line(proc: subprocess.Popen[bytes], text: bytes, timeout: float) -> bytes:
    assert proc.stderr is not None
    seen = b""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while text not in seen:
            line = await loop.run_in_executor(None, proc.stderr.readline)
            if not line:
                break
            seen += line
    return seen


async def test_scheduler_process_stops_cleanly_on_sigterm(
    state: StateDir, nats_url: str, core_bus: Bus
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "--state-dir", str(state.root), "--nats-url", nats_url],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        seen = await _wait_for_line(proc, b"scheduler caught up", 10.0)
        assert b"scheduler caught up" in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10.0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
