"""What the budgets leave during one placement pass. Pure.

A job is charged its estimated cost: the price per hour of its shares × its time limit.
Running, placed and in-flight jobs count at that estimate until their usage is recorded,
then at what they really cost (``scheduler.usage``). A job may start only if its estimate
fits what is left of its user's cap and of its account's cap, each over its period. A job
that costs nothing always may: free capacity spends no budget.
"""

from __future__ import annotations

from collections.abc import Iterable

from scheduler.usage import Scope, Spend
from schemas.accounts import Accounts, Budget, period_start

_Key = tuple[Scope, str]


class Remaining:
    """Per capped user and account: the cap minus the spend of its period and the estimates
    of jobs that are on their way."""

    def __init__(self, accounts: Accounts | None, spend: Spend, now: float) -> None:
        self._left: dict[_Key, float] = {}
        self._budgets: dict[_Key, Budget] = {}
        if accounts is None:
            return
        for user, u in accounts.users.items():
            if u.budget is not None:
                self._open((Scope.USER, user), u.budget, spend, now)
        for account, a in accounts.accounts.items():
            if a.budget is not None:
                self._open((Scope.ACCOUNT, account), a.budget, spend, now)

    def _open(self, key: _Key, budget: Budget, spend: Spend, now: float) -> None:
        self._budgets[key] = budget
        self._left[key] = budget.limit - spend.since(*key, period_start(budget.period, now))

    @property
    def capped(self) -> bool:
        return bool(self._left)

    def _keys(self, owner: str, account: str | None) -> Iterable[_Key]:
        yield (Scope.USER, owner)
        if account is not None:
            yield (Scope.ACCOUNT, account)

    def refusal(self, owner: str, account: str | None, cost: float) -> str | None:
        """Why ``cost`` may not be spent now, or None if it may."""
        if cost <= 0:
            return None
        for key in self._keys(owner, account):
            left = self._left.get(key)
            if left is not None and cost > left:
                budget = self._budgets[key]
                # no "how much is left" here: it changes with every job that ends, and a
                # reason is recorded each time its text changes
                return (
                    f"estimated cost {cost:.2f} exceeds what is left of {key[0]} {key[1]}'s "
                    f"budget of {budget.limit:g} ({budget.period})"
                )
        return None

    def charge(self, owner: str, account: str | None, cost: float) -> None:
        for key in self._keys(owner, account):
            if key in self._left:
                self._left[key] -= cost
