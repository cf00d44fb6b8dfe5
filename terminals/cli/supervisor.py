"""The supervisor of an embedded deployment: nats-server, core, scheduler and the local gate.

One supervisor per state directory (an ``flock`` on ``supervisor.lock`` says which). It starts
each process with its output in ``logs/<name>.log``, writes ``deployment.json``, restarts a
process that dies (with backoff), and on SIGTERM/SIGINT stops them in reverse order (SIGTERM,
wait, SIGKILL), then removes ``deployment.json``. Processes are only ever stopped by PID.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

from bus import server
from bus.deployment import ComponentInfo, DeploymentInfo, StateDir
from schemas.roster import Role
from terminals.client.locate import pid_alive

STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0  # a process that ran this long starts its backoff afresh
IDENTITIES = (("core", Role.CORE), ("scheduler", Role.SCHEDULER), ("local", Role.GATE))


class SupervisorError(Exception):
    """The deployment could not be started (already running, server failed, ...)."""


@dataclass
class Child:
    """One supervised component process."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0


def component_argv(module: str, state: StateDir, url: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", module, *extra, "--state-dir", str(state.root), "--nats-url", url]


def ensure_identities(state: StateDir, user: str, gates: tuple[str, ...] = ()) -> list[str]:
    """Keys and roster entries of the components, of more gate instances, and of the
    invoking user (an admin); the names of those that are new (``skyport init``)."""
    state.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    before = (
        {i.name for i in state.load_roster().identities()} if state.roster_path.exists() else set()
    )
    wanted = [*IDENTITIES, *((g, Role.GATE) for g in gates), (user, Role.ADMIN)]
    for name, role in wanted:
        state.ensure_identity(name, role)
    return [name for name, _ in wanted if name not in before]


def cmdline_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [p.decode(errors="replace") for p in f.read().split(b"\0") if p]
    except OSError:
        return []


def stop_pid(pid: int, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM ``pid``, wait up to ``grace`` seconds, then SIGKILL it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_stale(state: StateDir) -> None:
    """Stop processes a dead supervisor left behind (only those whose command line matches)."""
    info = state.read_info()
    if info is None or pid_alive(info.supervisor_pid):
        return
    for component in reversed(info.components):
        if pid_alive(component.pid) and cmdline_of(component.pid) == component.argv:
            print(f"stopping {component.name} (pid {component.pid}) left by a dead supervisor")
            stop_pid(component.pid)
    state.info_path.unlink(missing_ok=True)


@dataclass
class Supervisor:
    """Runs the deployment of one state directory until told to stop."""

    state: StateDir
    user: str
    gate_args: list[str] = field(default_factory=list)
    listen: tuple[str, int] = ("127.0.0.1", -1)  # nats-server's address (-1: any free port)
    nats: server.RunningServer | None = None
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    _lock: IO[bytes] | None = None

    def lock(self) -> None:
        self.state.root.mkdir(parents=True, exist_ok=True)
        lock = open(self.state.root / "supervisor.lock", "ab")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise SupervisorError(f"Sky Port is already running for {self.state.root}") from exc
        self._lock = lock

    def start(self) -> None:
        """Identities, nats-server, then core, scheduler and the gate; deployment.json."""
        self.lock()
        stop_stale(self.state)
        ensure_identities(self.state, self.user)
        self.state.logs_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.nats = server.start(self.state.root, *self.listen)
        except server.ServerError as exc:
            raise SupervisorError(str(exc)) from exc
        url = self.nats.url
        self.children = [
            Child("core", component_argv("core", self.state, url, [])),
            Child("scheduler", component_argv("scheduler", self.state, url, [])),
            Child(
                "local",
                component_argv("gates", self.state, url, ["--gate", "local", *self.gate_args]),
            ),
        ]
        for child in self.children:
            self._spawn(child)
        self.write_info()

    def _spawn(self, child: Child) -> None:
        log = open(self.state.logs_dir / f"{child.name}.log", "ab")  # noqa: SIM115
        try:
            child.process = subprocess.Popen(
                child.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Ctrl-C reaches the supervisor only, which stops them in order
                start_new_session=True,
            )
        finally:
            log.close()
        child.started_at = time.monotonic()
        child.restart_at = None
        print(f"started {child.name} (pid {child.pid})", flush=True)

    def write_info(self) -> None:
        if self.nats is None:
            return
        components = [
            ComponentInfo(
                name="nats-server",
                pid=self.nats.pid,
                argv=cmdline_of(self.nats.pid),
            ),
            *(ComponentInfo(name=c.name, pid=c.pid, argv=c.argv) for c in self.children),
        ]
        self.state.write_info(
            DeploymentInfo(
                nats_url=self.nats.url,
                started_at=time.time(),
                supervisor_pid=os.getpid(),
                components=components,
            )
        )

    def tick(self) -> None:
        """Restart what died, after its backoff."""
        now = time.monotonic()
        changed = self._check_nats()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            if child.restart_at is None:
                ran = now - child.started_at
                child.failures = 1 if ran > HEALTHY_AFTER_S else child.failures + 1
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (child.failures - 1))
                child.restart_at = now + delay
                print(
                    f"{child.name} exited with {child.process.returncode}; "
                    f"restarting in {delay:.1f} s (see {self.state.logs_dir / child.name}.log)",
                    flush=True,
                )
            elif now >= child.restart_at:
                self._spawn(child)
                changed = True
        if changed:
            self.write_info()

    def _check_nats(self) -> bool:
        if self.nats is None or self.nats.process.poll() is None:
            return False
        port = urlsplit(self.nats.url).port or -1
        print(f"nats-server exited with {self.nats.process.returncode}; restarting", flush=True)
        try:
            self.nats = server.start(self.state.root, self.listen[0], port)
        except server.ServerError as exc:
            print(f"cannot restart nats-server: {exc}", flush=True)
            return False
        return True

    def request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def stop(self) -> None:
        """Stop the components in reverse order, then nats-server; remove deployment.json."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                print(f"stopping {child.name} (pid {child.pid})", flush=True)
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        if self.nats is not None:
            self.nats.stop()
        info = self.state.read_info()
        if info is not None and info.supervisor_pid == os.getpid():
            self.state.info_path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()


def run(
    state: StateDir, user: str, gate_args: list[str], listen: tuple[str, int] = ("127.0.0.1", -1)
) -> int:
    """Run a supervisor in this process until SIGTERM/SIGINT; the exit code of ``up``."""
    from terminals.cli.deployment import core_ready

    sup = Supervisor(state, user, gate_args, listen)
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    try:
        sup.start()
        ready = False
        while not sup.stopping:
            sup.tick()
            if not ready and sup.nats is not None and core_ready(state, user, sup.nats.url):
                ready = True
                print(f"Sky Port is ready: {sup.nats.url}, state in {state.root}", flush=True)
            time.sleep(0.2)
    finally:
        sup.stop()
    print("Sky Port stopped", flush=True)
    return 0
