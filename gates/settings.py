"""Settings of one gate runner, read once from the command line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerSettings:
    """``capacity_interval_s``: GateCapacity heartbeat period; ``timeout_grace_s``: SIGTERM →
    SIGKILL delay when a time limit is reached (StopRun carries its own); ``log_poll_s``: how
    often running jobs' output files are checked for new bytes."""

    capacity_interval_s: float = 5.0
    timeout_grace_s: float = 10.0
    log_poll_s: float = 0.1
