"""Dry runs: where a job would run, when, at what cost, and why not elsewhere. Pure."""

from __future__ import annotations

from scheduler.dryrun import dry_run
from scheduler.policy import Policy, run_pass
from scheduler.view import View
from schemas.accounts import Accounts, Budget, UserEntry
from schemas.commands import OptionVerdict, PlanReport
from schemas.ids import MessageId, UserName
from schemas.jobs import PendingReason
from tests.scheduler.factories import NOW, capacity, node, scheduled, spec, submitted, view_of

GATES = (
    capacity("cheap", node("c1", cpus=4, price=1.0)),
    capacity("dear", node("d1", cpus=8, price=4.0), node("d2", cpus=8, price=4.0)),
    capacity("tiny", node("t1", cpus=1)),
    capacity("gone", node("g1", cpus=64), at=NOW - 3600),  # no heartbeat for an hour
)


def _ask(view: View, policy: Policy | None = None, **fields: object) -> PlanReport:
    return dry_run(
        view, NOW, UserName("alice"), spec(**fields), MessageId("q"), policy=policy or Policy()
    )


def _verdicts(report: PlanReport) -> dict[str, OptionVerdict]:
    return {o.gate: o.verdict for o in report.options}


def test_a_job_that_fits_now_goes_to_the_cheapest_gate_and_says_why_not_the_others() -> None:
    view = view_of(*GATES)
    report = _ask(view, cpus_per_task=4, time_limit_s=7200)
    assert (report.gate, report.start_at, report.reason) == ("cheap", NOW, None)
    assert report.price_per_hour == 1.0 and report.estimated_cost == 2.0
    assert _verdicts(report) == {
        "cheap": OptionVerdict.CHOSEN,
        "dear": OptionVerdict.DEARER,
        "tiny": OptionVerdict.TOO_SMALL,
        "gone": OptionVerdict.DOWN,
    }
    dear = next(o for o in report.options if o.gate == "dear")
    assert dear.price_per_hour == 2.0  # half of a 4/h node
    assert view.pending == {}  # nothing was submitted, nothing changed


def test_constraints_show_as_verdicts() -> None:
    view = view_of(*GATES)
    report = _ask(view, cpus_per_task=4, max_price_per_hour=1.5)
    assert _verdicts(report)["dear"] is OptionVerdict.OVER_PRICE
    assert _verdicts(_ask(view, gate="dear"))["cheap"] is OptionVerdict.NOT_REQUESTED
    capped = Policy(accounts=Accounts(users={"alice": UserEntry(budget=Budget(limit=1.5))}))
    report = _ask(view, capped, cpus_per_task=4, time_limit_s=3600)
    assert report.gate == "cheap"  # 1.0 fits the 1.5 left
    assert _verdicts(report)["dear"] is OptionVerdict.OVER_BUDGET  # 2.0 does not
    report = _ask(view, capped, cpus_per_task=8, time_limit_s=3600)  # only dear holds it: 4.0
    assert (report.gate, report.reason) == (None, PendingReason.BUDGET)


def test_a_job_that_must_wait_gets_the_start_of_its_reservation() -> None:
    view = view_of(capacity("cheap", node("c1", cpus=4, price=1.0)))
    view.apply_job_event(submitted("1", cpus_per_task=4, time_limit_s=600))
    [placement] = run_pass(view, NOW).placements
    view.apply_job_event(scheduled(placement))
    first = _ask(view, cpus_per_task=4)
    assert (first.reason, first.gate) == (PendingReason.RESOURCES, "cheap")
    assert first.start_at == NOW + 600 and not first.start_is_bound  # it would be next
    assert _verdicts(first) == {"cheap": OptionVerdict.BUSY}
    view.apply_job_event(submitted("2", cpus_per_task=4))  # now one is ahead of it
    behind = _ask(view, cpus_per_task=4)
    assert behind.reason is PendingReason.PRIORITY and behind.ahead == 1
    assert behind.start_at == NOW + 600 and behind.start_is_bound  # at the earliest


def test_a_job_no_gate_can_hold_has_no_start() -> None:
    report = _ask(view_of(*GATES), cpus_per_task=128)
    assert (report.reason, report.start_at, report.gate) == (PendingReason.NO_GATE, None, None)


def test_jobs_that_rank_behind_it_are_not_counted_ahead() -> None:
    view = view_of(capacity("cheap", node("c1", cpus=4, price=1.0)))
    view.apply_job_event(submitted("1", cpus_per_task=4))
    [placement] = run_pass(view, NOW).placements
    view.apply_job_event(scheduled(placement))
    for n in range(2, 6):
        view.apply_job_event(submitted(str(n), cpus_per_task=4, priority=-100))
    urgent = _ask(view, cpus_per_task=4, priority=100)
    assert urgent.ahead == 0 and not urgent.start_is_bound  # it would hold the reservation
    assert _ask(view, cpus_per_task=4, priority=-200).ahead == 4
