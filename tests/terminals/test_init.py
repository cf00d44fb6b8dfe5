"""``skyport init`` as an operator runs it (a fresh process) on a new state directory, and
the address ``skyport up --listen`` accepts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bus import server
from bus.deployment import StateDir
from schemas.roster import Role
from tests.rawproto import plaintext_attempt
from tests.terminals.fakecore import pretend_running
from tests.terminals.test_cli import run


async def test_init_creates_keys_roster_and_a_least_privilege_config(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "fresh")
    code, out, err, _ = await run(state, "init", "--gate", "pool1")
    assert (code, err) == (0, "")
    roles = {i.name: i.role for i in state.load_roster().identities()}
    assert roles == {
        "core": Role.CORE,
        "scheduler": Role.SCHEDULER,
        "local": Role.GATE,
        "pool1": Role.GATE,
        "alice": Role.ADMIN,  # the invoking user
    }
    for name in roles:
        seed = state.seed_path(name)
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert seed.read_text().strip() not in out  # the public key is printed, never the seed
        assert state.load_signer(name).public_key in out
    assert stat.S_IMODE(state.keys_dir.stat().st_mode) == 0o700
    conf = (state.nats_dir / "nats-server.conf").read_text()
    assert conf.count("nkey:") == 5 and conf.count("permissions:") == 5
    assert "tls {" not in conf


async def test_init_again_keeps_every_key(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "fresh")
    assert (await run(state, "init"))[0] == 0
    before = state.load_roster().identities()
    code, out, _, _ = await run(state, "init")
    assert code == 0 and "(new)" not in out
    assert state.load_roster().identities() == before


async def test_init_tls_makes_the_server_refuse_plaintext(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "fresh")
    code, out, err, _ = await run(state, "init", "--tls", "--host", "skyport.example.org")
    assert (code, err) == (0, ""), err
    assert "skyport.example.org" in out
    assert stat.S_IMODE(state.server_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.ca_key_path.stat().st_mode) == 0o600
    srv = server.start(state.root)
    try:
        assert srv.url.startswith("tls://")
        # no greeting in plaintext, nothing answered to a plaintext CONNECT
        assert plaintext_attempt(srv.url, state.load_signer("alice")) == b""
    finally:
        srv.stop()


async def test_init_refuses_while_the_deployment_runs(state: StateDir, nats_url: str) -> None:
    pretend_running(state, nats_url)
    code, _, err, _ = await run(state, "init")
    assert code == 1 and "skyport down" in err


@pytest.mark.parametrize("address", ["0.0.0.0", "198.18.0.1:4222", "[2001:db8::1]:4222"])
async def test_up_refuses_an_address_off_loopback_without_tls(tmp_path: Path, address: str) -> None:
    state = StateDir(tmp_path / "fresh")
    assert (await run(state, "init"))[0] == 0
    code, _, err, _ = await run(state, "up", "--detach", "--listen", address)
    assert code == 2 and "refusing to listen" in err and "without TLS" in err, err
    assert state.read_info() is None  # nothing was started


@pytest.mark.parametrize("address", ["[::1", "host:port", "127.0.0.1:0", ":4222"])
async def test_a_malformed_listen_address_is_a_usage_error(tmp_path: Path, address: str) -> None:
    code, _, err, _ = await run(StateDir(tmp_path / "fresh"), "up", "--listen", address)
    assert code == 2 and "--listen" in err, err
