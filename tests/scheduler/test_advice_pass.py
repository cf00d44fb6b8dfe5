"""A greedy pass that follows the optimiser's advice: held-back jobs wait (blocking nobody),
planned ones go only to their planned gate, and stale advice is ignored. Pure."""

from __future__ import annotations

from scheduler.advice import Advice, Planned, Status
from scheduler.policy import Policy, run_pass
from schemas.ids import GateName, JobId
from schemas.jobs import PendingReason
from tests.scheduler.factories import NOW, capacity, node, submitted, view_of

CHEAP = capacity("cheap", node("c1", cpus=4, price=1.0))
DEAR = capacity("dear", node("d1", cpus=4, price=5.0))


def _advice(planned: dict[str, tuple[float, str]], valid_s: float = 30.0) -> Policy:
    plan = {JobId(j): Planned(start=NOW + dt, gate=GateName(g)) for j, (dt, g) in planned.items()}
    advice = Advice(status=Status.IMPROVED, made_at=NOW, valid_until=NOW + valid_s, planned=plan)
    return Policy(advice=advice)


def test_a_job_the_plan_starts_later_waits_and_blocks_nobody() -> None:
    view = view_of(CHEAP, DEAR, events=(submitted("1", cpus_per_task=4), submitted("2")))
    result = run_pass(view, NOW, policy=_advice({"1": (600.0, "cheap")}))
    assert [p.job_id for p in result.placements] == ["2"]  # job 1 would have taken "cheap"
    why = result.waiting[JobId("1")]
    assert (
        why.reason is PendingReason.RESOURCES
        and "held back by the optimiser for a better start on gate cheap" in why.detail
    )


def test_a_job_the_plan_starts_now_goes_only_to_its_gate() -> None:
    view = view_of(CHEAP, DEAR, events=(submitted("1", cpus_per_task=4),))
    [placement] = run_pass(view, NOW, policy=_advice({"1": (0.0, "dear")})).placements
    assert placement.allocation.gate == "dear"  # greedy alone would take "cheap"


def test_a_planned_gate_that_is_gone_falls_back_to_greedy() -> None:
    view = view_of(CHEAP, events=(submitted("1", cpus_per_task=4),))
    [placement] = run_pass(view, NOW, policy=_advice({"1": (0.0, "dear")})).placements
    assert placement.allocation.gate == "cheap"


def test_stale_advice_is_ignored() -> None:
    view = view_of(CHEAP, DEAR, events=(submitted("1", cpus_per_task=4),))
    policy = _advice({"1": (600.0, "dear")}, valid_s=-1.0)
    [placement] = run_pass(view, NOW, policy=policy).placements
    assert placement.allocation.gate == "cheap"
