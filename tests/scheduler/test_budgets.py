"""Budgets, fair share and pending reasons in the greedy pass: pure table tests."""

from __future__ import annotations

import calendar

from scheduler.policy import Policy, run_pass
from scheduler.priority import Weights, fair_factors
from scheduler.usage import Scope, Spend
from scheduler.view import View
from schemas.accounts import AccountEntry, Accounts, Budget, Period, UserEntry, period_start
from schemas.commands import Placement
from schemas.events import JobCompleted
from schemas.ids import JobId
from schemas.jobs import Dependency, DependencyKind, JobState, PendingReason
from tests.scheduler.factories import (
    NOW,
    capacity,
    event_id,
    node,
    resolved,
    scheduled,
    submitted,
    used,
    view_of,
)

DEAR = capacity("dear", node("d1", cpus=8, price=4.0))  # 4 an hour for the whole node


def _capped(user: float | None = None, account: float | None = None, **kw: object) -> Policy:
    users = {} if user is None else {"alice": UserEntry(budget=Budget(limit=user))}
    accounts = {"physics": AccountEntry(members=("alice",))}
    if account is not None:
        accounts = {"physics": AccountEntry(members=("alice",), budget=Budget(limit=account))}
    return Policy(accounts=Accounts(users=users, accounts=accounts))


def test_a_job_whose_estimate_passes_the_user_cap_waits_for_budget() -> None:
    # a whole node at 4/h for 2 h: estimated 8; alice may spend 5
    view = view_of(DEAR, events=(submitted("1", cpus_per_task=8, time_limit_s=7200),))
    result = run_pass(view, NOW, policy=_capped(user=5.0))
    assert result.placements == []
    why = result.waiting[JobId("1")]
    assert why.reason is PendingReason.BUDGET
    assert "8.00" in why.detail and "budget of 5" in why.detail and "user alice" in why.detail


def test_within_the_cap_it_runs_and_its_estimate_is_charged_to_the_next_job() -> None:
    view = view_of(
        capacity("dear", node("d1", cpus=8, price=4.0), node("d2", cpus=8, price=4.0)),
        events=(
            submitted("1", cpus_per_task=8, time_limit_s=3600),  # estimated 4
            submitted("2", cpus_per_task=8, time_limit_s=3600),  # 4 more: past 6
        ),
    )
    result = run_pass(view, NOW, policy=_capped(user=6.0))
    assert [p.job_id for p in result.placements] == ["1"]
    assert result.waiting[JobId("2")].reason is PendingReason.BUDGET


def test_recorded_spend_and_running_estimates_count_against_the_cap() -> None:
    first = submitted("1", cpus_per_task=4, time_limit_s=3600)
    view = view_of(DEAR, events=(first,))
    [placement] = run_pass(view, NOW).placements
    view.apply_job_event(scheduled(placement, price_per_hour=2.0))  # running: estimate 2
    view.apply_job_event(used("9", cost=2.5))  # an earlier job cost 2.5
    view.apply_job_event(submitted("2", cpus_per_task=4, time_limit_s=3600))  # estimate 2
    assert run_pass(view, NOW, policy=_capped(user=6.0)).placements == []  # 2.5 + 2 + 2 > 6
    assert [p.job_id for p in run_pass(view, NOW, policy=_capped(user=6.5)).placements] == ["2"]
    # once the running job's usage is recorded, its real cost replaces its estimate
    view.apply_job_event(used("1", cost=0.5))
    assert [p.job_id for p in run_pass(view, NOW, policy=_capped(user=5.0)).placements] == ["2"]


def test_the_account_cap_binds_jobs_that_charge_the_account() -> None:
    view = view_of(
        DEAR,
        events=(
            submitted("1", cpus_per_task=8, account="physics"),  # estimated 4
            submitted("2", cpus_per_task=1),  # estimated 0.5, on alice's own account
        ),
    )
    result = run_pass(view, NOW, policy=_capped(account=3.0))
    assert [p.job_id for p in result.placements] == ["2"]
    assert "account physics" in result.waiting[JobId("1")].detail


def test_free_capacity_spends_no_budget() -> None:
    view = view_of(capacity("free", node("f", cpus=8)), events=(submitted("1"),))
    view.apply_job_event(used("9", cost=100.0))  # far past the cap already
    assert len(run_pass(view, NOW, policy=_capped(user=1.0)).placements) == 1


def test_a_budget_wait_does_not_block_cheaper_jobs_behind_it() -> None:
    view = view_of(
        DEAR,
        events=(
            submitted("1", cpus_per_task=8, time_limit_s=36_000, priority=5),  # 40: too dear
            submitted("2", cpus_per_task=8, time_limit_s=600),  # 0.67
        ),
    )
    result = run_pass(view, NOW, policy=_capped(user=10.0))
    assert [p.job_id for p in result.placements] == ["2"]


