"""The ``local`` gate plugin: each run is a process group on this host (I/O, no bus).

Launch writes the job's environment to ``job.env``, then starts the supervising shell
(``gates.local.shim``) with ``posix_spawn`` in a new session and the shim's own environment;
waiting uses a pidfd (no polling, and it works for runs launched by an earlier gate process);
signals go to the job's process group. A handle names the shell's pid and its start time in
``/proc``, so a recycled pid is never taken for the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from gates.base import ExitStatus, GateOptions, LaunchError, RunHandle, RunPaths
from gates.local import shim
from gates.local.nodes import this_host, virtual_nodes
from schemas.jobs import NodeShape

# Children this process spawned, reaped once their pidfd says they exited (a process-wide
# fact, so shared by every LocalGate of the process).
_spawned: set[int] = set()
PID_FILE_WAIT_S = 2.0
GONE = -2  # start_ticks of a recovered handle whose shim is over: only its exit file counts


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot, /proc/<pid>/stat field 22); None if
    there is no such process or it is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


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

    async def nodes(self) -> tuple[NodeShape, ...]:
        return self._nodes

    async def launch(self, paths: RunPaths, env: Mapping[str, str]) -> RunHandle:
        devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
        try:
            has_shebang = _prepare(paths, env)
            # posix_spawn is vfork-based: it returns once the shim has exec'd, well under a
            # millisecond; a thread hand-off would cost more than it saves.
            pid = os.posix_spawn(
                self._bash,
                shim.argv(self._bash, str(paths.root), has_shebang),
                shim.SHIM_ENV,  # never the job's: see gates.local.shim
                file_actions=devnull,
                setsid=True,
            )
        except (OSError, UnicodeError) as exc:
            raise LaunchError(f"cannot start the job: {exc}") from exc
        _spawned.add(pid)
        ticks = start_ticks(pid)
        return RunHandle(
            pid=pid, start_ticks=ticks if ticks is not None else -1, started_at=time.time()
        )

    async def recover(self, paths: RunPaths) -> RunHandle | None:
        """The shim writes ``shim.pid`` as its first act; wait a moment for it, since a gate
        killed right after the spawn may leave a shim that has not written it yet; then look
        for a live shim of the run in ``/proc`` before concluding it was never started."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PID_FILE_WAIT_S
        while True:
            try:
                pid = int(paths.shim_pid.read_text().strip())
            except (FileNotFoundError, ValueError):
                if loop.time() > deadline:
                    return await asyncio.to_thread(_live_shim, paths)
                await asyncio.sleep(0.01)
                continue
            started = paths.shim_pid.stat().st_mtime  # written as the shim's first act
            ticks = start_ticks(pid)
            if ticks is not None and _is_shim_of(pid, paths):
                return RunHandle(pid=pid, start_ticks=ticks, started_at=started)
            return RunHandle(pid=pid, start_ticks=GONE, started_at=started)

    def alive(self, handle: RunHandle) -> bool:
        return handle.start_ticks != GONE and start_ticks(handle.pid) == handle.start_ticks

    async def wait(self, handle: RunHandle, paths: RunPaths) -> ExitStatus:
        if handle.start_ticks == GONE:
            return read_exit_status(paths)
        try:
            fd = os.pidfd_open(handle.pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            try:
                if handle.start_ticks < 0 or self.alive(handle):
                    await _readable(fd)
            finally:
                os.close(fd)
        _reap(handle.pid)
        return read_exit_status(paths)

    async def signal(self, handle: RunHandle, paths: RunPaths, sig: signal.Signals) -> None:
        pgid = await self._job_group(handle, paths)
        if pgid is None or _has_exit_status(paths):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    async def _job_group(self, handle: RunHandle, paths: RunPaths) -> int | None:
        """The job's process group, as the shim wrote it (it may need a moment to)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PID_FILE_WAIT_S
        while True:
            try:
                return int(paths.job_pid.read_text().strip())
            except (FileNotFoundError, ValueError):
                if not self.alive(handle) or loop.time() > deadline:
                    return None
            await asyncio.sleep(0.005)


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


def _reap(pid: int) -> None:
    if pid in _spawned:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _spawned.discard(pid)


def _prepare(paths: RunPaths, env: Mapping[str, str]) -> bool:
    """Write the job's environment for the shim; whether the script has a ``#!`` line (it
    is then made executable)."""
    fd = os.open(paths.job_env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(shim.env_file(env))
    has_shebang = _has_shebang(paths.script)
    if has_shebang:
        paths.script.chmod(0o700)
    return has_shebang


def _has_shebang(script: Path) -> bool:
    with script.open("rb") as f:
        return f.read(2) == b"#!"


def _live_shim(paths: RunPaths) -> RunHandle | None:
    """The handle of a live shim of the run that has not written ``shim.pid`` (yet), found
    by its command line in ``/proc``; None if there is none: the run never started."""
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        ticks = start_ticks(pid)
        if ticks is not None and _is_shim_of(pid, paths):
            return RunHandle(pid=pid, start_ticks=ticks, started_at=_wall_clock(ticks))
    return None


def _wall_clock(ticks: int) -> float:
    """The wall-clock time of a process start given in clock ticks since boot."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _is_shim_of(pid: int, paths: RunPaths) -> bool:
    """Whether ``pid`` is the shim of the run in ``paths`` (not a process that reused it)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"skyport-shim" in argv and str(paths.root).encode() in argv


def _has_exit_status(paths: RunPaths) -> bool:
    try:
        return paths.exit_status.stat().st_size > 0
    except FileNotFoundError:
        return False


def read_exit_status(paths: RunPaths) -> ExitStatus:
    """The status the shim wrote; ``code=None`` if it wrote none (it died first)."""
    try:
        return ExitStatus(code=int(paths.exit_status.read_text().strip()))
    except (FileNotFoundError, ValueError):
        return ExitStatus(code=None)
