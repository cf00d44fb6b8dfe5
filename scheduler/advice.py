"""The optimiser's advice to later greedy passes: which jobs to hold back, and where to go.

Pure data, importable by the greedy pass without the solver. An ``Advice`` carries a plan
(``Planned`` start and gate per job of the window it was made for). A pass that follows it
skips a job while ``defers(job_id, now)`` (the plan starts it later: to wait for a cheaper
gate, or to let a more valuable job go first), and then places it only on
``gate_for(job_id, now)`` (if that gate can still hold it at all; else as greedy would);
everything else is the greedy rule. ``scheduler.schedule.simulate`` follows a plan the
same way. Placements always come from the pass's own capacity code, so advice can delay or
steer a job, never over-commit a node. Advice expires at ``valid_until``: a stale plan (a
solver that stopped) turns into no advice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from schemas.ids import GateName, JobId


class Planned(NamedTuple):
    """When and where a plan starts a job."""

    start: float
    gate: GateName


@dataclass(frozen=True, slots=True)
class Score:
    """What a schedule of a window is worth: its objective (lower is better), the cost of
    its jobs' runs, and their mean wait from the moment of the snapshot."""

    objective: float
    cost: float
    mean_wait_s: float


NO_SCORE = Score(objective=0.0, cost=0.0, mean_wait_s=0.0)


class Status(StrEnum):
    """How a solve ended."""

    EMPTY = "empty"  # no placeable job in the window
    GREEDY_OPTIMAL = "greedy_optimal"  # greedy starts every job now at its lowest cost
    IMPROVED = "improved"  # the plan beats greedy (measured by the same simulation)
    NO_GAIN = "no_gain"  # the solver's best plan is no better than greedy's
    NO_SOLUTION = "no_solution"  # the solver found no plan in its time, or failed


@dataclass(frozen=True, slots=True)
class Advice:
    """A plan for the jobs of one window, for the passes until ``valid_until``."""

    status: Status
    made_at: float
    valid_until: float
    planned: Mapping[JobId, Planned] = field(default_factory=dict)
    """Empty unless ``status`` is IMPROVED: otherwise greedy is the answer."""
    greedy: Score = NO_SCORE
    """The greedy schedule of the window, as the simulation prices it."""
    advised: Score = NO_SCORE
    """The schedule that following ``planned`` leads to (greedy's, unless IMPROVED)."""
    listed: Score | None = None
    """The list schedule's (CP-SAT's hint, if it beat greedy's), replayed: what the solver
    had to beat; None if the solve stopped before it."""
    solver_status: str = ""
    """CP-SAT's own status name (OPTIMAL, FEASIBLE, UNKNOWN, ...), empty if not run."""
    solve_s: float = 0.0
    """Wall time of the whole solve: snapshot excluded, simulations and CP-SAT included."""

    def defers(self, job_id: JobId, now: float) -> bool:
        """Whether a pass at ``now`` should leave ``job_id`` pending: the plan starts it
        later."""
        planned = self._live(job_id, now)
        return planned is not None and planned.start > now

    def gate_for(self, job_id: JobId, now: float) -> GateName | None:
        """The only gate a pass at ``now`` should place ``job_id`` on, if any."""
        planned = self._live(job_id, now)
        return None if planned is None else planned.gate

    def _live(self, job_id: JobId, now: float) -> Planned | None:
        return self.planned.get(job_id) if now < self.valid_until else None

    @property
    def gain_pct(self) -> float:
        """How much lower the advised objective is than greedy's, in percent."""
        if self.greedy.objective <= 0:
            return 0.0
        return 100.0 * (self.greedy.objective - self.advised.objective) / self.greedy.objective


NO_ADVICE = Advice(status=Status.EMPTY, made_at=-math.inf, valid_until=-math.inf)
"""What a pass follows before any solve: nothing is deferred, no gate is preferred."""
