"""The trust roster: which public key is which identity, and what each role may send. Pure.

A message is accepted only if its signer is in the roster and the signer's role may publish
on that subject. Rules that subjects cannot express (a user acting on someone else's job)
are core's to enforce.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from schemas.ids import check_token
from schemas.subjects import SCHEDULER_VERBS, Kind, parse


class Role(StrEnum):
    CORE = "core"
    SCHEDULER = "scheduler"
    GATE = "gate"
    USER = "user"
    ADMIN = "admin"


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """A named key holder. For gates ``name`` is the gate name; for users the user name."""

    name: str
    role: Role
    key: str

    def __post_init__(self) -> None:
        check_token("identity name", self.name)


class RosterFile(msgspec.Struct, kw_only=True):
    """The roster as stored in the state directory (``roster.json``)."""

    version: int = 1
    identities: list[Identity] = []


class Roster:
    """Lookup of identities by public key."""

    def __init__(self, identities: list[Identity]) -> None:
        self._by_key = {i.key: i for i in identities}
        if len(self._by_key) != len(identities):
            raise ValueError("two identities share a key")
        if len({i.name for i in identities}) != len(identities):
            raise ValueError("two identities share a name")

    def get(self, key: str) -> Identity | None:
        return self._by_key.get(key)

    def identities(self) -> list[Identity]:
        return list(self._by_key.values())

    @classmethod
    def decode(cls, data: bytes) -> Roster:
        return cls(msgspec.json.decode(data, type=RosterFile).identities)

    def encode(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(RosterFile(identities=self.identities())))


_USERS = frozenset({Role.USER, Role.ADMIN})


def may_publish(identity: Identity, subject: str) -> bool:
    """Whether ``identity``'s role may send a message on ``subject``."""
    parsed = parse(subject)
    role = identity.role
    match parsed.kind:
        case Kind.CORE_COMMAND:
            if parsed.a in SCHEDULER_VERBS:
                return role is Role.SCHEDULER
            return role in _USERS
        case Kind.CORE_QUERY:
            return role in _USERS or role is Role.SCHEDULER
        case Kind.SCHEDULER_QUERY:
            return role in _USERS
        case Kind.INBOX:  # replies: core's, and the scheduler's to its queries
            return role is Role.CORE or role is Role.SCHEDULER
        case Kind.JOB_EVENT | Kind.GATE_COMMAND:
            return role is Role.CORE
        case Kind.GATE_EVENT:
            return role is Role.GATE and parsed.a == identity.name
        case Kind.LOG:
            return role is Role.GATE and parsed.c == identity.name
        case Kind.OTHER:
            return False


def answerer(subject: str) -> Role:
    """The role whose signed reply answers a request on ``subject``: the scheduler for its
    queries (dry runs), core for everything else."""
    return Role.SCHEDULER if parse(subject).kind is Kind.SCHEDULER_QUERY else Role.CORE
