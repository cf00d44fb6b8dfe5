"""Runs a whole deployment as real processes for system tests and benchmarks.

nats-server (embedded launcher), core, scheduler and the local gate each run as their own OS
process, exactly as ``skyport up`` starts them, so that a test can SIGKILL one and restart it.
Every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bus import server
from bus.connection import Bus
from bus.deployment import ComponentInfo, DeploymentInfo, StateDir
from schemas import subjects
from schemas.commands import Accepted, SubmitJob
from schemas.ids import new_message_id
from schemas.jobs import JobSpec
from schemas.roster import Role
from tests.conftest import kill_leftover_runs

COMPONENT_ARGS = {
    "core": ["-m", "core"],
    "scheduler": ["-m", "scheduler"],
    "gate": ["-m", "gates", "--gate", "local"],
}


@dataclass
class Harness:
    """One deployment in ``state``; components started with ``start(name)``."""

    state: StateDir
    gate_args: list[str] = field(default_factory=list)
    nats: server.RunningServer | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, gate_args: list[str] | None = None) -> Harness:
        state = StateDir(root)
        root.mkdir(parents=True, exist_ok=True)
        for name, role in [
            ("core", Role.CORE),
            ("scheduler", Role.SCHEDULER),
            ("local", Role.GATE),
            ("alice", Role.USER),
            ("bob", Role.USER),
            ("admin", Role.ADMIN),
        ]:
            state.ensure_identity(name, role)
        return cls(state, gate_args or [])

    @property
    def url(self) -> str:
        if self.nats is None:
            raise RuntimeError("nats-server not started")
        return self.nats.url

    def start_nats(self) -> None:
        self.nats = server.start(self.state.root)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, *COMPONENT_ARGS[name]]
        if name == "gate":
            argv += self.gate_args
        self.starts[name] = self.starts.get(name, 0) + 1
        return self._spawn(name, argv)

    def start_gate(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """One more local gate instance ``name`` (its own identity, let in by a reload)."""
        self.state.ensure_identity(name, Role.GATE)
        if self.nats is not None:
            server.reload(self.nats, self.state.root)
        return self._spawn(
            name, [sys.executable, "-m", "gates", "--gate", "local", "--name", name, *args]
        )

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        argv = [*argv, "--state-dir", str(self.state.root), "--nats-url", self.url]
        self.state.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state.logs_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.procs[name] = proc
        return proc

    def start_all(self) -> None:
        self.start_nats()
        for name in COMPONENT_ARGS:
            self.start(name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop components in reverse order (SIGTERM, then SIGKILL), then nats-server."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.nats is not None:
            self.nats.stop()
        kill_leftover_runs(self.state)

    def announce(self) -> None:
        """Write deployment.json as ``skyport up`` would, so that the CLI finds this
        deployment running (this process stands in for the supervisor)."""
        if self.nats is None:
            raise RuntimeError("nats-server not started")
        self.state.write_info(
            DeploymentInfo(
                nats_url=self.url,
                started_at=time.time(),
                supervisor_pid=os.getpid(),
                components=[ComponentInfo(name="nats-server", pid=self.nats.pid)],
            )
        )

    def cli(self, *args: str, identity: str = "admin") -> tuple[int, str]:
        """Run one ``skyport`` command in-process on this deployment: (exit code, stdout)."""
        from terminals.cli.main import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--state-dir", str(self.state.root), "--identity", identity, *args])
        return code, out.getvalue()

    def log(self, name: str) -> str:
        path = self.state.logs_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


async def submit_when_ready(bus: Bus, spec: JobSpec, timeout: float = 30.0) -> Accepted:
    """Submit ``spec``, retrying while core starts (or learns the sender's key); Accepted."""
    deadline = time.monotonic() + timeout
    while True:
        cmd = SubmitJob(id=new_message_id(), at=time.time(), spec=spec)
        try:
            reply = await bus.request(subjects.command_subject(cmd), cmd, timeout=1)
        except Exception:  # no answer yet: core is starting, or refuses an unknown key
            if time.monotonic() > deadline:
                raise
            continue
        if not isinstance(reply, Accepted):
            raise AssertionError(f"submission refused: {reply}")
        return reply
