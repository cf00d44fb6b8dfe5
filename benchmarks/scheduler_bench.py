"""Scheduler benchmarks: fold a large queue into a view and run one greedy placement pass.

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


def _gate(name: str, count: int) -> GateCapacity:
    nodes = tuple(
        NodeShape(
            name=f"n{i:04d}",
            cpus=64,
            memory_mb=256_000,
            gpus=4 if i % 4 == 0 else 0,
            host=f"h{i:04d}",
        )
        for i in range(count)
    )
    return GateCapacity(event_id=MessageId(f"cap-{name}"), at=NOW, gate=GateName(name), nodes=nodes)


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
    """A view with ``jobs`` pending jobs over one gate of ``nodes`` nodes; and the fold time."""
    rng = random.Random(seed)
    events = [_job(rng, n) for n in range(1, jobs + 1)]
    view = View()
    view.apply_gate_event(_gate("bench", nodes))
    started = time.perf_counter()
    for event in events:
        view.apply_job_event(event)
    return view, time.perf_counter() - started


def bench_greedy(jobs: int = 10_000, nodes: int = 1_000) -> dict[str, float]:
    """Time one greedy pass over ``jobs`` pending jobs and ``nodes`` nodes (best of 3)."""
    view, fold_s = build_view(jobs, nodes)
    best = float("inf")
    placed = 0
    for _ in range(3):
        started = time.perf_counter()
        placed = len(plan(view, NOW))
        best = min(best, time.perf_counter() - started)
    return {"sched_greedy_10k_s": best, "sched_fold_10k_s": fold_s, "placed": placed}


def main() -> None:
    figures = bench_greedy()
    emit("sched_greedy_10k_s", figures["sched_greedy_10k_s"], "s", placed=int(figures["placed"]))
    emit("sched_fold_10k_s", figures["sched_fold_10k_s"], "s")


if __name__ == "__main__":
    main()
