"""``skyport init``, ``up``, ``down`` and ``status``, and starting a detached deployment on
demand.

The supervisor itself is ``terminals.cli.supervisor``; this module starts it (in the
foreground or as a detached process in its own session), waits until core answers, stops it
by PID, and reports what runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import msgspec

from bus.deployment import DeploymentError, DeploymentInfo, StateDir
from terminals.cli import render
from terminals.cli.context import Context
from terminals.cli.errors import UsageError
from terminals.client import requests
from terminals.client.errors import ClientError, NotRunningError
from terminals.client.locate import pid_alive, running

READY_TIMEOUT_S = 60.0
DOWN_TIMEOUT_S = 60.0


def core_ready(state: StateDir, user: str, url: str, timeout: float = 0.5) -> bool:
    """Whether core answers a query (any reply counts, even a refusal)."""
    from bus.quick import QuickError, request
    from bus.tls import client_context
    from schemas.subjects import query_subject

    query = requests.list_jobs(limit=1)
    try:
        signer, roster = state.load_signer(user), state.load_roster()
        tls = client_context(state)
        request(url, signer, roster, query_subject(query), query, timeout, tls=tls)
    except (QuickError, DeploymentError):
        return False
    return True


def gate_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for flag, value in (
        ("--nodes", args.nodes),
        ("--cpus", args.cpus),
        ("--memory-mb", args.memory_mb),
        ("--price", args.price),
    ):
        if value is not None:
            out += [flag, str(value)]
    return out


def start_detached(state: StateDir, user: str, extra: list[str]) -> DeploymentInfo:
    """Start a supervisor in its own session; return once core answers a query."""
    state.root.mkdir(parents=True, exist_ok=True)
    state.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = state.logs_dir / "supervisor.log"
    env = {**os.environ, "SKYPORT_USER": user}
    argv = [sys.executable, "-m", "terminals.cli", "--state-dir", str(state.root), "up", *extra]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        info = running(state)
        if info is not None and core_ready(state, user, info.nats_url):
            return info
        if child.poll() is not None and info is None and running(state) is None:
            raise NotRunningError(f"Sky Port did not start; see {log_path}")
        time.sleep(0.1)
    raise NotRunningError(
        f"core did not answer within {READY_TIMEOUT_S:.0f} s; see {state.logs_dir}/*.log"
    )


def init(ctx: Context, args: argparse.Namespace) -> int:
    """Create the identities, the roster and the server configuration (``up`` does this on
    a fresh state directory); with ``--tls`` also the CA and the server certificate."""
    from bus import server, tls
    from terminals.cli.supervisor import ensure_identities

    if running(ctx.state) is not None:
        raise ClientError(f"Sky Port is running for {ctx.state.root}: stop it first (skyport down)")
    try:
        new = ensure_identities(ctx.state, ctx.user, tuple(args.gate or ()))
        names = tls.create(ctx.state, args.host or ()) if args.tls else []
        conf = server.write_config(ctx.state.root)
    except (DeploymentError, server.ServerError) as exc:
        raise ClientError(str(exc)) from exc
    roster = ctx.state.load_roster()
    print(f"state dir:  {ctx.state.root}")
    for identity in roster.identities():
        mark = "new" if identity.name in new else "kept"
        print(f"  {identity.role:<9} {identity.name:<20} {identity.key}  ({mark})")
    print(f"keys:       {ctx.state.keys_dir} (mode 0600 each)")
    print(f"nats conf:  {conf}")
    if names:
        missing = [h for h in (args.host or ()) if h.strip("[]") not in names]
        print(f"tls:        {ctx.state.tls_dir}; the server requires TLS for {', '.join(names)}")
        if missing:
            print(
                f"skyport: the kept server certificate does not name {', '.join(missing)}: "
                f"delete {ctx.state.server_cert_path.name} and {ctx.state.server_key_path.name}"
                " and run init --tls again",
                file=sys.stderr,
            )
            return 1
    return 0


def up(ctx: Context, args: argparse.Namespace) -> int:
    info = running(ctx.state)
    if info is not None:
        print(
            f"Sky Port is already running for {ctx.state.root} "
            f"(supervisor pid {info.supervisor_pid})"
        )
        return 0 if args.detach else 1
    listen: tuple[str, int] = args.listen or ("127.0.0.1", -1)
    if args.listen:
        from bus import server

        try:  # said here, not in a detached supervisor's log
            server.check_listen(ctx.state, listen[0])
        except server.ServerError as exc:
            raise UsageError(str(exc)) from exc
    if args.detach:
        extra = gate_args(args)
        if args.listen:
            extra += ["--listen", f"[{listen[0]}]:{listen[1]}" if listen[1] > 0 else listen[0]]
        info = start_detached(ctx.state, ctx.user, extra)
        print(f"Sky Port is up: {info.nats_url}, state in {ctx.state.root}")
        return 0
    from terminals.cli.supervisor import SupervisorError, run

    try:
        return run(ctx.state, ctx.user, gate_args(args), listen)
    except SupervisorError as exc:
        raise ClientError(str(exc)) from exc


def down(ctx: Context, args: argparse.Namespace) -> int:
    from terminals.cli.supervisor import stop_pid, stop_stale

    info = ctx.state.read_info()
    if info is None:
        print(f"Sky Port is not running for {ctx.state.root}")
        return 0
    if not pid_alive(info.supervisor_pid):
        stop_stale(ctx.state)
        print("Sky Port was not running (cleaned up after a dead supervisor)")
        return 0
    os.kill(info.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    pids = [info.supervisor_pid, *(c.pid for c in info.components)]
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    if pid_alive(info.supervisor_pid):
        stop_pid(info.supervisor_pid, grace=0)
        stop_stale(ctx.state)
    print("Sky Port stopped")
    return 0


class ComponentStatus(msgspec.Struct, kw_only=True):
    name: str
    pid: int
    alive: bool


class Status(msgspec.Struct, kw_only=True):
    state_dir: str
    running: bool
    nats_url: str | None = None
    supervisor_pid: int | None = None
    started_at: float | None = None
    components: list[ComponentStatus] = []


def status_of(state: StateDir) -> Status:
    info = state.read_info()
    if info is None:
        return Status(state_dir=str(state.root), running=False)
    return Status(
        state_dir=str(state.root),
        running=pid_alive(info.supervisor_pid),
        nats_url=info.nats_url,
        supervisor_pid=info.supervisor_pid,
        started_at=info.started_at,
        components=[
            ComponentStatus(name=c.name, pid=c.pid, alive=pid_alive(c.pid)) for c in info.components
        ],
    )


def status(ctx: Context, args: argparse.Namespace) -> int:
    """Exit 0 when the deployment runs, 3 when it does not."""
    st = status_of(ctx.state)
    if args.json:
        print(render.to_json(st))
    else:
        print(f"state dir:  {st.state_dir}")
        print(f"running:    {'yes' if st.running else 'no'}")
        if st.nats_url:
            print(f"nats url:   {st.nats_url}")
            print(f"supervisor: pid {st.supervisor_pid}  {'alive' if st.running else 'dead'}")
            print(f"since:      {render.when(st.started_at)}")
            rows = ([c.name, str(c.pid), "alive" if c.alive else "dead"] for c in st.components)
            print(render.table(("COMPONENT", "PID", "STATE"), rows))
    return 0 if st.running else 3
