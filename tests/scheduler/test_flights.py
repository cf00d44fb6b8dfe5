"""In-flight placements and back-offs: pure tests with a clock passed in."""

from __future__ import annotations

from scheduler.flights import Flights
from schemas.commands import Placement
from schemas.ids import JobId
from tests.scheduler.factories import NOW, allocation_on, node, scheduled, submitted, view_of

J1 = JobId("1")
PLACEMENT = Placement(
    job_id=J1, attempt=1, allocation=allocation_on("local", (node("a"), 1, 0, ()))
)


def _flights() -> Flights:
    return Flights(in_flight_s=5.0, backoff_s=0.25, backoff_max_s=1.0)


def test_sent_placement_stays_in_flight_until_it_expires() -> None:
    flights, view = _flights(), view_of(events=(submitted("1"),))
    flights.sent([PLACEMENT], NOW)
    flights.prune(view, NOW + 4.9)
    assert flights.in_flight() == {J1: PLACEMENT}
    flights.prune(view, NOW + 5.0)
    assert flights.in_flight() == {}


def test_flight_ends_when_the_view_shows_the_job_scheduled() -> None:
    flights, view = _flights(), view_of(events=(submitted("1"),))
    flights.sent([PLACEMENT], NOW)
    flights.accepted([J1], NOW)
    view.apply_job_event(scheduled(PLACEMENT))
    flights.prune(view, NOW)
    assert flights.in_flight() == {}


def test_rejections_back_off_exponentially_up_to_the_cap() -> None:
    flights, view = _flights(), view_of(events=(submitted("1"),))
    ends = []
    for _ in range(4):
        flights.sent([PLACEMENT], NOW)
        flights.rejected(J1, NOW)
        assert flights.in_flight() == {}
        ends.append(flights.next_deadline(NOW))
        flights.prune(view, NOW)
    assert ends == [NOW + 0.25, NOW + 0.5, NOW + 1.0, NOW + 1.0]
    assert flights.backing_off(NOW + 0.99) == {J1}
    assert flights.backing_off(NOW + 1.0) == frozenset()


def test_acceptance_clears_the_back_off() -> None:
    flights = _flights()
    flights.rejected(J1, NOW)
    flights.accepted([J1], NOW)
    assert flights.backing_off(NOW) == frozenset()
