"""Free capacity of one gate during a placement pass, indexed for best-fit search.

Pure: no I/O, no clock. A pool starts from the nodes a gate advertises, is charged with what
active and in-flight jobs hold, and is charged again as the pass places jobs. Nodes are kept
in buckets by free cpus, so a search for ``n`` nodes with ``c`` cpus looks at the nodes with
the fewest sufficient cpus first (best fit) and never at the ones that are too small. A gate
whose nodes differ in price is searched cheapest first (``find_cheapest``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas.ids import GateName
from schemas.jobs import JobSpec, NodeAllocation, NodeShape, node_share


class Need(NamedTuple):
    """What a job needs on each of its nodes."""

    cpus: int
    memory_mb: int
    gpus: int

    @classmethod
    def of(cls, spec: JobSpec) -> Need:
        return cls(spec.cpus_per_node, spec.memory_mb_per_node, spec.gpus_per_node)

    def within(self, cpus: int, memory_mb: int, gpus: int) -> bool:
        return self.cpus <= cpus and self.memory_mb <= memory_mb and self.gpus <= gpus


@dataclass(slots=True)
class NodeState:
    """One node's free share during a pass."""

    shape: NodeShape
    cpus: int
    memory_mb: int
    free_gpus: list[int]

    def fits(self, need: Need) -> bool:
        return need.within(self.cpus, self.memory_mb, len(self.free_gpus))


Admit = Callable[[int], bool]
"""An extra rule on a node index (backfill uses it to protect a reservation)."""


class GatePool:
    """The nodes of one live gate with what is still free on each."""

    def __init__(self, gate: GateName, shapes: Sequence[NodeShape]) -> None:
        self.gate = gate
        self.nodes = [NodeState(s, s.cpus, s.memory_mb, list(range(s.gpus))) for s in shapes]
        self.index = {node.shape.name: i for i, node in enumerate(self.nodes)}
        top = max((s.cpus for s in shapes), default=0)
        self._buckets: list[dict[int, None]] = [{} for _ in range(top + 1)]
        for i, node in enumerate(self.nodes):
            self._buckets[node.cpus][i] = None
        self.free_cpus = sum(node.cpus for node in self.nodes)
        self._levels: dict[Need, list[float]] = {}

    def capable(self, need: Need) -> int:
        """How many nodes could hold ``need`` if they were empty."""
        return sum(
            1 for n in self.nodes if need.within(n.shape.cpus, n.shape.memory_mb, n.shape.gpus)
        )

    def hold(self, share: NodeAllocation) -> None:
        """Charge a share that an active or in-flight job already holds."""
        i = self.index.get(share.node)
        if i is None:
            return  # the gate no longer has that node
        node = self.nodes[i]
        node.memory_mb -= share.memory_mb
        taken = set(share.gpus)
        node.free_gpus = [g for g in node.free_gpus if g not in taken]
        self._set_cpus(i, node.cpus - share.cpus)

    def take(self, i: int, need: Need) -> NodeAllocation:
        """Charge a new share on node ``i``: the lowest free GPU indices are given."""
        node = self.nodes[i]
        gpus = tuple(node.free_gpus[: need.gpus])
        del node.free_gpus[: need.gpus]
        node.memory_mb -= need.memory_mb
        self._set_cpus(i, node.cpus - need.cpus)
        return NodeAllocation(
            node=node.shape.name,
            host=node.shape.host,
            cpus=need.cpus,
            memory_mb=need.memory_mb,
            gpus=gpus,
        )

    def cost(self, i: int, need: Need) -> float:
        """What ``need`` on node ``i`` costs per hour: the node's price × the part it takes."""
        shape = self.nodes[i].shape
        return node_share(shape, need.cpus, need.memory_mb, need.gpus) * shape.price_per_hour

    def levels(self, need: Need) -> list[float]:
        """The distinct costs of ``need`` on the nodes that could hold it, lowest first."""
        levels = self._levels.get(need)
        if levels is None:
            costs = [
                self.cost(i, need)
                for i, n in enumerate(self.nodes)
                if need.within(n.shape.cpus, n.shape.memory_mb, n.shape.gpus)
            ]
            levels = self._levels[need] = _cost_levels(costs)
        return levels

    def find_cheapest(self, need: Need, count: int, admit: Admit | None = None) -> list[int] | None:
        """``find`` among the cheapest nodes that can do: the gate's cost levels for ``need``
        are tried from the lowest up (a single ``find`` when all its nodes cost alike)."""
        levels = self.levels(need)
        if len(levels) == 1:
            return self.find(need, count, admit)
        for level in levels:

            def cheap(i: int, level: float = level) -> bool:
                return self.cost(i, need) <= level and (admit is None or admit(i))

            chosen = self.find(need, count, cheap)
            if chosen is not None:
                return chosen
        return None

    def find(self, need: Need, count: int, admit: Admit | None = None) -> list[int] | None:
        """Indices of ``count`` distinct nodes that fit ``need``, best fit first, or None."""
        if count * need.cpus > self.free_cpus:
            return None
        chosen: list[int] = []
        for bucket in self._buckets[need.cpus :]:
            for i in bucket:
                node = self.nodes[i]
                if node.memory_mb < need.memory_mb or len(node.free_gpus) < need.gpus:
                    continue
                if admit is not None and not admit(i):
                    continue
                chosen.append(i)
                if len(chosen) == count:
                    return chosen
        return None

    def _set_cpus(self, i: int, cpus: int) -> None:
        node = self.nodes[i]
        old, new = max(node.cpus, 0), max(cpus, 0)  # a shrunken gate may be over-held
        del self._buckets[old][i]
        self._buckets[new][i] = None
        self.free_cpus += new - old
        node.cpus = cpus


def could_hold(pool: GatePool, spec: JobSpec) -> bool:
    """Whether the greedy pass counts ``pool``'s gate as one that could ever hold a job of
    ``spec``: the gate it names (if any), enough nodes that could hold it when empty, and
    its maximum price (if any) at least the gate's lowest price for it."""
    need, top = Need.of(spec), spec.max_price_per_hour
    return (
        spec.gate in (None, pool.gate)
        and pool.capable(need) >= spec.nodes
        and (top is None or pool.levels(need)[0] * spec.nodes <= top)
    )


MAX_COST_LEVELS = 16


def _cost_levels(costs: list[float]) -> list[float]:
    """The distinct costs, lowest first; at most ``MAX_COST_LEVELS`` of them (evenly spread,
    the highest always kept), so a gate of many prices costs a pass few searches."""
    levels = sorted(set(costs)) or [0.0]
    if len(levels) <= MAX_COST_LEVELS:
        return levels
    step = len(levels) / MAX_COST_LEVELS
    return [levels[int(k * step)] for k in range(1, MAX_COST_LEVELS)] + [levels[-1]]
