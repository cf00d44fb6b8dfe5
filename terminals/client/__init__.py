"""The Python client of Sky Port: ``Client`` (async) and ``SyncClient`` (blocking).

Imports are lazy so that ``terminals.client.errors`` and the light helpers can be used
without loading the NATS client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from terminals.client.errors import (
    ClientError,
    NotRunningError,
    ProtocolError,
    RejectedError,
    StagingError,
    UnknownJobError,
)

if TYPE_CHECKING:
    from terminals.client.client import Client
    from terminals.client.sync import SyncClient

__all__ = [
    "Client",
    "ClientError",
    "NotRunningError",
    "ProtocolError",
    "RejectedError",
    "StagingError",
    "SyncClient",
    "UnknownJobError",
]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from terminals.client.client import Client

        return Client
    if name == "SyncClient":
        from terminals.client.sync import SyncClient

        return SyncClient
    raise AttributeError(name)
