"""Accounts, their members, and the spend caps of users and accounts (``accounts.json``). Pure.

The operator owns this file, as they own the roster: ``skyport account`` rewrites it and
core and the scheduler follow it within a second. Core admits a job naming ``--account A``
only from a member of ``A`` (admins: anyone); the scheduler keeps a job pending with reason
``budget`` while its estimated cost would take its user or its account past a cap. Spend
itself is never in this file: it is folded from the ``job_usage_recorded`` events.
"""

from __future__ import annotations

import calendar
import time
from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.jobs import MAX_PRICE, parse_amount

MAX_BUDGET = MAX_PRICE * 24 * 366 * 1000  # a year of a thousand of the dearest nodes
Limit = Annotated[float, Meta(ge=0, le=MAX_BUDGET)]
Name = Annotated[str, Meta(pattern="^[A-Za-z0-9_-]{1,64}$")]


def parse_limit(text: str) -> float:
    """A spend cap from a command line; ValueError saying why not."""
    return parse_amount(text, MAX_BUDGET, "an amount")


class Period(StrEnum):
    """The span a cap covers: spend is counted from the start of the current one (UTC)."""

    TOTAL = "total"
    MONTH = "month"
    WEEK = "week"  # from Monday 00:00 UTC
    DAY = "day"


class Budget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``limit`` (in the currency of the node prices) per ``period``."""

    limit: Limit
    period: Period = Period.TOTAL


class AccountEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    members: tuple[Name, ...] = ()
    budget: Budget | None = None


class UserEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    budget: Budget | None = None


class Accounts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole file. An empty one (or none) means no accounts and no caps."""

    version: int = 1
    accounts: dict[Name, AccountEntry] = {}
    users: dict[Name, UserEntry] = {}

    def may_charge(self, user: str, account: str) -> bool:
        """Whether ``user`` is a member of ``account``."""
        entry = self.accounts.get(account)
        return entry is not None and user in entry.members

    def refusal(self, user: str, account: str | None, admin: bool) -> str | None:
        """Why ``user`` may not charge ``account``, or None if they may: members may, admins
        may charge any, and everyone their personal account (named after them, and where a
        job without an account is charged), unless an account of that name exists: then
        only its members may (``skyport`` refuses to create such a clash)."""
        if account is None or admin or self.may_charge(user, account):
            return None
        if account == user and account not in self.accounts:
            return None
        if account in self.accounts:
            return f"{user} is not a member of account {account}"
        return f"there is no account {account} (see 'skyport account list')"

    def user_budget(self, user: str) -> Budget | None:
        entry = self.users.get(user)
        return entry.budget if entry is not None else None

    def account_budget(self, account: str) -> Budget | None:
        entry = self.accounts.get(account)
        return entry.budget if entry is not None else None


def decode(data: bytes) -> Accounts:
    """The accounts file; ``msgspec.DecodeError`` (or its ``ValidationError``) saying what is
    wrong."""
    return msgspec.json.decode(data, type=Accounts)


def encode(accounts: Accounts) -> bytes:
    return msgspec.json.format(msgspec.json.encode(accounts)) + b"\n"


def period_start(period: Period, at: float) -> float:
    """When the period containing ``at`` began (UTC); 0 for ``total``."""
    if period is Period.TOTAL:
        return 0.0
    day = time.gmtime(at)
    midnight = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0))
    if period is Period.DAY:
        return float(midnight)
    if period is Period.WEEK:
        return float(midnight - day.tm_wday * 86_400)
    return float(calendar.timegm((day.tm_year, day.tm_mon, 1, 0, 0, 0)))
