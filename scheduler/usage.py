"""What users and accounts have used, folded from ``job_usage_recorded`` events. Pure.

Two ledgers: spend in money per user and per account, kept per UTC day so that a budget of
any period (``schemas.accounts.Period``) can be summed exactly; and node-hours per user,
decayed with a half-life, for fair share. Both stay small: one entry per user or account
(and day), however many jobs ran.
"""

from __future__ import annotations

from enum import StrEnum

DAY_S = 86_400


class Scope(StrEnum):
    USER = "user"
    ACCOUNT = "account"


class Spend:
    """Money spent per (scope, name), by UTC day."""

    def __init__(self) -> None:
        self._days: dict[tuple[Scope, str], dict[int, float]] = {}

    def add(self, scope: Scope, name: str, at: float, cost: float) -> None:
        days = self._days.setdefault((scope, name), {})
        day = int(at // DAY_S)
        days[day] = days.get(day, 0.0) + cost

    def since(self, scope: Scope, name: str, start: float) -> float:
        """Spent from ``start`` (a UTC midnight, or 0) on."""
        first = int(start // DAY_S)
        days = self._days.get((scope, name), {})
        return sum(cost for day, cost in days.items() if day >= first)


class Decayed:
    """Node-hours per user, halving every ``half_life_s`` (fair share's memory)."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self._value: dict[str, tuple[float, float]] = {}  # user -> (node-hours, as of)

    def _decay(self, dt: float) -> float:
        return float(0.5 ** (dt / self.half_life_s)) if self.half_life_s > 0 else 1.0

    def add(self, user: str, node_hours: float, at: float) -> None:
        value, as_of = self._value.get(user, (0.0, at))
        if at >= as_of:
            self._value[user] = (value * self._decay(at - as_of) + node_hours, at)
        else:  # a late record: decay it to the time we hold
            self._value[user] = (value + node_hours * self._decay(as_of - at), as_of)

    def at(self, now: float) -> dict[str, float]:
        """Every user's decayed node-hours at ``now``."""
        return {
            user: value * self._decay(max(0.0, now - as_of))
            for user, (value, as_of) in self._value.items()
        }
