"""Finding a running deployment and the user's identity. Light: imports no ``nats``.

The CLI's fast path uses this module before deciding whether it needs the full bus.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import NamedTuple

from bus.deployment import DeploymentError, DeploymentInfo, StateDir, default_home
from schemas.wire import Signer
from terminals.client.errors import ClientError, NotRunningError

_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def token_of(name: str) -> str:
    """``name`` made into a subject token: other characters become ``_``, at most 64."""
    cleaned = _NOT_TOKEN.sub("_", name)[:64]
    return cleaned or "user"


def default_user() -> str:
    """``$SKYPORT_USER``, else the login name, as a subject token."""
    return token_of(os.environ.get("SKYPORT_USER") or getpass.getuser())


class Credentials(NamedTuple):
    """Who a client acts as: an identity of the roster and the file of its nkey seed (it
    signs messages and answers the server's challenge)."""

    name: str
    seed_path: Path

    def signer(self) -> Signer:
        try:
            return Signer(self.seed_path.read_bytes())
        except OSError as exc:
            raise ClientError(f"cannot read the credentials {self.seed_path}: {exc}") from exc
        except ValueError as exc:
            raise ClientError(f"{self.seed_path} holds no nkey user seed") from exc


def credentials(
    state: StateDir, identity: str | None = None, path: Path | str | None = None
) -> Credentials:
    """A credentials file (``path``, else ``$SKYPORT_CREDENTIALS``) names its identity by
    its key on the roster; without one, the named identity (``identity``, else
    ``$SKYPORT_USER``, else the login name) of the state directory's keys."""
    chosen = path or os.environ.get("SKYPORT_CREDENTIALS")
    if not chosen:
        name = identity or default_user()
        return Credentials(name, state.seed_path(name))
    creds = Credentials("", Path(chosen).expanduser())
    key = creds.signer().public_key
    try:
        known = state.load_roster().get(key)
    except DeploymentError as exc:
        raise ClientError(str(exc)) from exc
    if known is None:
        raise ClientError(f"{creds.seed_path}: its key is not a user of {state.root} (revoked?)")
    return creds._replace(name=known.name)


def state_dir(root: Path | str | None = None) -> StateDir:
    return StateDir(Path(root).expanduser() if root else default_home())


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def running(state: StateDir) -> DeploymentInfo | None:
    """The deployment of ``state`` if its supervisor is alive, else None."""
    try:
        info = state.read_info()
    except DeploymentError as exc:
        raise ClientError(str(exc)) from exc
    if info is None or not pid_alive(info.supervisor_pid):
        return None
    return info


def require_running(state: StateDir) -> DeploymentInfo:
    info = running(state)
    if info is None:
        raise NotRunningError(f"Sky Port is not running for {state.root} (run 'skyport up')")
    return info
