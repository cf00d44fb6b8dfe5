"""Authentication by the real nats-server with the configuration Sky Port writes: every
connection proves an nkey of the roster, and the roster can change while the server runs."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import nats
import pytest

from bus import quick, server
from bus.deployment import StateDir
from schemas import subjects
from schemas.commands import ListJobs
from schemas.ids import new_message_id
from schemas.roster import Role
from schemas.wire import Signer, new_user_seed


def _handshake(url: str, signer: Signer | None) -> str:
    """Connect with the raw protocol, answer the server's challenge with ``signer`` (or not
    at all), then PING: the server's first answer ('PONG', or its '-ERR ...')."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        stream = sock.makefile("rb")
        info = json.loads(stream.readline()[5:])
        connect: dict[str, object] = {"verbose": False, "pedantic": False, "protocol": 1}
        if signer is not None:
            connect["nkey"] = signer.public_key
            connect["sig"] = signer.sign_nonce(info["nonce"])
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        return stream.readline().decode().strip()


def test_a_connection_without_credentials_is_refused(nats_url: str) -> None:
    assert "Authorization Violation" in _handshake(nats_url, None)


def test_a_key_not_on_the_roster_is_refused(nats_url: str) -> None:
    assert "Authorization Violation" in _handshake(nats_url, Signer(new_user_seed()))


def test_a_key_on_the_roster_is_let_in(state: StateDir, nats_url: str) -> None:
    assert _handshake(nats_url, state.load_signer("alice")) == "PONG"


def test_quick_requests_authenticate_with_the_key_they_sign_with(
    state: StateDir, nats_url: str
) -> None:
    query = ListJobs(id=new_message_id(), at=time.time())
    subject = subjects.query_subject(query)
    # a known key connects and only finds nobody serving the subject
    with pytest.raises(quick.QuickTimeoutError):
        quick.request(nats_url, state.load_signer("alice"), state.load_roster(), subject, query)
    stranger = Signer(new_user_seed())
    with pytest.raises(quick.QuickError, match="(?i)authorization"):
        quick.request(nats_url, stranger, state.load_roster(), subject, query, timeout=3)


async def test_an_added_identity_connects_after_a_reload_and_a_removed_one_is_cut_off(
    state: StateDir, nats_server: server.RunningServer
) -> None:
    url = nats_server.url
    state.ensure_identity("carol", Role.USER)
    carol_signer = state.load_signer("carol")
    assert "Authorization Violation" in _handshake(url, carol_signer)  # not loaded yet
    server.reload(nats_server, state.root)
    async with asyncio.timeout(5):
        while _handshake(url, carol_signer) != "PONG":
            await asyncio.sleep(0.05)
    dropped = asyncio.Event()

    async def on_disconnect() -> None:
        dropped.set()

    carol = await nats.connect(
        url,
        nkeys_seed=str(state.seed_path("carol")),
        allow_reconnect=False,
        disconnected_cb=on_disconnect,
    )
    try:
        started = time.monotonic()
        assert state.remove_identity("carol")
        server.reload(nats_server, state.root)
        async with asyncio.timeout(5):  # revoked: dropped within 5 s, nothing restarted
            await dropped.wait()
        assert time.monotonic() - started < 5
    finally:
        await carol.close()
    assert "Authorization Violation" in _handshake(url, carol_signer)
    assert not state.seed_path("carol").exists()
    assert _handshake(url, state.load_signer("alice")) == "PONG"  # the others stay
