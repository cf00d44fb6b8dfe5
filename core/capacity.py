"""The over-commit guard (does an allocation fit a gate's nodes beside the active jobs?)
and the offers of the gates (their nodes, prices and what is held of them). Pure.

Core trusts the scheduler's placements only as far as the gates' reported capacity goes: a
placement naming an unknown node, a host other than the node's, a GPU the node does not have,
or one that would push a node past its cpus, memory or GPUs given the allocations of the jobs
already on it, is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from schemas.commands import GateOffer, NodeOffer
from schemas.gate import GateCapacity
from schemas.jobs import Allocation, NodeShape


@dataclass
class NodeUse:
    """What the active jobs hold of one node."""

    cpus: int = 0
    memory_mb: int = 0
    gpus: set[int] = field(default_factory=set)
    gpu_count: int = 0


Usage = dict[tuple[str, str], NodeUse]


def usage_of(allocations: Iterable[Allocation]) -> Usage:
    """Sum the allocations of the active jobs per (gate, node)."""
    usage: Usage = {}
    for alloc in allocations:
        add(usage, alloc)
    return usage


def add(usage: Usage, alloc: Allocation) -> None:
    for share in alloc.nodes:
        use = usage.setdefault((alloc.gate, share.node), NodeUse())
        use.cpus += share.cpus
        use.memory_mb += share.memory_mb
        use.gpus.update(share.gpus)
        use.gpu_count += len(share.gpus)


def misfit(alloc: Allocation, nodes: dict[str, NodeShape] | None, usage: Usage) -> str | None:
    """Why ``alloc`` does not fit (a detail for PlaceRejection), or None if it fits.

    The sizes of the shares are the job's rule (core.job.decide_place); here each share must
    name a reported node, on the host the gate reported, with GPU indices the node has, and
    fit beside what the active jobs already hold of that node.
    """
    if nodes is None:
        return f"gate {alloc.gate} has not reported capacity"
    seen: set[str] = set()
    for share in alloc.nodes:
        shape = nodes.get(share.node)
        if shape is None:
            return f"gate {alloc.gate} has no node {share.node}"
        if share.node in seen:
            return f"node {share.node} is named twice"
        seen.add(share.node)
        if share.host != shape.host:
            return f"node {share.node} is on host {shape.host}, not {share.host}"
        if share.cpus < 0 or share.memory_mb < 0:
            return f"negative share of node {share.node}"
        if len(set(share.gpus)) != len(share.gpus) or any(
            g < 0 or g >= shape.gpus for g in share.gpus
        ):
            has = f"GPUs 0..{shape.gpus - 1}" if shape.gpus else "no GPUs"
            return f"node {share.node} has {has}, not {list(share.gpus)}"
        use = usage.get((alloc.gate, share.node), NodeUse())
        if (
            use.cpus + share.cpus > shape.cpus
            or use.memory_mb + share.memory_mb > shape.memory_mb
            or use.gpu_count + len(share.gpus) > shape.gpus
            or bool(use.gpus.intersection(share.gpus))
        ):
            return f"over-commits node {share.node}"
    return None


def offers(
    gates: Mapping[str, GateCapacity], allocations: Iterable[Allocation], now: float
) -> tuple[GateOffer, ...]:
    """Every gate core has heard of, by name: its nodes with what ``allocations`` (the active
    jobs') hold of each, and whether its heartbeat is recent enough at ``now``."""
    usage = usage_of(allocations)
    out: list[GateOffer] = []
    for name in sorted(gates):
        cap = gates[name]
        nodes = []
        for shape in cap.nodes:
            use = usage.get((name, shape.name), NodeUse())
            nodes.append(
                NodeOffer(
                    node=shape,
                    used_cpus=use.cpus,
                    used_memory_mb=use.memory_mb,
                    used_gpus=use.gpu_count,
                )
            )
        out.append(
            GateOffer(gate=cap.gate, live=cap.live_at(now), last_seen=cap.at, nodes=tuple(nodes))
        )
    return tuple(out)
