"""TLS on the bus against a real nats-server started from the configuration Sky Port writes:
the deployment's own CA and server certificate (bus.tls), a server that then requires TLS,
and clients (Bus, bus.quick) that trust only that CA."""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from bus import quick, server, tls
from bus.connection import Bus
from bus.deployment import StateDir
from bus.streams import ensure_streams
from schemas import subjects
from schemas.commands import JobPage
from schemas.roster import Role
from schemas.wire import Signer, new_user_seed
from terminals.client import requests
from tests.conftest import connect_as
from tests.rawproto import plaintext_attempt
from tests.terminals.fakecore import FakeCore, summary


@pytest.fixture
def tls_state(state: StateDir) -> StateDir:
    tls.create(state)
    return state


@pytest.fixture
def tls_server(tls_state: StateDir, nats_server: server.RunningServer) -> server.RunningServer:
    """The test's server, started after ``tls_state`` made the certificates (arguments are
    set up in order), so it requires TLS."""
    return nats_server


@pytest.fixture
async def tls_core(tls_state: StateDir, tls_server: server.RunningServer) -> AsyncIterator[Bus]:
    """Core over TLS, answering queries from canned jobs."""
    bus = await connect_as(tls_state, tls_server.url, "core")
    try:
        await ensure_streams(bus.js)
        await FakeCore([summary(1)]).serve(bus)
        yield bus
    finally:
        await bus.close()


@pytest.fixture
def other_ca(tmp_path: Path) -> ssl.SSLContext:
    """A client context that trusts the CA of another deployment."""
    other = StateDir(tmp_path / "other")
    tls.create(other)
    context = tls.client_context(other)
    assert context is not None
    return context


def quick_list(
    state: StateDir, url: str, context: ssl.SSLContext | None, name: str = "alice"
) -> object:
    query = requests.list_jobs()
    signer, roster = state.load_signer(name), state.load_roster()
    return quick.request(
        url, signer, roster, subjects.query_subject(query), query, timeout=5, tls=context
    )


