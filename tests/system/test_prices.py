"""Priced gates (real processes): two local gates at different prices; jobs go to the
cheaper one until it is full, then to the other, ``skyport offers`` shows both, what the
jobs used is accounted at each gate's price, and a job that would take its account past
its budget stays pending with reason ``budget`` until the budget grows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.commands import OptionVerdict, PlanReport
from schemas.events import JobUsageRecorded
from schemas.jobs import JobSpec, JobState
from terminals.client import Client
from terminals.client.errors import ClientError, NotRunningError
from tests.system.harness import Harness

pytestmark = pytest.mark.system


@pytest.fixture
def two_gates(tmp_path: Path) -> Iterator[Harness]:
    # "local" is the cheap one: the old first-fit-by-name order would start on "dear"
    h = Harness.create(tmp_path / "state", ["--nodes", "2", "--cpus", "1", "--price", "0.5"])
    h.start_all()  # "local": two 1-cpu nodes at 0.5 an hour each
    h.start_gate("dear", ["--nodes", "2", "--cpus", "1", "--price", "2.5"])
    h.announce()  # so that the CLI finds it running
    try:
        yield h
    finally:
        h.stop()


async def _both_live(client: Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            offers = await client.offers()
            if {g.gate for g in offers if g.live} == {"local", "dear"}:
                return
        except ClientError:  # core still starting
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the two gates did not both report")
        await asyncio.sleep(0.2)


async def _plan(client: Client, spec: JobSpec, timeout: float = 30.0) -> PlanReport:
    """A dry run, once the scheduler has caught up and serves them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.plan(spec)
        except NotRunningError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_jobs_fill_the_cheaper_gate_first_then_the_other(two_gates: Harness) -> None:
    h = two_gates
    async with await Client.connect(h.state.root, "alice", h.url, timeout=2) as client:
        await _both_live(client)
        prices = {g.gate: {n.node.price_per_hour for n in g.nodes} for g in await client.offers()}
        assert prices == {"local": {0.5}, "dear": {2.5}}
        # a dry run (asked of the scheduler) says where the first would go, and why not "dear"
        plan = await _plan(client, JobSpec(script="sleep 60\n"))
        assert (plan.gate, plan.reason, plan.price_per_hour) == ("local", None, 0.5)
        verdicts = {o.gate: o.verdict for o in plan.options}
        assert verdicts == {"local": OptionVerdict.CHOSEN, "dear": OptionVerdict.DEARER}
        ids = [await client.submit(JobSpec(script="sleep 60\n")) for _ in range(4)]
        async with asyncio.timeout(30):
            while True:
                details = [await client.job(i) for i in ids]
                if all(d.allocation is not None for d in details):
                    break
                await asyncio.sleep(0.2)
        gates = [d.allocation.gate for d in details if d.allocation is not None]
        assert gates == ["local", "local", "dear", "dear"]
        busy = {g.gate: sum(n.used_cpus for n in g.nodes) for g in await client.offers()}
        assert busy == {"local": 2, "dear": 2}
        script = h.state.root / "job.sh"
        script.write_text("#!/bin/sh\n#SKYPORT --time=10\nsleep 1\n")
        code, text = h.cli("submit", "--dry-run", str(script), identity="alice")
        # whichever gate frees a node first (the four started within a few milliseconds)
        assert code == 0 and text.startswith("would wait (resources), start on gate "), text
        assert " at 20" in text.splitlines()[0], text  # exact: it would be the next to start
        assert "local  busy" in text and "dear   busy" in text
        for job_id in ids:
            await client.cancel(job_id)
        async with asyncio.timeout(30):
            while {(await client.job(i)).summary.state for i in ids} != {JobState.CANCELLED}:
                await asyncio.sleep(0.2)
        # each attempt that ran is accounted: its node-hours at its gate's price
        records = [
            e
            for job_id in ids
            async for e in client.events(job_id=job_id)
            if isinstance(e, JobUsageRecorded)
        ]
        price = {"local": 0.5, "dear": 2.5}
        assert [r.gate for r in records] == gates
        for r in records:
            assert r.node_hours > 0 and r.cost == pytest.approx(r.node_hours * price[r.gate])
        (total,) = (await client.usage()).totals
        assert (total.owner, total.account, total.jobs) == ("alice", "alice", 4)
        assert total.cost == pytest.approx(sum(r.cost for r in records))


async def test_a_job_past_its_accounts_budget_stays_pending_with_reason_budget(
    two_gates: Harness,
) -> None:
    h = two_gates
    assert h.cli("account", "add", "physics", "--member", "alice")[0] == 0
    assert h.cli("account", "budget", "physics", "1.0")[0] == 0  # physics may spend 1.0
    async with await Client.connect(h.state.root, "alice", h.url, timeout=2) as client:
        await _both_live(client)
        # an hour on a node of "local" is estimated at 0.5: two fit the budget; the third
        # would need "dear" (2.5) or a free "local" node, and nothing is left for either
        spec = JobSpec(script="sleep 60\n", account="physics", time_limit_s=3600)
        ids = [await client.submit(spec) for _ in range(3)]
        async with asyncio.timeout(30):
            while True:
                details = [await client.job(i) for i in ids]
                if details[2].summary.reason == "budget" and all(
                    d.allocation is not None for d in details[:2]
                ):
                    break
                await asyncio.sleep(0.2)
        assert "exceeds what is left of account physics's budget of 1" in details[2].summary.detail
        assert details[2].allocation is None
        code, listing = h.cli("jobs", "--all-users")
        assert code == 0 and f"{ids[2]}" in listing and "pending(budget)" in listing
        # a bigger budget lets it start, on the dear gate (the cheap one is full)
        assert h.cli("account", "budget", "physics", "10")[0] == 0
        async with asyncio.timeout(30):
            while (await client.job(ids[2])).allocation is None:
                await asyncio.sleep(0.2)
        placed = (await client.job(ids[2])).allocation
        assert placed is not None and placed.gate == "dear"
        for job_id in ids:
            await client.cancel(job_id)
