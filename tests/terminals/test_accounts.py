"""``skyport account``: the accounts file the operator edits, as core and the scheduler read it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from bus.deployment import StateDir
from schemas.accounts import Budget, Period
from schemas.roster import Role
from terminals.cli.main import main


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    for name, role in (("admin", Role.ADMIN), ("alice", Role.USER), ("bob", Role.USER)):
        state.ensure_identity(name, role)
    return state


def skyport(state: StateDir, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--state-dir", str(state.root), "--identity", "admin", *args])
    return code, out.getvalue()


def test_accounts_members_and_budgets_round_trip(state: StateDir) -> None:
    assert skyport(state, "account", "add", "physics", "-m", "alice", "-m", "bob")[0] == 0
    assert skyport(state, "account", "budget", "physics", "250", "--period", "month")[0] == 0
    assert skyport(state, "account", "budget", "alice", "40", "--user")[0] == 0
    assert skyport(state, "account", "remove", "physics", "--member", "bob")[0] == 0
    accounts = state.load_accounts()
    assert accounts.accounts["physics"].members == ("alice",)
    assert accounts.account_budget("physics") == Budget(limit=250.0, period=Period.MONTH)
    assert accounts.user_budget("alice") == Budget(limit=40.0)
    assert accounts.may_charge("alice", "physics") and not accounts.may_charge("bob", "physics")
    code, out = skyport(state, "account", "list")
    assert code == 0 and "250/month" in out and "40/total" in out
    code, out = skyport(state, "account", "list", "--json")
    assert json.loads(out)["accounts"]["physics"]["members"] == ["alice"]
    assert skyport(state, "account", "budget", "physics", "none")[0] == 0
    assert state.load_accounts().account_budget("physics") is None
    assert skyport(state, "account", "remove", "physics")[0] == 0
    assert state.load_accounts().accounts == {}


@pytest.mark.parametrize(
    "args, code",
    [
        (("account", "add", "physics", "-m", "carol"), 1),  # not a user
        (("account", "add", "phys/ics"), 2),
        (("account", "budget", "chemistry", "10"), 1),  # no such account
        (("account", "budget", "alice", "-5", "--user"), 2),
        (("account", "budget", "alice", "nan", "--user"), 2),
        (("account", "budget", "alice", "10", "--period", "year", "--user"), 2),
    ],
)
def test_bad_account_commands_are_refused_and_change_nothing(
    state: StateDir, args: tuple[str, ...], code: int
) -> None:
    before = state.load_accounts()
    try:
        got = skyport(state, *args)[0]
    except SystemExit as exc:  # argparse's own exit 2
        got = int(str(exc.code))
    assert got == code
    assert state.load_accounts() == before


def test_a_damaged_accounts_file_is_a_clear_error(state: StateDir) -> None:
    state.accounts_path.write_text('{"accounts": {"physics": {"budget": {"limit": -1}}}}')
    code, _ = skyport(state, "account", "list")
    assert code == 1


def test_an_account_and_a_user_may_not_share_a_name(state: StateDir) -> None:
    assert skyport(state, "account", "add", "alice")[0] == 1  # alice's personal account
    assert skyport(state, "account", "add", "physics", "-m", "alice")[0] == 0
    assert skyport(state, "user", "add", "physics")[0] == 1
    assert "physics" not in {i.name for i in state.load_roster().identities()}
    # and were the file edited by hand, the account's members decide, not the name
    accounts = state.load_accounts()
    assert accounts.refusal("physics", "physics", admin=False) is not None
    assert accounts.refusal("bob", "bob", admin=False) is None
