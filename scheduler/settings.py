"""Tunables of the scheduler service, read once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.optimizer import SolveOptions
from scheduler.priority import Weights
from scheduler.schedule import ObjectiveWeights
from scheduler.window import DEFAULT_WINDOW


@dataclass(frozen=True, slots=True)
class Settings:
    """Timings (seconds) and batch sizes of the scheduler service."""

    debounce_s: float = 0.002
    """Wait this long after a change before a pass, so a burst of events makes one pass."""
    period_s: float = 1.0
    """Run a pass at least this often (gates that came back, expired back-offs)."""
    quiet_s: float = 0.25
    """A replay that delivers nothing for this long counts as caught up (empty stream)."""
    request_timeout_s: float = 3.0
    """How long to wait for core's PlaceReply."""
    in_flight_s: float = 5.0
    """How long a sent placement keeps its job and resources before a pass may retry it
    (longer than ``request_timeout_s``, so a slow answer is not overtaken by a retry)."""
    backoff_s: float = 0.25
    """First back-off after core rejects a placement; doubles per rejection."""
    backoff_max_s: float = 10.0
    max_batch: int = 500
    """Placements per PlaceJobs message (bounded so a message stays well under 1 MB)."""
    retry_s: float = 0.5
    """Pause before subscribing again when the streams do not exist yet."""
    reasons_period_s: float = 1.0
    """Report changed pending reasons to core at most this often (they are for people)."""
    reasons_after_s: float = 5.0
    """Report a job's reason only once it has been pending this long: recording reasons of
    jobs that start within seconds cost a quarter of the throughput of a busy queue."""
    max_notes: int = 2_000
    """Pending reasons per ReportWaiting message."""
    half_life_s: float = 7 * 86_400.0
    """Fair share forgets usage with this half-life."""
    weights: Weights = field(default_factory=Weights)
    """The queue's order: priority, age and fair-share weights (``scheduler.priority``)."""
    dry_runs_per_s: float = 2.0
    """Dry runs a user may ask for per second (each is a whole pass on the event loop)."""
    optimise: bool = True
    """Run the CP-SAT optimiser over the head of the queue while jobs wait for capacity."""
    window: int = DEFAULT_WINDOW
    """How many of the first placeable pending jobs one solve plans."""
    solve_every_s: float = 5.0
    """At most one solve this often (each takes up to ``solve.time_limit_s`` of a thread)."""
    solve_after_s: float = 10.0
    """Solve only once some job has waited this long for capacity (a queue that drains in
    seconds is left to greedy)."""
    objective: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    """What the optimiser minimises: hours of waiting and money (``scheduler.schedule``)."""
    solve: SolveOptions = field(default_factory=lambda: SolveOptions(time_limit_s=1.0))
    """The solver's budget and grid; the advice it gives is followed for ``advice_ttl_s``."""
