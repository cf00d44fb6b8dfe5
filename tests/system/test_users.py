"""``skyport user add`` and ``revoke`` on a running deployment (real processes): a new user
can connect and submit at once, and a revoked one is cut off within 5 s, nothing restarted."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from bus.connection import Bus
from schemas.jobs import JobSpec, JobState
from schemas.wire import Signer
from terminals.cli.main import main
from terminals.client import Client
from terminals.client.errors import ClientError
from tests.rawproto import handshake
from tests.system.harness import Harness, submit_when_ready

pytestmark = pytest.mark.system


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.create(tmp_path / "state")
    h.start_all()
    h.announce()
    try:
        yield h
    finally:
        h.stop()


def skyport(h: Harness, *args: str) -> tuple[int, str]:
    return h.cli(*args)


async def server_knows(h: Harness, signer: Signer, timeout: float = 10.0) -> None:
    """Until the server's reload (``skyport user add`` signals it) lets ``signer`` in: a
    connection made while the server reloads may be dropped by that reload."""
    async with asyncio.timeout(timeout):
        while handshake(h.url, signer) != "PONG":
            await asyncio.sleep(0.05)


async def submit_as(h: Harness, creds: Path, tmp: Path) -> str:
    """Submit a job with the credentials file alone (core may take a moment to know it),
    then one that stages a file in and its result out: the new user's bucket exists, and
    the gate may use it, without a restart."""
    signer = Signer(creds.read_bytes())
    await server_knows(h, signer)
    bus = await Bus.connect(h.url, signer, h.state.load_roster(), "carol", nkeys_seed=str(creds))
    try:
        await submit_when_ready(bus, JobSpec(script="true"), timeout=10)
    finally:
        await bus.close()
    (tmp / "in.txt").write_text("carol's data\n")
    async with await Client.connect(h.state.root, credentials_path=creds) as client:
        inputs = await client.stage_inputs([(tmp / "in.txt", "in.txt")])
        script = "tr a-z A-Z < in.txt > out.txt\n"
        job_id = await client.submit(JobSpec(script=script, inputs=inputs, outputs=("out.txt",)))
        detail = await client.wait(job_id)
        assert detail.summary.state is JobState.COMPLETED, detail
        (fetched,) = await client.fetch(job_id, tmp / "results")
    assert fetched.read_text() == "CAROL'S DATA\n"
    return job_id


async def test_a_user_added_and_revoked_while_the_deployment_runs(
    deployment: Harness, tmp_path: Path
) -> None:
    h = deployment
    code, out = skyport(h, "user", "add", "carol")
    assert code == 0
    creds = Path(out.strip())
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    job_with_files = await submit_as(
        h, creds, tmp_path
    )  # connected and accepted: the server and core know carol

    code, out = skyport(h, "user", "list", "--json")
    assert ("carol", "user") in [(u["name"], u["role"]) for u in json.loads(out)]

    as_carol = io.StringIO()  # the CLI acts as the user of a credentials file
    with contextlib.redirect_stdout(as_carol):
        code = main(["--state-dir", str(h.state.root), "--credentials", str(creds), "jobs", "-a"])
    assert code == 0
    rows = as_carol.getvalue().splitlines()[1:]
    assert len(rows) == 2 and all(" carol " in f" {row} " for row in rows)

    dropped = asyncio.Event()

    async def on_disconnect() -> None:
        dropped.set()

    carol = await nats.connect(
        h.url, nkeys_seed=str(creds), allow_reconnect=False, disconnected_cb=on_disconnect
    )
    try:
        started = time.monotonic()
        assert skyport(h, "user", "revoke", "carol")[0] == 0
        async with asyncio.timeout(5):
            await dropped.wait()
        assert time.monotonic() - started < 5
    finally:
        await carol.close()
    assert not creds.exists()
    code, out = skyport(h, "user", "list", "--json")
    assert "carol" not in [u["name"] for u in json.loads(out)]
    # her files stay: an admin still fetches her job's outputs from her bucket
    async with await Client.connect(h.state.root, "admin", h.url) as admin:
        (kept,) = await admin.fetch(job_with_files, tmp_path / "kept")
    assert kept.read_text() == "CAROL'S DATA\n"


def test_components_cannot_be_revoked_nor_the_acting_admin(deployment: Harness) -> None:
    assert skyport(deployment, "user", "revoke", "core")[0] == 2
    assert skyport(deployment, "user", "revoke", "admin")[0] == 2
    assert skyport(deployment, "user", "add", "core")[0] != 0  # the name is core's
    assert skyport(deployment, "user", "add", "a.b")[0] == 2  # not a subject token


async def test_a_rotated_user_keeps_their_jobs_and_the_old_key_is_refused(
    deployment: Harness, tmp_path: Path
) -> None:
    h = deployment
    code, out = skyport(h, "user", "add", "dave")
    assert code == 0
    creds = Path(out.strip())
    old_seed = creds.read_bytes()
    signer = Signer(old_seed)
    await server_knows(h, signer)
    bus = await Bus.connect(h.url, signer, h.state.load_roster(), "dave", nkeys_seed=str(creds))
    try:
        job = await submit_when_ready(bus, JobSpec(script="true"), timeout=10)
    finally:
        await bus.close()

    code, out = skyport(h, "user", "rotate", "dave")
    assert code == 0 and Path(out.strip()) == creds
    assert creds.read_bytes() != old_seed
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    async with asyncio.timeout(5):  # the old key is refused without a restart
        while handshake(h.url, signer) == "PONG":
            await asyncio.sleep(0.05)
    assert "Authorization Violation" in handshake(h.url, signer)
    async with asyncio.timeout(10):  # core knows the new key within a second or so
        while True:
            try:
                async with await Client.connect(
                    h.state.root, credentials_path=creds, timeout=1
                ) as dave:
                    jobs = await dave.jobs(all=True)
                break
            except ClientError:
                await asyncio.sleep(0.1)
    assert [j.job_id for j in jobs] == [job.job_id]  # still dave's
    assert skyport(h, "user", "rotate", "core")[0] == 2  # components are not users
