"""Scheduler benchmarks: fold a large queue into a view and run one greedy placement pass
(10,000 and 100,000 pending jobs, multi-node ones included, over 1,000 nodes of mixed sizes
in four gates at different prices).

Prints one JSON line per figure: ``{"name": ..., "value": ..., "unit": ...}``. Seeded, so
runs are comparable. Run with ``python -m benchmarks.scheduler_bench``.
"""

from __future__ import annotations

import random
import time

from benchmarks.figures import emit
from scheduler.policy import plan
from scheduler.view import View
from schemas.events import JobSubmitted
from schemas.gate import GateCapacity
from schemas.ids import GateName, JobId, MessageId, UserName
from schemas.jobs import JobSpec, NodeShape

NOW = 1_000_000.0


SIZES = ((8, 32_000), (16, 64_000), (32, 128_000), (64, 256_000))  # cpus, memory (MB)


def _gates(count: int) -> list[GateCapacity]:
    """``count`` nodes of mixed sizes over four gates at different prices (a free pool, two
    clusters, a cloud-priced one), so that a pass compares gates as well as nodes."""
    prices = {"pool": 0.0, "hpc-a": 0.5, "hpc-b": 0.8, "cloud": 3.0}
    per_gate = count // len(prices)
    out = []
    for g, (gate, price) in enumerate(prices.items()):
        nodes = []
        for i in range(per_gate):
            cpus, memory = SIZES[(i + g) % len(SIZES)]
            nodes.append(
                NodeShape(
                    name=f"n{i:04d}",
                    cpus=cpus,
                    memory_mb=memory,
                    gpus=4 if i % 4 == 0 else 0,
                    host=f"{gate}-{i:04d}",
                    price_per_hour=price * cpus / 8,
                )
            )
        cap = GateCapacity(
            event_id=MessageId(f"cap-{gate}"), at=NOW, gate=GateName(gate), nodes=tuple(nodes)
        )
        out.append(cap)
    return out


def _job(rng: random.Random, number: int) -> JobSubmitted:
    spec = JobSpec(
        script="true",
        nodes=rng.choice((1, 1, 1, 2, 4, 8)),
        tasks_per_node=rng.choice((1, 2, 4, 8, 16)),
        cpus_per_task=rng.choice((1, 1, 2)),
        memory_mb_per_node=rng.choice((0, 1000, 8000, 64_000)),
        gpus_per_node=rng.choice((0, 0, 0, 1, 2)),
        time_limit_s=rng.choice((60, 600, 3600, 86_400)),
        priority=rng.choice((0, 0, 0, 10, 100)),
    )
    return JobSubmitted(
        event_id=MessageId(f"e{number}"),
        job_id=JobId(str(number)),
        at=NOW,
        owner=UserName("alice"),
        spec=spec,
    )


def build_view(jobs: int, nodes: int, seed: int = 7) -> tuple[View, float]:
    """A view with ``jobs`` pending jobs over ``nodes`` nodes (four gates); and the fold
    time."""
    rng = random.Random(seed)
    events = [_job(rng, n) for n in range(1, jobs + 1)]
    view = View()
    for gate in _gates(nodes):
        view.apply_gate_event(gate)
    started = time.perf_counter()
    for event in events:
        view.apply_job_event(event)
    return view, time.perf_counter() - started


def bench_greedy(jobs: int, nodes: int = 1_000, runs: int = 3) -> tuple[float, float, int]:
    """One greedy pass over ``jobs`` pending jobs and ``nodes`` nodes: (best of ``runs``
    seconds, fold seconds, jobs placed)."""
    view, fold_s = build_view(jobs, nodes)
    best = float("inf")
    placed = 0
    for _ in range(runs):
        started = time.perf_counter()
        placed = len(plan(view, NOW))
        best = min(best, time.perf_counter() - started)
    return best, fold_s, placed


def main() -> None:
    best, fold_s, placed = bench_greedy(10_000)
    emit("sched_greedy_10k_s", best, "s", placed=placed, target=1.0)
    emit("sched_fold_10k_s", fold_s, "s")
    best, fold_s, placed = bench_greedy(100_000, runs=1)
    emit("sched_greedy_100k_s", best, "s", placed=placed, target=10.0)
    emit("sched_fold_100k_s", fold_s, "s")


if __name__ == "__main__":
    main()
