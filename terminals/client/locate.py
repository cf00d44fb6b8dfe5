"""Finding a running deployment and the user's identity. Light: imports no ``nats``.

The CLI's fast path uses this module before deciding whether it needs the full bus.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path

from bus.deployment import DeploymentError, DeploymentInfo, StateDir, default_home
from terminals.client.errors import ClientError, NotRunningError

_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def token_of(name: str) -> str:
    """``name`` made into a subject token: other characters become ``_``, at most 64."""
    cleaned = _NOT_TOKEN.sub("_", name)[:64]
    return cleaned or "user"


def default_user() -> str:
    """``$SKYPORT_USER``, else the login name, as a subject token."""
    return token_of(os.environ.get("SKYPORT_USER") or getpass.getuser())


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
