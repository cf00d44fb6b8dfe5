"""``skyport account add|remove|budget|list``: accounts, their members, and spend caps.

Run by the operator, on the state directory, like ``skyport user``: the accounts file
(``accounts.json``) is rewritten atomically, and core and the scheduler re-read it within a
second. Core then admits ``--account A`` only from members of ``A``; the scheduler keeps a
job pending with reason ``budget`` while its estimated cost would pass a cap.
"""

from __future__ import annotations

import argparse
import json

import msgspec

from bus.deployment import DeploymentError, StateDir
from schemas.accounts import AccountEntry, Accounts, Budget, Period, UserEntry, parse_limit
from schemas.ids import check_token
from terminals.cli import render
from terminals.cli.context import Context
from terminals.cli.errors import UsageError
from terminals.cli.users import PEOPLE
from terminals.client.errors import ClientError


def account(ctx: Context, args: argparse.Namespace) -> int:
    state = ctx.state
    try:
        current = state.load_accounts()
    except DeploymentError as exc:
        raise ClientError(str(exc)) from exc
    match args.account_command:
        case "add":
            updated = _add(state, current, args.name, args.member or [])
        case "remove":
            updated = _remove(current, args.name, args.member or [])
        case "budget":
            updated = _budget(state, current, args)
        case _:
            return _list(current, args.json)
    state.write_accounts(updated)
    print(f"{state.accounts_path} updated")
    return 0


def _people(state: StateDir, names: list[str]) -> None:
    known = {i.name for i in state.load_roster().identities() if i.role in PEOPLE}
    for name in names:
        check_token("user name", name)
        if name not in known:
            raise ClientError(f"no user {name!r} in {state.roster_path} (skyport user add)")


def _add(state: StateDir, current: Accounts, name: str, members: list[str]) -> Accounts:
    check_token("account name", name)
    if name not in current.accounts and any(
        i.name == name for i in state.load_roster().identities()
    ):
        raise ClientError(f"{name!r} is an identity; its personal account has that name already")
    _people(state, members)
    entry = current.accounts.get(name, AccountEntry())
    merged = tuple(dict.fromkeys([*entry.members, *members]))
    accounts = {**current.accounts, name: msgspec.structs.replace(entry, members=merged)}
    return msgspec.structs.replace(current, accounts=accounts)


def _remove(current: Accounts, name: str, members: list[str]) -> Accounts:
    entry = current.accounts.get(name)
    if entry is None:
        raise ClientError(f"no account {name!r}")
    accounts = dict(current.accounts)
    if members:
        kept = tuple(m for m in entry.members if m not in members)
        accounts[name] = msgspec.structs.replace(entry, members=kept)
    else:
        del accounts[name]
    return msgspec.structs.replace(current, accounts=accounts)


def _budget(state: StateDir, current: Accounts, args: argparse.Namespace) -> Accounts:
    budget = _parse_budget(args.limit, args.period)
    if args.user:
        _people(state, [args.name])
        users = {**current.users, args.name: UserEntry(budget=budget)}
        return msgspec.structs.replace(current, users=users)
    entry = current.accounts.get(args.name)
    if entry is None:
        raise ClientError(f"no account {args.name!r} (skyport account add {args.name})")
    accounts = {**current.accounts, args.name: msgspec.structs.replace(entry, budget=budget)}
    return msgspec.structs.replace(current, accounts=accounts)


def _parse_budget(limit: str, period: str) -> Budget | None:
    if limit == "none":
        return None
    try:
        return Budget(limit=parse_limit(limit), period=Period(period))
    except ValueError as exc:
        raise UsageError(f"budget {limit!r}: {exc}") from exc


def _cap(budget: Budget | None) -> str:
    return "-" if budget is None else f"{budget.limit:g}/{budget.period}"


def _list(current: Accounts, as_json: bool) -> int:
    if as_json:
        print(json.dumps(msgspec.to_builtins(current)))
        return 0
    rows = [
        ["account", name, _cap(e.budget), ",".join(e.members) or "-"]
        for name, e in sorted(current.accounts.items())
    ]
    rows += [["user", name, _cap(e.budget), "-"] for name, e in sorted(current.users.items())]
    print(render.table(["KIND", "NAME", "BUDGET", "MEMBERS"], rows) if rows else "no accounts")
    return 0
