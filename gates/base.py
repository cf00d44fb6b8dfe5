"""The gate plugin protocol and the gate errors. Pure: no I/O here, and plugins never import nats.

A gate plugin executes runs; the runner (``gates.runner``) owns everything else: the bus, the
run directory and its record, staging through the object store, time limits, the
SIGTERM → grace → SIGKILL sequence and the events. A plugin is told where a run's files are
(``RunPaths``) and must, for every run it launches:

- run ``paths.script`` with ``bash`` in ``paths.workdir``, stdin from ``/dev/null``, stdout and
  stderr appended to ``paths.stdout`` / ``paths.stderr`` (the runner tails those files);
- write the exit status to ``paths.exit_status`` when the script ends, in a way that survives
  the gate process dying (the run outlives the gate);
- let the runner signal the whole run (``signal``) and wait for it (``wait``), also for a run
  launched by an earlier gate process (``RunHandle`` is stored in the run record).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import msgspec

from schemas.jobs import NodeShape


class GateError(Exception):
    """Base of the errors of gates; ``detail`` is what the user is told."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class LaunchError(GateError):
    """The run could not be started (no process was left behind)."""


class StagingError(GateError):
    """A staged input could not be placed in, or an output read from, the work directory."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name


class RunHandle(msgspec.Struct, frozen=True, kw_only=True):
    """What identifies a launched run across gate restarts: the job's first process (the
    leader of its process group) and its start time (so a recycled pid is never mistaken for
    the run)."""

    pid: int
    start_ticks: int
    started_at: float | None = None  # wall clock when the run started, for its time limit


class ExitStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How the script ended: ``code`` as a shell reports it (128 + n when killed by signal n),
    or ``None`` when the status was lost (the supervising process died)."""

    code: int | None


@dataclass(frozen=True)
class RunPaths:
    """The files of one run under ``<gate dir>/runs/<job_id>-<attempt>/`` (each path is
    built once: pathlib is slow enough to matter at hundreds of runs per second)."""

    root: Path

    @cached_property
    def workdir(self) -> Path:
        return self.root / "workdir"

    @cached_property
    def checkpoint(self) -> Path:
        return self.workdir / "checkpoint"

    @cached_property
    def script(self) -> Path:
        return self.root / "job.sh"

    @cached_property
    def hostfile(self) -> Path:
        return self.root / "hostfile"

    @cached_property
    def stdout(self) -> Path:
        return self.root / "stdout"

    @cached_property
    def stderr(self) -> Path:
        return self.root / "stderr"

    @cached_property
    def exit_status(self) -> Path:
        return self.root / "exit"

    @cached_property
    def job_pid(self) -> Path:
        return self.root / "job.pid"

    @cached_property
    def record(self) -> Path:
        return self.root / "run.json"

    @cached_property
    def stop_mark(self) -> Path:
        return self.root / "stopped.json"

    @cached_property
    def log_offsets(self) -> Path:
        return self.root / "offsets.json"


@dataclass(frozen=True)
class GateOptions:
    """Generic sizing options of a gate instance (command-line flags); ``None`` = default."""

    nodes: int | None = None
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: int | None = None
    price_per_hour: float = 0.0  # of each node (the local gate's are free unless told)


class Gate(Protocol):
    """A compute provider, as the runner sees it."""

    name: str

    async def nodes(self) -> tuple[NodeShape, ...]:
        """The nodes this gate offers (reported as GateCapacity)."""
        ...

    async def launch(self, paths: RunPaths, env: Mapping[str, str]) -> RunHandle:
        """Start ``paths.script``; return once it runs. Raises LaunchError."""
        ...

    async def recover(self, paths: RunPaths) -> RunHandle | None:
        """For a run resumed by a restarted gate before its record says it runs: the handle
        of the run if it was started (running or already over), None if it never was (it is
        then staged in and launched again)."""
        ...

    def alive(self, handle: RunHandle) -> bool:
        """Whether the run's first process still exists (the same one, not a reuse)."""
        ...

    async def wait(self, handle: RunHandle, paths: RunPaths) -> ExitStatus:
        """Wait until the run is over, however it was started, and return its exit status."""
        ...

    async def signal(self, handle: RunHandle, paths: RunPaths, sig: signal.Signals) -> None:
        """Send ``sig`` to every process of the run; a no-op once it is over."""
        ...

    async def close(self) -> None:
        """Let go of what the gate holds open (never of its runs, which go on)."""
        ...


class GateFactory(Protocol):
    """What the ``skyport.gates`` entry point names: a class built from name and options."""

    def __call__(self, name: str, options: GateOptions) -> Gate: ...
