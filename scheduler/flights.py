"""Placements sent to core but not yet seen in the events, and jobs backing off.

Pure: no I/O; time is passed in. A placement is "in flight" from the moment it is sent until
the view shows the job scheduled (or gone), core rejects it, or ``in_flight_s`` passes (a lost
request: the next pass retries under a new plan id, which core makes safe by refusing a job
that is no longer pending). While in flight, the job is not placed again and its resources
count as used. A rejected job backs off exponentially so that a disagreement with core
cannot turn into a hot loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.view import View
from schemas.commands import Placement
from schemas.ids import JobId


@dataclass(slots=True)
class _Flight:
    placement: Placement
    until: float


@dataclass(slots=True)
class _Backoff:
    until: float
    rejections: int


class Flights:
    """In-flight placements and back-offs of the scheduler service."""

    def __init__(self, in_flight_s: float, backoff_s: float, backoff_max_s: float) -> None:
        self._hold_s = in_flight_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._flights: dict[JobId, _Flight] = {}
        self._backoffs: dict[JobId, _Backoff] = {}

    def sent(self, placements: Iterable[Placement], now: float) -> None:
        for placement in placements:
            self._flights[placement.job_id] = _Flight(placement, now + self._hold_s)

    def accepted(self, job_ids: Iterable[JobId], now: float) -> None:
        """Core took them: keep them in flight until the view shows them scheduled."""
        for job_id in job_ids:
            self._backoffs.pop(job_id, None)
            flight = self._flights.get(job_id)
            if flight is not None:
                flight.until = max(flight.until, now + self._hold_s)

    def rejected(self, job_id: JobId, now: float) -> None:
        """Core refused it: free its resources now, and do not try it again for a while."""
        self._flights.pop(job_id, None)
        previous = self._backoffs.get(job_id)
        rejections = 1 if previous is None else previous.rejections + 1
        delay = min(self._backoff_max_s, self._backoff_s * 2 ** (rejections - 1))
        self._backoffs[job_id] = _Backoff(now + delay, rejections)

    def prune(self, view: View, now: float) -> None:
        """Forget flights the view has caught up with or that expired, and settled back-offs."""
        for job_id, flight in list(self._flights.items()):
            job = view.pending.get(job_id)
            if job is None or job.attempt != flight.placement.attempt or flight.until <= now:
                del self._flights[job_id]
        for job_id in [j for j in self._backoffs if j not in view.pending]:
            del self._backoffs[job_id]

    def in_flight(self) -> Mapping[JobId, Placement]:
        return {job_id: f.placement for job_id, f in self._flights.items()}

    def backing_off(self, now: float) -> frozenset[JobId]:
        return frozenset(j for j, b in self._backoffs.items() if b.until > now)

    def next_deadline(self, now: float) -> float | None:
        """The earliest future time a flight expires or a back-off ends, if any."""
        times = [f.until for f in self._flights.values()]
        times += [b.until for b in self._backoffs.values() if b.until > now]
        return min(times, default=None)
