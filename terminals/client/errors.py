"""Errors of the Python client: one small hierarchy, mapped from bus errors at the edge."""

from __future__ import annotations

from schemas.commands import RejectCode


class ClientError(Exception):
    """Base of every client error; ``str()`` is one line meant for a person."""


class NotRunningError(ClientError):
    """No deployment is running for the state directory (or it cannot be reached)."""


class RejectedError(ClientError):
    """Core refused a command or query; carries ``Rejected.code`` and ``detail``."""

    def __init__(self, code: RejectCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail


class UnknownJobError(RejectedError):
    """The job does not exist (or is not visible to this user)."""


class ProtocolError(ClientError):
    """Core answered with a reply of an unexpected type."""


class StagingError(ClientError):
    """An input could not be uploaded, or an output could not be fetched safely."""
