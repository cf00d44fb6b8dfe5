"""The state directory: identities, seeds and the roster."""

from __future__ import annotations

import stat

import pytest

from bus.deployment import DeploymentError, StateDir
from schemas.roster import Identity, Role, Roster


def test_seeds_are_private_and_stable(state: StateDir) -> None:
    mode = stat.S_IMODE(state.seed_path("alice").stat().st_mode)
    assert mode == 0o600
    key = state.load_signer("alice").public_key
    assert state.ensure_identity("alice", Role.USER).key == key  # idempotent


def test_a_user_cannot_take_a_component_name(state: StateDir) -> None:
    core_key = state.load_signer("core").public_key
    with pytest.raises(DeploymentError, match="belongs to the core identity"):
        state.ensure_identity("core", Role.ADMIN)
    assert state.load_roster().get(core_key) == Identity(name="core", role=Role.CORE, key=core_key)


def test_a_roster_with_a_shared_key_or_name_is_refused(state: StateDir) -> None:
    key = state.load_signer("alice").public_key
    with pytest.raises(ValueError, match="share a key"):
        Roster(
            [
                Identity(name="a", role=Role.USER, key=key),
                Identity(name="b", role=Role.USER, key=key),
            ]
        )
    other = state.load_signer("bob").public_key
    with pytest.raises(ValueError, match="share a name"):
        Roster(
            [
                Identity(name="a", role=Role.USER, key=key),
                Identity(name="a", role=Role.ADMIN, key=other),
            ]
        )
