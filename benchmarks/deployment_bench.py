"""End-to-end figures on the embedded deployment (real processes, loopback only).

submit_throughput      signed submissions through the bus, verified and committed by core
submit_to_running_*    ms from the submit reply to the job_started event, idle deployment
completion_throughput  trivial jobs completed per second (local gate, 16 virtual nodes)
cli_jobs_ms            wall time of `skyport jobs --json` (a fresh process) with 1,000 jobs queued
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from benchmarks.figures import emit, median, percentile
from bus.connection import Bus, Delivery
from bus.deployment import DeploymentInfo
from bus.tls import client_context
from schemas import subjects
from schemas.commands import Accepted, SubmitJob
from schemas.events import AnyJobEvent, JobCompleted, JobFailed, JobStarted
from schemas.ids import new_message_id
from schemas.jobs import JobSpec
from schemas.roster import Role
from tests.system.harness import Harness

TRIVIAL = "#!/bin/sh\ntrue\n"  # a trivial job, as one would give sbatch


async def _alice(h: Harness, name: str = "alice") -> Bus:
    return await Bus.connect(
        h.url,
        h.state.load_signer(name),
        h.state.load_roster(),
        "bench",
        tls=client_context(h.state),
        nkeys_seed=str(h.state.seed_path(name)),
    )


async def _submit(bus: Bus, script: str = TRIVIAL, name: str = "bench") -> str:
    cmd = SubmitJob(id=new_message_id(), at=time.time(), spec=JobSpec(script=script, name=name))
    reply = await bus.request(subjects.command_subject(cmd), cmd, timeout=60)
    if not isinstance(reply, Accepted) or reply.job_id is None:
        raise RuntimeError(f"submit refused: {reply}")
    return reply.job_id


async def _submit_many(bus: Bus, n: int, window: int = 256) -> float:
    """Submit n jobs with at most ``window`` in flight; return elapsed seconds."""
    sem = asyncio.Semaphore(window)

    async def one() -> None:
        async with sem:
            await _submit(bus)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


async def _ready(bus: Bus) -> None:
    for _ in range(300):
        try:
            await _submit(bus, name="warmup")
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError("core did not come up")


async def submit_throughput(root: Path, n: int = 5000) -> None:
    h = Harness.create(root)
    h.start_nats()
    h.start("core")
    try:
        bus = await _alice(h)
        await _ready(bus)
        elapsed = await _submit_many(bus, n)
        emit("submit_throughput", n / elapsed, "jobs/s", jobs=n)
        await bus.close()
    finally:
        h.stop()


async def _watch(bus: Bus, on: dict[str, asyncio.Future[float]], kind: type) -> None:
    async def handler(d: Delivery[AnyJobEvent]) -> None:
        ev = d.incoming.body
        fut = on.get(ev.job_id)
        if isinstance(ev, kind) and fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    events = subjects.job_events_of_owner("alice")  # a user may watch only their own jobs
    await bus.replay(events, msgspec.json.Decoder(AnyJobEvent), handler, True)


async def submit_to_running(root: Path, samples: int = 100) -> None:
    h = Harness.create(root)
    h.start_all()
    try:
        bus = await _alice(h)
        await _ready(bus)
        await asyncio.sleep(1.0)  # the gate has reported its capacity
        started: dict[str, asyncio.Future[float]] = {}
        loop = asyncio.get_running_loop()
        await _watch(bus, started, JobStarted)
        waits: list[float] = []
        for _ in range(samples):
            cmd = SubmitJob(id=new_message_id(), at=time.time(), spec=JobSpec(script=TRIVIAL))
            fut: asyncio.Future[float] = loop.create_future()
            reply = await bus.request(subjects.command_subject(cmd), cmd, timeout=30)
            t_reply = time.perf_counter()
            assert isinstance(reply, Accepted) and reply.job_id
            started[reply.job_id] = fut
            waits.append((await asyncio.wait_for(fut, 30) - t_reply) * 1000)
            await asyncio.sleep(0.05)  # idle between jobs
        emit("submit_to_running_p50", percentile(waits, 50), "ms", samples=samples)
        emit("submit_to_running_p99", percentile(waits, 99), "ms", samples=samples)
        await bus.close()
    finally:
        h.stop()


async def completion_throughput(root: Path, n: int = 1000) -> None:
    h = Harness.create(root, ["--nodes", "16", "--cpus", "2"])
    h.start_all()
    try:
        bus = await _alice(h)
        await _ready(bus)
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        done: dict[str, asyncio.Future[float]] = {}
        pending_ids: list[str] = []

        async def handler(d: Delivery[AnyJobEvent]) -> None:
            ev = d.incoming.body
            if isinstance(ev, JobCompleted | JobFailed):
                done.setdefault(ev.job_id, loop.create_future())
                if not done[ev.job_id].done():
                    done[ev.job_id].set_result(time.perf_counter())

        # Only the terminal events, as a user waiting for their jobs would watch: the observer
        # shares the two cores with the deployment it measures.
        decoder = msgspec.json.Decoder(AnyJobEvent)
        for tag in ("job_completed", "job_failed"):
            await bus.replay(subjects.job_events_of("alice", tag=tag), decoder, handler, True)
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(256)

        async def one() -> None:
            async with sem:
                jid = await _submit(bus)
                pending_ids.append(jid)
                done.setdefault(jid, loop.create_future())

        await asyncio.gather(*(one() for _ in range(n)))
        ends = await asyncio.wait_for(asyncio.gather(*(done[j] for j in pending_ids)), 300)
        elapsed = max(ends) - t0
        emit("completion_throughput", n / elapsed, "jobs/s", jobs=n, gate_nodes=16)
        await bus.close()
    finally:
        h.stop()


async def cli_jobs(root: Path, n: int = 1000, runs: int = 10) -> None:
    h = Harness.create(root)
    user = re.sub(r"[^A-Za-z0-9_-]", "_", getpass.getuser())[:64] or "user"
    h.state.ensure_identity(user, Role.ADMIN)
    h.start_nats()
    h.start("core")
    try:
        h.state.write_info(
            DeploymentInfo(nats_url=h.url, started_at=time.time(), supervisor_pid=os.getpid())
        )
        bus = await _alice(h, user)  # the jobs are the invoking user's own, as `jobs` lists
        await _ready(bus)
        await _submit_many(bus, n - 1)
        skyport = str(Path(sys.executable).with_name("skyport"))
        env = {**os.environ, "SKYPORT_HOME": str(h.state.root)}
        times: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            out = subprocess.run(
                [skyport, "jobs", "--json"], env=env, capture_output=True, check=True
            )
            times.append((time.perf_counter() - t0) * 1000)
        rows = msgspec.json.decode(out.stdout)
        if len(rows) < n:
            raise RuntimeError(f"skyport jobs listed {len(rows)} jobs, expected {n}")
        emit("cli_jobs_ms", median(times), "ms", jobs=len(rows), runs=runs)
        await bus.close()
    finally:
        h.stop()


BENCHES = [submit_throughput, submit_to_running, completion_throughput, cli_jobs]


def run_all() -> None:
    # One directory for all, removed at the end: on an ext4 without a journal, every inode
    # allocation for 30 s after a mass deletion scans past the freed inodes, so deleting one
    # benchmark's run files would slow the next one, and that clean-up is none of its work.
    with tempfile.TemporaryDirectory(prefix="skyport-bench-") as tmp:
        for bench in BENCHES:
            asyncio.run(bench(Path(tmp) / bench.__name__ / "state"))
