"""Seeds and TLS keys stay secret: written 0600 in a 0700 directory, and never in a log line,
after a deployment on TLS ran jobs and had a user added (real processes; every log file is
read)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import stat
from pathlib import Path

import pytest

from bus import tls
from schemas.jobs import JobSpec
from terminals.cli.main import main
from tests.conftest import connect_as
from tests.system.harness import Harness, submit_when_ready

pytestmark = pytest.mark.system


async def _submit_jobs(h: Harness, n: int) -> None:
    bus = await connect_as(h.state, h.url, "alice")
    try:
        for _ in range(n):
            await submit_when_ready(bus, JobSpec(script="echo hi"))
        await asyncio.sleep(1.0)  # let them run and report
    finally:
        await bus.close()


def test_seeds_and_tls_keys_are_private_and_never_logged(tmp_path: Path) -> None:
    h = Harness.create(tmp_path / "state")
    tls.create(h.state)
    h.start_all()
    try:
        h.announce()
        asyncio.run(_submit_jobs(h, 3))
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--state-dir", str(h.state.root), "user", "add", "dave"]) == 0
    finally:
        h.stop()
    seed_files = [*h.state.keys_dir.glob("*.seed"), *(h.state.root / "credentials").glob("*")]
    assert len(seed_files) >= 7
    tls_keys = [h.state.ca_key_path, h.state.server_key_path]
    for path in [*seed_files, *tls_keys]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (h.state.keys_dir, h.state.root / "credentials", h.state.tls_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    seeds = {path.read_bytes().strip() for path in seed_files}
    for key in tls_keys:  # the base64 lines of each PEM private key
        seeds |= {ln for ln in key.read_bytes().splitlines() if b"-" not in ln and len(ln) >= 20}
    logs = [p for p in h.state.root.rglob("*.log") if p.is_file()]
    assert any(p.name == "core.log" for p in logs) and any("nats" in str(p) for p in logs)
    for log in logs:
        text = log.read_bytes()
        for seed in seeds:
            assert seed not in text, f"a seed in {log}"
            assert seed[:20] not in text, f"part of a seed in {log}"
