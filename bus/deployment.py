"""The state directory of a deployment: where keys, roster, databases and runtime info live.

Layout (all under the state directory, ``$SKYPORT_HOME`` or ``$XDG_DATA_HOME/skyport``)::

    roster.json            public keys → identities (no secrets)
    retired.json           names of revoked users (their files stay reachable)
    keys/<name>.seed       one nkey seed per identity, mode 0600
    nats/                  nats-server config, JetStream store, its log
    core/core.db           the event store (SQLite, WAL)
    gates/<gate>/          a gate's work directories and run records
    logs/<component>.log   component logs
    deployment.json        what is running: NATS URL and PIDs (written by ``skyport up``)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import msgspec

from schemas import accounts
from schemas.accounts import Accounts
from schemas.roster import Identity, Role, Roster
from schemas.wire import Signer, new_user_seed


class DeploymentError(Exception):
    """The state directory is missing something a component needs."""


class ComponentInfo(msgspec.Struct, kw_only=True):
    name: str
    pid: int
    argv: list[str] = []


class DeploymentInfo(msgspec.Struct, kw_only=True):
    """The running deployment, as ``skyport up`` wrote it."""

    nats_url: str
    started_at: float
    supervisor_pid: int
    components: list[ComponentInfo] = []


def default_home() -> Path:
    env = os.environ.get("SKYPORT_HOME")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "skyport"


class StateDir(NamedTuple):
    """The paths of one deployment. (A NamedTuple, not a dataclass: the ``skyport`` command
    imports this, and importing ``dataclasses`` costs it ~20 ms.)"""

    root: Path

    @property
    def roster_path(self) -> Path:
        return self.root / "roster.json"

    @property
    def accounts_path(self) -> Path:
        return self.root / "accounts.json"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert_path(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.tls_dir / "ca.key"

    @property
    def server_cert_path(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.tls_dir / "server.key"

    @property
    def core_db(self) -> Path:
        return self.root / "core" / "core.db"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def info_path(self) -> Path:
        return self.root / "deployment.json"

    def gate_dir(self, gate: str) -> Path:
        return self.root / "gates" / gate

    def seed_path(self, name: str) -> Path:
        return self.keys_dir / f"{name}.seed"

    def read_info(self) -> DeploymentInfo | None:
        try:
            return msgspec.json.decode(self.info_path.read_bytes(), type=DeploymentInfo)
        except FileNotFoundError:
            return None
        except msgspec.DecodeError as exc:
            raise DeploymentError(f"{self.info_path} is damaged: {exc}") from exc

    def write_info(self, info: DeploymentInfo) -> None:
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(info)))
        tmp.replace(self.info_path)

    def load_roster(self) -> Roster:
        try:
            return Roster.decode(self.roster_path.read_bytes())
        except FileNotFoundError as exc:
            raise DeploymentError(f"no roster at {self.roster_path}: run 'skyport up'") from exc
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise DeploymentError(f"{self.roster_path} is damaged: {exc}") from exc

    def load_accounts(self) -> Accounts:
        """The accounts and budgets (none yet: no accounts, no caps)."""
        try:
            return accounts.decode(self.accounts_path.read_bytes())
        except FileNotFoundError:
            return accounts.Accounts()
        except (msgspec.DecodeError, ValueError) as exc:
            raise DeploymentError(f"{self.accounts_path} is damaged: {exc}") from exc

    def write_accounts(self, value: Accounts) -> None:
        """Replace the accounts file atomically (followers never read half a file)."""
        tmp = self.accounts_path.with_suffix(".tmp")
        tmp.write_bytes(accounts.encode(value))
        tmp.replace(self.accounts_path)

    def load_signer(self, name: str) -> Signer:
        path = self.seed_path(name)
        try:
            return Signer(path.read_bytes())
        except FileNotFoundError as exc:
            raise DeploymentError(f"no key for {name!r} at {path}") from exc
        except ValueError as exc:
            raise DeploymentError(f"{path} is not an nkey user seed") from exc

    def ensure_identity(self, name: str, role: Role) -> Identity:
        """Create the key of ``name`` if missing and add it to the roster; return it.

        A name belongs to one role: a user called ``core`` must not get core's key."""
        roster = self.load_roster() if self.roster_path.exists() else Roster([])
        taken = [i for i in roster.identities() if i.name == name and i.role != role]
        if taken:
            raise DeploymentError(
                f"the name {name!r} belongs to the {taken[0].role} identity; choose another"
            )
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.seed_path(name)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(new_user_seed())
        identity = Identity(name=name, role=role, key=self.load_signer(name).public_key)
        if roster.get(identity.key) != identity:
            others = [i for i in roster.identities() if i.name != name or i.role != role]
            self._write_roster(Roster([*others, identity]))
        return identity

    def rotate_identity(self, name: str) -> Identity:
        """Give ``name`` a new key (same name and role); return it. The old seed is replaced
        in one rename, and the roster names the new key: a running server refuses the old
        one once its configuration is reloaded."""
        roster = self.load_roster()
        found = [i for i in roster.identities() if i.name == name]
        if not found:
            raise DeploymentError(f"no identity {name!r} in {self.roster_path}")
        path = self.seed_path(name)
        tmp = path.with_name(path.name + ".new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(new_user_seed())
        tmp.replace(path)
        identity = Identity(name=name, role=found[0].role, key=self.load_signer(name).public_key)
        self._write_roster(Roster([*(i for i in roster.identities() if i.name != name), identity]))
        return identity

    def remove_identity(self, name: str) -> bool:
        """Take ``name`` off the roster and delete its seed; whether it was there. A running
        server refuses the key once its configuration is reloaded (``bus.server.reload``).
        A user or admin taken off is remembered as retired: their files stay reachable."""
        roster = self.load_roster() if self.roster_path.exists() else Roster([])
        gone = [i for i in roster.identities() if i.name == name]
        if gone:
            if any(i.role in (Role.USER, Role.ADMIN) for i in gone):
                self._write_retired(sorted({*self.retired_users(), name}))
            self._write_roster(Roster([i for i in roster.identities() if i.name != name]))
        self.seed_path(name).unlink(missing_ok=True)
        return bool(gone)

    @property
    def retired_path(self) -> Path:
        return self.root / "retired.json"

    def retired_users(self) -> list[str]:
        """Users and admins revoked so far: their jobs' files stay in their buckets, which
        gates (staging their queued jobs) and admins may still use."""
        try:
            return msgspec.json.decode(self.retired_path.read_bytes(), type=list[str])
        except FileNotFoundError:
            return []
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DeploymentError(f"{self.retired_path} is damaged: {exc}") from exc

    def _write_retired(self, names: list[str]) -> None:
        tmp = self.retired_path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(names))
        tmp.replace(self.retired_path)

    def _write_roster(self, roster: Roster) -> None:
        tmp = self.roster_path.with_suffix(".tmp")
        tmp.write_bytes(roster.encode())
        tmp.replace(self.roster_path)
