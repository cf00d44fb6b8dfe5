"""The order of the queue: each job's score from its priority, its age and fair share. Pure.

``score = priority × w_priority + age × w_age + fair share × w_fairshare`` (Slurm's
multifactor priority, with its names). ``age`` grows from 0 at submission to 1 after
``age_max_s``; ``fair share`` is ``2^(-used/share)``: 1 for a user who has used nothing,
0.5 for one who used exactly their share, where ``used`` is the user's part of everyone's
decayed node-hours and ``share`` an equal part for every user who has used any. Ties go to
the lower job id (FIFO), then to the earlier arrival.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.view import PendingJob

_NOT_NUMERIC = 1 << 62


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each factor counts; a user's ``--priority`` ranges over ±10,000."""

    priority: float = 1.0
    age: float = 100.0
    age_max_s: float = 7 * 86_400.0
    fairshare: float = 100.0


def fair_factors(used: Mapping[str, float]) -> dict[str, float]:
    """Each user's fair-share factor from their decayed usage (users not in it: 1)."""
    total = sum(used.values())
    if total <= 0:
        return {}
    share = 1.0 / len(used)
    return {user: float(2.0 ** -((value / total) / share)) for user, value in used.items()}


class Ranking:
    """The sort key of pending jobs at one moment."""

    def __init__(self, now: float, weights: Weights, factors: Mapping[str, float]) -> None:
        self.now = now
        self.weights = weights
        self.factors = factors

    def score(self, job: PendingJob) -> float:
        w = self.weights
        age = 1.0 if w.age_max_s <= 0 else (self.now - job.submitted_at) / w.age_max_s
        fair = self.factors.get(job.owner, 1.0)
        return job.spec.priority * w.priority + min(1.0, max(0.0, age)) * w.age + fair * w.fairshare

    def key(self, job: PendingJob) -> tuple[float, int, int]:
        number = int(job.job_id) if job.job_id.isdigit() else _NOT_NUMERIC
        return (-self.score(job), number, job.arrival)
