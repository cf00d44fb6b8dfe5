"""The ``local`` gate plugin: each run is a process group on this host (I/O, no bus).

Jobs are started and reaped by the gate's keeper (``gates.local.keeper``), a small process
that outlives the gate, so a gate that dies loses no exit status. A handle names the job's
pid (its process group) and its start time in ``/proc``, so a recycled pid is never taken
for the run; signals go to the job's process group.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path

from gates.base import ExitStatus, GateOptions, LaunchError, RunHandle, RunPaths
from gates.environment import DEFAULT_PATH
from gates.local import keeper
from gates.local.keeper import start_ticks
from gates.local.link import KeeperGone, KeeperLink, reap_finished
from gates.local.nodes import this_host, virtual_nodes
from schemas.jobs import NodeShape

GONE = -2  # start_ticks of a handle whose job is over: only its exit file counts


class LocalGate:
    """Virtual nodes on this host; see ``gates.local.nodes`` for the defaults."""

    def __init__(self, name: str, options: GateOptions) -> None:
        self.name = name
        cpus, memory = this_host()
        self._nodes = virtual_nodes(name, options, cpus, memory)
        bash = shutil.which("bash")
        if bash is None:
            raise LaunchError("bash not found on PATH")
        self._bash = bash
        self._links: dict[Path, KeeperLink] = {}
        self._link_lock = asyncio.Lock()
        self._owner: dict[str, KeeperLink] = {}  # run dir -> the link that will report its exit

    async def nodes(self) -> tuple[NodeShape, ...]:
        return self._nodes

    async def launch(self, paths: RunPaths, env: Mapping[str, str]) -> RunHandle:
        """The script runs by its ``#!`` interpreter if it has one (the kernel decides, so
        the script is never read back), else with bash, as sbatch does."""
        try:
            paths.script.chmod(0o700)
        except OSError as exc:
            raise LaunchError(f"cannot start the job: {exc}") from exc
        script = str(paths.script)
        job_env = {"PATH": DEFAULT_PATH, **env}
        msg = keeper.Launch(str(paths.root), [script], job_env, otherwise=[self._bash, script])
        status = await self._ask(paths, msg)
        if status.state == "refused":
            raise LaunchError(f"cannot start the job: {status.detail}")
        handle = self._handle(paths, status)
        if handle is None:  # a keeper never answers "unknown" to a launch
            raise LaunchError("cannot start the job: the keeper did not start it")
        return handle

    async def recover(self, paths: RunPaths) -> RunHandle | None:
        """Ask the keeper; a keeper started after the run's own died knows nothing of it, and
        then ``job.pid`` tells whether its job still runs (its status is lost)."""
        status = await self._ask_quietly(paths, keeper.Ask(str(paths.root)))
        handle = self._handle(paths, status)
        if handle is not None:
            return handle
        orphan = _orphan(paths)
        if orphan is not None:
            return orphan
        return None

    def alive(self, handle: RunHandle) -> bool:
        return handle.start_ticks != GONE and start_ticks(handle.pid) == handle.start_ticks

    async def wait(self, handle: RunHandle, paths: RunPaths) -> ExitStatus:
        run = str(paths.root)
        if handle.start_ticks == GONE:
            return read_exit_status(paths)
        for _ in range(2):  # the link that launched it, then a fresh one (the keeper may live)
            link = self._owner.get(run)
            if link is None or link.closed:  # e.g. a run resumed from a record with a handle
                self._owner.pop(run, None)
                status = await self._ask_quietly(paths, keeper.Ask(run))
                if status.state == "over":
                    return ExitStatus(code=status.code)
                link = self._owner.get(run)
                if link is None:
                    break
            try:
                code = await link.exit_of(run)
            finally:
                link.forget(run)
                self._owner.pop(run, None)
            if code is not None:
                return ExitStatus(code=code)
        # No keeper reports this run (it was killed): wait for the job, then take what the
        # keeper may have written before it died.
        try:
            fd = os.pidfd_open(handle.pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            try:
                if self.alive(handle):
                    await _readable(fd)
            finally:
                os.close(fd)
        return read_exit_status(paths)

    async def signal(self, handle: RunHandle, paths: RunPaths, sig: signal.Signals) -> None:
        if not self.alive(handle) or _has_exit_status(paths):
            return
        try:
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            pass

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        self._links.clear()
        self._owner.clear()
        reap_finished()

    async def _ask(self, paths: RunPaths, msg: keeper.ToKeeper) -> keeper.Status:
        """Send ``msg`` to the keeper of the run's directory, once more on a fresh link if
        the first one ends (a keeper that was just exiting)."""
        for attempt in range(2):
            link = await self._link(paths.root.parent)
            try:
                status = await link.request(msg)
            except KeeperGone as exc:
                if attempt:
                    raise LaunchError(f"cannot reach the job keeper: {exc}") from exc
                continue
            if status.state == "running":
                self._owner[str(paths.root)] = link
            return status
        raise AssertionError("unreachable")

    async def _ask_quietly(self, paths: RunPaths, msg: keeper.Ask) -> keeper.Status:
        """``_ask``, with a keeper that cannot be reached taken as knowing nothing."""
        try:
            return await self._ask(paths, msg)
        except LaunchError:
            return keeper.Status(msg.run, "unknown")

    async def _link(self, runs_dir: Path) -> KeeperLink:
        async with self._link_lock:
            link = self._links.get(runs_dir)
            if link is None or link.closed:
                try:
                    link = await KeeperLink.open(runs_dir)
                except (OSError, KeeperGone) as exc:
                    raise LaunchError(f"cannot reach the job keeper: {exc}") from exc
                self._links[runs_dir] = link
            return link

    @staticmethod
    def _handle(paths: RunPaths, status: keeper.Status) -> RunHandle | None:
        if status.state == "running":
            return RunHandle(pid=status.pid, start_ticks=status.ticks, started_at=status.at)
        if status.state == "over":
            return RunHandle(pid=0, start_ticks=GONE, started_at=_mtime(paths.job_pid))
        return None


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _orphan(paths: RunPaths) -> RunHandle | None:
    """The handle of a job whose keeper is gone, from ``job.pid`` (written before the keeper
    answered the launch): the job itself if it still runs, else one that only the ``exit``
    file speaks for; None if the keeper never started a job for the run."""
    try:
        pid_text, ticks_text = paths.job_pid.read_text().split()
        pid, ticks = int(pid_text), int(ticks_text)
    except (FileNotFoundError, ValueError):
        return None
    started = _mtime(paths.job_pid)
    if start_ticks(pid) != ticks:
        return RunHandle(pid=0, start_ticks=GONE, started_at=started)
    return RunHandle(pid=pid, start_ticks=ticks, started_at=started)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _has_exit_status(paths: RunPaths) -> bool:
    try:
        return paths.exit_status.stat().st_size > 0
    except FileNotFoundError:
        return False


def read_exit_status(paths: RunPaths) -> ExitStatus:
    """The status the keeper wrote; ``code=None`` if it wrote none (it died first)."""
    try:
        return ExitStatus(code=int(paths.exit_status.read_text().strip()))
    except (FileNotFoundError, ValueError):
        return ExitStatus(code=None)
