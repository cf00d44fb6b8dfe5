"""``skyport user add|list|revoke|rotate``: the people who may use a deployment.

Run by the operator, on the state directory: a user is a key in ``keys/``, an entry of the
roster, and a credentials file (the nkey seed, mode 0600) to hand to that person. Adding
and revoking reload a running nats-server's configuration (no restart), and core, the
scheduler and the gates re-read the roster within a second (``Bus.follow_roster``).
"""

from __future__ import annotations

import argparse
import json
import os

from bus import server
from bus.deployment import DeploymentError, StateDir
from schemas.ids import check_token
from schemas.roster import Role
from terminals.cli import render
from terminals.cli.context import Context
from terminals.cli.errors import UsageError
from terminals.client.errors import ClientError
from terminals.client.locate import running

PEOPLE = (Role.USER, Role.ADMIN)


def credentials_path(state: StateDir, name: str) -> os.PathLike[str]:
    return state.root / "credentials" / f"{name}.nk"


def user(ctx: Context, args: argparse.Namespace) -> int:
    match args.user_command:
        case "add":
            return _add(ctx, args.name, Role.ADMIN if args.admin else Role.USER)
        case "revoke":
            return _revoke(ctx, args.name)
        case "rotate":
            return _rotate(ctx, args.name)
        case _:
            return _list(ctx, args.json)


def _add(ctx: Context, name: str, role: Role) -> int:
    state = ctx.state
    check_token("user name", name)
    try:
        clash = name in state.load_accounts().accounts
    except DeploymentError as exc:
        raise ClientError(str(exc)) from exc
    if clash:
        raise ClientError(f"{name!r} is an account: a user's personal account would share it")
    try:
        state.ensure_identity(name, role)
    except DeploymentError as exc:
        raise ClientError(str(exc)) from exc
    _reload(state)
    print(os.fspath(_write_credentials(state, name)))
    return 0


def _write_credentials(state: StateDir, name: str) -> os.PathLike[str]:
    """The credentials file of ``name`` (its seed, 0600), written beside and renamed in."""
    creds = credentials_path(state, name)
    folder = state.root / "credentials"
    folder.mkdir(mode=0o700, exist_ok=True)
    tmp = folder / f".{name}.nk.new"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(state.seed_path(name).read_bytes())
    tmp.replace(creds)
    return creds


def _person(state: StateDir, name: str) -> None:
    """UsageError unless ``name`` is a user or admin of the roster (ClientError if absent)."""
    check_token("user name", name)
    found = [i for i in state.load_roster().identities() if i.name == name]
    if not found:
        raise ClientError(f"no user {name!r} in {state.roster_path}")
    if any(i.role not in PEOPLE for i in found):
        raise UsageError(f"{name!r} is a {found[0].role} identity, not a user")


def _rotate(ctx: Context, name: str) -> int:
    """A new key for a user: the new credentials file replaces the old, which stops working
    at the reload (their connections are dropped), while their jobs and files stay theirs."""
    state = ctx.state
    _person(state, name)
    try:
        state.rotate_identity(name)
    except DeploymentError as exc:
        raise ClientError(str(exc)) from exc
    creds = _write_credentials(state, name)
    _reload(state)
    print(os.fspath(creds))
    return 0


def _revoke(ctx: Context, name: str) -> int:
    state = ctx.state
    _person(state, name)
    if name == ctx.user:
        raise UsageError(f"{name!r} is who you are acting as; revoke it as another admin")
    state.remove_identity(name)
    try:
        os.remove(credentials_path(state, name))
    except FileNotFoundError:
        pass
    _reload(state)
    print(f"revoked {name}")
    return 0


def _list(ctx: Context, as_json: bool) -> int:
    state = ctx.state
    people = [i for i in state.load_roster().identities() if i.role in PEOPLE]
    people.sort(key=lambda i: i.name)
    if as_json:
        rows = [{"name": i.name, "role": i.role.value, "key": i.key} for i in people]
        print(json.dumps(rows))
        return 0
    print(render.table(["NAME", "ROLE", "KEY"], [[i.name, i.role.value, i.key] for i in people]))
    return 0


def _reload(state: StateDir) -> None:
    """Make a running deployment's nats-server load the changed roster."""
    info = running(state)
    if info is None:
        return  # the next `up` writes the configuration from the roster
    for component in info.components:
        if component.name == "nats-server":
            server.reload_pid(state.root, component.pid)
