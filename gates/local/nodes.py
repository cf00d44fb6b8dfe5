"""The virtual nodes of a local gate: this host split by the operator's flags.

Defaults: one node with all of this host's cpus and memory and no GPUs. With ``--nodes N``
and no sizes, the host's cpus and memory are split evenly between the N nodes. Node names
are ``local-0`` … ``local-<N-1>``; their host is ``localhost``; each costs ``--price`` per
node-hour (default 0).
"""

from __future__ import annotations

import os
from pathlib import Path

from gates.base import GateOptions
from schemas.jobs import NodeShape

MEMINFO = Path("/proc/meminfo")


def host_memory_mb(meminfo: str) -> int:
    """``MemTotal`` of a /proc/meminfo text, in MiB (0 if absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def virtual_nodes(
    name: str, options: GateOptions, host_cpus: int, host_memory: int
) -> tuple[NodeShape, ...]:
    """The node shapes of a gate named ``name``. Pure."""
    count = options.nodes or 1
    if count < 1:
        raise ValueError("a local gate needs at least one node")
    cpus = options.cpus or max(1, host_cpus // count)
    memory = options.memory_mb if options.memory_mb is not None else host_memory // count
    gpus = options.gpus or 0
    return tuple(
        NodeShape(
            name=f"{name}-{i}",
            cpus=cpus,
            memory_mb=memory,
            gpus=gpus,
            host="localhost",
            price_per_hour=options.price_per_hour,
        )
        for i in range(count)
    )


def this_host() -> tuple[int, int]:
    """This host's cpu count and memory (MiB)."""
    try:
        memory = host_memory_mb(MEMINFO.read_text())
    except OSError:
        memory = 0
    return os.cpu_count() or 1, memory
