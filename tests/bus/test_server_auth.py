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


def _handshake(url: str, signer: Signer | None, then: bytes = b"") -> str:
    """Connect with the raw protocol, answer the server's challenge with ``signer`` (or not
    at all), send ``then``, then PING: the server's first answer ('PONG', or '-ERR ...')."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        stream = sock.makefile("rb")
        info = json.loads(stream.readline()[5:])
        connect: dict[str, object] = {"verbose": False, "pedantic": False, "protocol": 1}
        if signer is not None:
            connect["nkey"] = signer.public_key
            connect["sig"] = signer.sign_nonce(info["nonce"])
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n" + then + b"PING\r\n")
        return stream.readline().decode().strip()


def _pub(subject: str) -> bytes:
    return f"PUB {subject} 2\r\n{{}}\r\n".encode()


def _sub(subject: str) -> bytes:
    return f"SUB {subject} 1\r\n".encode()


@pytest.mark.parametrize(
    "name, then",
    [
        ("local", _pub(subjects.job_event("alice", "1", "job_completed"))),  # a core event
        ("local", _pub(subjects.gate_event("other", "run_ended"))),  # another gate's report
        ("local", _pub(subjects.core_command(subjects.CoreVerb.CANCEL))),
        ("local", _sub(subjects.gate_commands_of("other"))),  # another gate's commands
        ("local", _sub(subjects.ALL_JOB_EVENTS)),
        (
            "local",
            _pub(
                "$JS.API.CONSUMER.CREATE.SKYPORT_GATE_COMMANDS.gate-local."
                + subjects.gate_commands_of("other")
            ),
        ),  # a consumer of them
        ("local", _pub("$JS.API.STREAM.DELETE.SKYPORT_JOB_EVENTS")),
        ("local", _sub(f"{subjects.inbox_of('alice')}.>")),  # someone else's replies
        ("scheduler", _sub(f"{subjects.inbox_of('core')}.>")),
        ("scheduler", _pub(subjects.job_event("alice", "1", "job_completed"))),
        ("scheduler", _pub(subjects.gate_command("local", "start"))),
        ("scheduler", _pub(subjects.core_command(subjects.CoreVerb.SUBMIT))),
    ],
)
def test_a_component_is_refused_what_its_role_does_not_need(
    state: StateDir, nats_url: str, name: str, then: bytes
) -> None:
    answer = _handshake(nats_url, state.load_signer(name), then)
    assert answer.startswith("-ERR 'Permissions Violation"), answer


def test_a_gate_may_use_its_own_subjects(state: StateDir, nats_url: str) -> None:
    own = (
        _pub(subjects.gate_event("local", "run_ended"))
        + _pub(subjects.log("alice", "1", "local", subjects.LogStream.STDOUT))
        + _sub(f"{subjects.inbox_of('local')}.x")
    )
    assert _handshake(nats_url, state.load_signer("local"), own) == "PONG"


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
