"""EASY backfill: the reservation of the first blocked job and the rule that protects it.

Pure: no I/O, no clock. Running jobs are assumed to end at their time limit (the only
estimate a user gives). The reservation names a gate, a start time and the nodes the blocked
job will use then; a later job may start now if it ends by that time, or if on every reserved
node it uses only what the reserved job will leave spare. ``cheapest_now`` applies that rule
while it looks for the cheapest gate where a job starts now, for the pass and for the
optimiser's simulation of it alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from scheduler.capacity import GatePool, Need
from schemas.ids import GateName
from schemas.jobs import NodeAllocation


@dataclass(frozen=True, slots=True)
class Release:
    """Shares that come free at ``end`` (a running job reaching its time limit)."""

    end: float
    gate: GateName
    shares: tuple[NodeAllocation, ...]


@dataclass(slots=True)
class Reservation:
    """Nodes of one gate kept for the blocked job from ``start`` on."""

    gate: GateName
    start: float
    spare: dict[int, list[int]] = field(default_factory=dict)
    """Per reserved node index: cpus, memory, GPUs left over at ``start``."""

    def admits(self, i: int, need: Need) -> bool:
        left = self.spare.get(i)
        return left is None or need.within(left[0], left[1], left[2])

    def charge(self, i: int, need: Need) -> None:
        left = self.spare.get(i)
        if left is not None:
            left[0] -= need.cpus
            left[1] -= need.memory_mb
            left[2] -= need.gpus


def reserve(
    need: Need, count: int, pools: Sequence[GatePool], releases: Iterable[Release], now: float
) -> Reservation | None:
    """The earliest reservation over ``pools``, or None if the job never fits them."""
    by_gate: dict[GateName, list[Release]] = {pool.gate: [] for pool in pools}
    for release in releases:
        if release.gate in by_gate:
            by_gate[release.gate].append(release)
    best: Reservation | None = None
    for pool in pools:
        found = _earliest(pool, need, count, by_gate[pool.gate], now)
        if found is not None and (best is None or found.start < best.start):
            best = found
    return best


def _earliest(
    pool: GatePool, need: Need, count: int, releases: list[Release], now: float
) -> Reservation | None:
    free = [[n.cpus, n.memory_mb, len(n.free_gpus)] for n in pool.nodes]
    fitting = {i for i, f in enumerate(free) if need.within(f[0], f[1], f[2])}
    start = now
    releases.sort(key=lambda r: r.end)
    pending = iter(releases)
    while len(fitting) < count:
        release = next(pending, None)
        if release is None:
            return None
        start = max(start, release.end)
        for share in release.shares:
            i = pool.index.get(share.node)
            if i is None:
                continue
            shape, f = pool.nodes[i].shape, free[i]
            f[0] = min(shape.cpus, f[0] + share.cpus)
            f[1] = min(shape.memory_mb, f[1] + share.memory_mb)
            f[2] = min(shape.gpus, f[2] + len(share.gpus))
            if need.within(f[0], f[1], f[2]):
                fitting.add(i)
    chosen = sorted(fitting, key=lambda i: (free[i][0], i))[:count]  # best fit
    spare = {
        i: [free[i][0] - need.cpus, free[i][1] - need.memory_mb, free[i][2] - need.gpus]
        for i in chosen
    }
    return Reservation(gate=pool.gate, start=start, spare=spare)


class Choice(NamedTuple):
    """Where a job starts now: the pool, its node indices, its price per hour there, and
    whether those nodes are under the reservation."""

    pool: GatePool
    nodes: list[int]
    price: float
    guarded: bool

    def take(self, need: Need, res: Reservation | None) -> tuple[NodeAllocation, ...]:
        """Charge the pool (and the reservation, if guarded) with the job's shares."""
        shares = tuple(self.pool.take(i, need) for i in self.nodes)
        if self.guarded and res is not None:
            for i in self.nodes:
                res.charge(i, need)
        return shares


def cheapest_now(
    pools: Iterable[GatePool],
    need: Need,
    count: int,
    res: Reservation | None,
    ends_in_time: bool,
    top: float | None = None,
) -> Choice | None:
    """The gate where a job of ``count`` × ``need`` costs least per hour if it starts now
    (ties: the first pool), at most ``top`` an hour; None if none has room. On the reserved
    gate, a job that would not end before the reservation starts may use only what the
    reserved job leaves spare (the EASY rule)."""
    best: Choice | None = None
    for pool in pools:
        guarded = res is not None and not ends_in_time and res.gate == pool.gate
        admit = (lambda i: res.admits(i, need)) if guarded and res is not None else None
        chosen = pool.find_cheapest(need, count, admit)
        if chosen is None:
            continue
        price = sum(pool.cost(i, need) for i in chosen)
        if (top is None or price <= top) and (best is None or price < best.price):
            best = Choice(pool, chosen, price, guarded)
            if price == 0:
                break  # nothing is cheaper than free
    return best