def plaintext_answer(url: str, state: StateDir) -> bytes:
    """Plaintext NATS to ``url`` as alice: what the server sends before it closes."""
    return plaintext_attempt(url, state.load_signer("alice"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- files --------------------------------------------------------------------------------


def test_private_keys_are_0600_in_a_0700_directory(tls_state: StateDir) -> None:
    assert mode(tls_state.tls_dir) == 0o700
    assert mode(tls_state.ca_key_path) == 0o600
    assert mode(tls_state.server_key_path) == 0o600
    for cert in (tls_state.ca_cert_path, tls_state.server_cert_path):
        assert mode(cert) & 0o022 == 0  # readable certificates, writable only by us
    assert sorted(p.name for p in tls_state.tls_dir.iterdir()) == [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]  # no temporary files left behind


def test_the_server_certificate_names_loopback_and_the_hosts_asked_for(state: StateDir) -> None:
    names = tls.create(state, ["node1.example.org", "10.1.2.3", "[fd00::7]"])
    assert set(names) == {
        "127.0.0.1",
        "::1",
        "localhost",
        "node1.example.org",
        "10.1.2.3",
        "fd00::7",
    }


def test_create_again_keeps_every_existing_file(tls_state: StateDir) -> None:
    before = {p.name: p.read_bytes() for p in tls_state.tls_dir.iterdir()}
    names = tls.create(tls_state, ["new.example.org"])
    assert {p.name: p.read_bytes() for p in tls_state.tls_dir.iterdir()} == before
    assert "new.example.org" not in names  # kept: the caller sees the host is not covered


def test_a_removed_server_certificate_is_signed_again_by_the_same_ca(
    tls_state: StateDir,
) -> None:
    ca = tls_state.ca_cert_path.read_bytes(), tls_state.ca_key_path.read_bytes()
    old_key = tls_state.server_key_path.read_bytes()
    tls_state.server_cert_path.unlink()
    tls_state.server_key_path.unlink()
    assert "new.example.org" in tls.create(tls_state, ["new.example.org"])
    assert (tls_state.ca_cert_path.read_bytes(), tls_state.ca_key_path.read_bytes()) == ca
    assert tls_state.server_key_path.read_bytes() != old_key
    assert mode(tls_state.server_key_path) == 0o600
    tls.server_files(tls_state)  # the new pair belongs together


def test_a_host_that_is_no_name_or_address_is_refused(state: StateDir) -> None:
    with pytest.raises(tls.TLSError, match="not a host name"):
        tls.create(state, ["bad host/"])


def test_a_state_dir_without_tls_has_no_client_context(state: StateDir) -> None:
    assert not tls.has_tls(state)
    assert tls.client_context(state) is None


def test_a_tls_dir_that_lost_its_ca_certificate_is_an_error_not_plaintext(
    tls_state: StateDir,
) -> None:
    tls_state.ca_cert_path.unlink()
    with pytest.raises(tls.TLSError, match="ca.crt"):
        tls.client_context(tls_state)


def test_a_tls_dir_that_lost_its_server_key_starts_no_server(tls_state: StateDir) -> None:
    tls_state.server_key_path.unlink()
    with pytest.raises(server.ServerError, match="server.key"):
        server.write_config(tls_state.root)


# -- listening ----------------------------------------------------------------------------


def test_a_non_loopback_host_without_tls_is_refused(state: StateDir) -> None:
    for host in ("0.0.0.0", "10.1.2.3", "node1.example.org", "::"):
        with pytest.raises(server.ServerError, match=f"refusing to listen on {host} without TLS"):
            server.write_config(state.root, host, 4222)


def test_every_loopback_address_is_allowed_without_tls(state: StateDir) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        conf = server.write_config(state.root, host, 4222).read_text()
        assert "tls {" not in conf


def test_a_non_loopback_host_with_tls_is_allowed_and_tls_required(tls_state: StateDir) -> None:
    conf = server.write_config(tls_state.root, "0.0.0.0", 4222).read_text()
    assert 'listen: "0.0.0.0:4222"' in conf
    assert f"cert_file: {json.dumps(str(tls_state.server_cert_path))}" in conf
    assert f"key_file: {json.dumps(str(tls_state.server_key_path))}" in conf


def test_a_tls_server_gives_a_tls_url(tls_server: server.RunningServer) -> None:
    assert tls_server.url.startswith("tls://127.0.0.1:")


# -- connections ----------------------------------------------------------------------------


async def test_a_tls_deployment_answers_a_signed_request_over_tls(
    tls_state: StateDir, tls_server: server.RunningServer, tls_core: Bus
) -> None:
    alice = await connect_as(tls_state, tls_server.url, "alice")
    try:
        query = requests.list_jobs()
        reply = await alice.request(subjects.query_subject(query), query, timeout=5)
    finally:
        await alice.close()
    assert isinstance(reply, JobPage) and [j.job_id for j in reply.jobs] == ["1"]
    context = tls.client_context(tls_state)
    quick_reply = await asyncio.to_thread(quick_list, tls_state, tls_server.url, context)
    assert isinstance(quick_reply, JobPage) and [j.job_id for j in quick_reply.jobs] == ["1"]
    log = (tls_state.nats_dir / "nats-server.log").read_text()
    for key in (tls_state.ca_key_path, tls_state.server_key_path):
        body = key.read_text().splitlines()[1]  # the first line of base64 key material
        assert body not in log


async def test_plaintext_to_tls_only_server_is_refused(
    tls_state: StateDir, tls_server: server.RunningServer
) -> None:
    # the server itself: no greeting in plaintext, and a plaintext CONNECT gets no PONG,
    # only a closed connection
    answer = await asyncio.to_thread(plaintext_answer, tls_server.url, tls_state)
    assert answer == b""
    # nats-py in plaintext waits for a greeting that never comes, and the server hangs up
    plain_url = tls_server.url.replace("tls://", "nats://")
    with pytest.raises(nats.errors.Error, match="expecting INFO"):
        await Bus.connect(
            plain_url,
            tls_state.load_signer("alice"),
            tls_state.load_roster(),
            "alice",
            tls=None,
            nkeys_seed=str(tls_state.seed_path("alice")),
            allow_reconnect=False,
            connect_timeout=3,
        )
    # the quick client without TLS sends nothing, not even its key's signature
    with pytest.raises(quick.QuickConnectError, match="require TLS"):
        await asyncio.to_thread(quick_list, tls_state, plain_url, None)


async def test_a_client_that_trusts_another_ca_is_refused(
    tls_state: StateDir, tls_server: server.RunningServer, other_ca: ssl.SSLContext
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await Bus.connect(
            tls_server.url,
            tls_state.load_signer("alice"),
            tls_state.load_roster(),
            "alice",
            tls=other_ca,
            allow_reconnect=False,
            connect_timeout=3,
            nkeys_seed=str(tls_state.seed_path("alice")),
        )
    with pytest.raises(quick.QuickConnectError, match="certificate verify failed"):
        await asyncio.to_thread(quick_list, tls_state, tls_server.url, other_ca)


def test_a_tls_client_refuses_a_server_that_offers_plaintext(
    state: StateDir, nats_server: server.RunningServer, other_ca: ssl.SSLContext
) -> None:
    # the TLS handshake comes first; a plaintext greeting fails it before anything is sent
    with pytest.raises(quick.QuickConnectError, match="TLS with .* failed"):
        quick_list(state, nats_server.url, other_ca)


async def test_a_reloaded_tls_server_still_requires_tls(
    tls_state: StateDir, tls_server: server.RunningServer
) -> None:
    context = tls.client_context(tls_state)
    tls_state.ensure_identity("carol", Role.USER)
    server.reload(tls_server, tls_state.root)
    assert "tls {" in (tls_state.nats_dir / "nats-server.conf").read_text()
    async with asyncio.timeout(20):  # carol is let in (over TLS) once the server reloaded
        while True:
            try:
                await asyncio.to_thread(quick_list, tls_state, tls_server.url, context, "carol")
            except quick.QuickTimeoutError:
                break  # connected and authenticated: only nobody serves the query
            except quick.QuickError:
                await asyncio.sleep(0.05)
    answer = await asyncio.to_thread(plaintext_answer, tls_server.url, tls_state)
    assert answer == b""


def test_a_refused_key_over_tls_is_a_typed_error_however_the_server_hangs_up(
    tls_state: StateDir, tls_server: server.RunningServer
) -> None:
    context = tls.client_context(tls_state)
    query = requests.list_jobs()
    stranger = Signer(new_user_seed())
    # the server may hang up before or after the request is written (CI once saw a raw
    # SSLEOFError from sendall after a refused CONNECT); either way the error is typed
    for _ in range(20):
        with pytest.raises(quick.QuickError):
            quick.request(
                tls_server.url,
                stranger,
                tls_state.load_roster(),
                subjects.query_subject(query),
                query,
                timeout=3,
                tls=context,
            )
