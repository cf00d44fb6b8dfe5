"""Identifier types and the token rule shared by ids and subject tokens. Pure."""

from __future__ import annotations

import re
import uuid
from typing import NewType

JobId = NewType("JobId", str)
GateName = NewType("GateName", str)
UserName = NewType("UserName", str)
MessageId = NewType("MessageId", str)
PlanId = NewType("PlanId", str)

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidTokenError(ValueError):
    """A value that must be a subject token (job id, user, gate name) is not one."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"invalid {kind} {value!r}: use 1-64 of A-Z a-z 0-9 _ -")
        self.kind = kind
        self.value = value


def check_token(kind: str, value: str) -> str:
    """Return value if it is a valid subject token, else raise InvalidTokenError."""
    if not TOKEN_RE.fullmatch(value):
        raise InvalidTokenError(kind, value)
    return value


def new_message_id() -> MessageId:
    """A fresh unique message id (random, 32 hex digits) for a command or query."""
    return MessageId(uuid.uuid4().hex)