def test_spend_of_a_period_starts_at_its_utc_boundary() -> None:
    t = calendar.timegm((2026, 12, 16, 15, 30, 0))  # a Wednesday
    assert period_start(Period.DAY, t) == calendar.timegm((2026, 12, 16, 0, 0, 0))
    assert period_start(Period.WEEK, t) == calendar.timegm((2026, 12, 14, 0, 0, 0))
    assert period_start(Period.MONTH, t) == calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert period_start(Period.TOTAL, t) == 0
    spend = Spend()
    spend.add(Scope.USER, "alice", calendar.timegm((2026, 11, 30, 23, 0, 0)), 7.0)
    spend.add(Scope.USER, "alice", calendar.timegm((2026, 12, 2, 1, 0, 0)), 3.0)
    assert spend.since(Scope.USER, "alice", period_start(Period.MONTH, t)) == 3.0
    assert spend.since(Scope.USER, "alice", 0) == 10.0


def test_reasons_say_resources_for_the_top_job_and_priority_behind_it() -> None:
    busy = submitted("1", cpus_per_task=8, time_limit_s=600)
    view = view_of(capacity("local", node("a", cpus=8)), events=(busy,))
    [p] = run_pass(view, NOW).placements
    view.apply_job_event(scheduled(p))
    view.apply_job_event(submitted("2", cpus_per_task=8))
    view.apply_job_event(submitted("3", cpus_per_task=8))
    waiting = run_pass(view, NOW).waiting
    assert waiting[JobId("2")].reason is PendingReason.RESOURCES
    assert "gate local" in waiting[JobId("2")].detail
    assert waiting[JobId("3")].reason is PendingReason.PRIORITY
    assert "behind a job that comes first" in waiting[JobId("3")].detail


def test_reasons_for_dependencies_size_and_price() -> None:
    dep = (Dependency(kind=DependencyKind.AFTERNOTOK, job_id=JobId("1")),)
    view = view_of(
        capacity("local", node("a", cpus=8, price=1.0)),
        events=(
            submitted("1"),
            submitted("2", dependencies=dep),
            submitted("3", cpus_per_task=64),
            submitted("4", max_price_per_hour=0.05),  # 1/8 of a node at 1/h costs 0.125
        ),
    )
    waiting = run_pass(view, NOW).waiting
    assert waiting[JobId("2")].reason is PendingReason.DEPENDENCY
    assert waiting[JobId("3")].reason is PendingReason.NO_GATE
    assert waiting[JobId("4")].reason is PendingReason.NO_GATE
    assert "at most 0.05 an hour" in waiting[JobId("4")].detail
    view.apply_job_event(JobCompleted(event_id=event_id(), job_id=JobId("1"), at=NOW, attempt=1))
    view.apply_job_event(resolved("2", dep[0], JobState.COMPLETED))
    never = run_pass(view, NOW).waiting[JobId("2")]
    assert never.reason is PendingReason.DEPENDENCY_NEVER and "completed" in never.detail


def test_max_price_picks_the_gate_within_it() -> None:
    view = view_of(
        capacity("a-dear", node("d", cpus=8, price=8.0)),
        capacity("b-cheap", node("c", cpus=8, price=1.0)),
        events=(submitted("1", cpus_per_task=8, max_price_per_hour=2.0),),
    )
    [placement] = run_pass(view, NOW).placements
    assert placement.allocation.gate == "b-cheap"


def test_fair_share_puts_the_light_user_first() -> None:
    view = view_of(
        capacity("local", node("a", cpus=8)),
        events=(
            submitted("1", owner="alice", cpus_per_task=8),
            submitted("2", owner="bob", cpus_per_task=8),
        ),
    )
    assert _first(view) == "1"  # FIFO while nobody has used anything
    view.apply_job_event(used("8", cost=0.0, owner="alice", node_hours=10.0))
    view.apply_job_event(used("9", cost=0.0, owner="bob", node_hours=1.0))
    assert _first(view) == "2"
    factors = fair_factors(view.used.at(NOW))
    assert factors["bob"] > factors["alice"]
    # with fair share weighed at nothing, FIFO again
    assert _first(view, Policy(weights=Weights(fairshare=0.0))) == "1"


def test_age_lifts_a_job_over_a_higher_priority_one_when_weighed_so() -> None:
    view = View()
    view.apply_gate_event(capacity("local", node("a", cpus=8)))
    view.apply_job_event(submitted("1", cpus_per_task=8, at=NOW - 7 * 86_400))
    view.apply_job_event(submitted("2", cpus_per_task=8, priority=50))
    assert _first(view) == "1"  # a week of age is worth 100, priority 50 is worth 50
    assert _first(view, Policy(weights=Weights(age=10.0))) == "2"


def _first(view: View, policy: Policy | None = None) -> str:
    placements: list[Placement] = run_pass(view, NOW, policy=policy or Policy()).placements
    return placements[0].job_id
