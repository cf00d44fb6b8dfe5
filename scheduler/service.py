"""The scheduler's bus side: follow job events and gate heartbeats, run passes, send placements.

The only I/O of the scheduler. Start-up replays both streams from their start into a fresh
view (so a restarted scheduler knows every placement already made), waits until it has caught
up, then runs a pass whenever the view changes (debounced by a few milliseconds) and at least
every ``period_s``. Placements go to core as ``PlaceJobs`` requests under a fresh plan id;
until the events confirm them they are in flight (scheduler.flights).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from bus.connection import Bus, BusError, Delivery, Incoming
from scheduler.advice import NO_ADVICE
from scheduler.dryrun import dry_run
from scheduler.flights import Flights
from scheduler.optimizer import solve
from scheduler.policy import Planner, Policy, Waiting, greedy
from scheduler.settings import Settings
from scheduler.view import View
from scheduler.window import snapshot
from schemas import subjects
from schemas.accounts import Accounts
from schemas.commands import (
    MAX_WAITING_DETAIL,
    AnySchedulerQuery,
    PlaceJobs,
    Placement,
    PlaceReply,
    RejectCode,
    Rejected,
    ReportWaiting,
    WaitingNote,
)
from schemas.events import AnyJobEvent
from schemas.gate import AnyGateEvent
from schemas.ids import JobId, MessageId, PlanId, UserName
from schemas.jobs import PendingReason
from schemas.roster import Role
from schemas.subjects import CoreVerb

log = logging.getLogger("skyport.scheduler")
_SOLVABLE = frozenset({PendingReason.RESOURCES, PendingReason.PRIORITY})
"""Waits a different plan could shorten (not budgets, dependencies or missing gates)."""

_job_decoder = msgspec.json.Decoder(AnyJobEvent)
_gate_decoder = msgspec.json.Decoder(AnyGateEvent)
_query_decoder = msgspec.json.Decoder(AnySchedulerQuery)
PLACE = subjects.core_command(CoreVerb.PLACE)
WAITING = subjects.core_command(CoreVerb.WAITING)


class _Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


@dataclass(slots=True)
class _CatchUp:
    """Whether one replay has delivered everything that was in its stream."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    seen: int = 0

    def saw(self, pending: int) -> None:
        self.seen += 1
        if pending == 0:
            self.done.set()

    async def wait(self, quiet_s: float) -> None:
        """Until the last message is in, or nothing came for ``quiet_s`` (empty stream)."""
        while not self.done.is_set():
            before = self.seen
            try:
                async with asyncio.timeout(quiet_s):
                    await self.done.wait()
            except TimeoutError:
                if self.seen == before:
                    self.done.set()


class RateLimit:
    """At most ``per_s`` admissions a second per sender (a token bucket of ``per_s``)."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self._buckets: dict[str, tuple[float, float]] = {}  # sender -> (tokens, at)

    def admit(self, sender: str, now: float) -> bool:
        tokens, at = self._buckets.get(sender, (self.per_s, now))
        tokens = min(self.per_s, tokens + (now - at) * self.per_s)
        if len(self._buckets) > 10_000:
            self._buckets.clear()  # bounded: a forgotten sender starts with a full bucket
        if tokens < 1:
            self._buckets[sender] = (tokens, now)
            return False
        self._buckets[sender] = (tokens - 1, now)
        return True


class SchedulerService:
    """Keeps the view and sends the planner's placements to core."""

    def __init__(
        self,
        bus: Bus,
        settings: Settings | None = None,
        planner: Planner = greedy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.settings = settings or Settings()
        self.planner = planner
        self.clock = clock
        s = self.settings
        self.view = View(half_life_s=s.half_life_s)
        self.policy = Policy(weights=s.weights)
        self.flights = Flights(s.in_flight_s, s.backoff_s, s.backoff_max_s)
        self.waiting: dict[JobId, Waiting] = {}  # of the last pass
        self._reported: dict[JobId, tuple[int, Waiting, float]] = {}  # sent: attempt, when
        self._reported_at = float("-inf")
        self.advice = NO_ADVICE
        self.solves = 0
        self._solving: asyncio.Task[None] | None = None
        self._solved_version = -1
        self._solved_at = float("-inf")
        self._dry_runs = RateLimit(self.settings.dry_runs_per_s)
        self.ready = asyncio.Event()
        self.plans_sent = 0
        self._changed = asyncio.Event()
        self._jobs = _CatchUp()
        self._gates = _CatchUp()

    async def use_accounts(self, accounts: Accounts) -> None:
        """Take new budgets (``Bus.follow_file`` of the accounts file calls this)."""
        self.policy = Policy(weights=self.settings.weights, accounts=accounts)
        self._changed.set()

    async def run(self) -> None:
        """Follow the streams and place jobs until cancelled."""
        subs = await self._follow()
        try:
            await asyncio.gather(
                self._jobs.wait(self.settings.quiet_s), self._gates.wait(self.settings.quiet_s)
            )
            subs.append(
                await self.bus.serve(
                    subjects.SCHEDULER_QUERIES,
                    subjects.SCHEDULER_QUEUE_GROUP,
                    _query_decoder,
                    self.on_query,
                )
            )
            log.info(
                "scheduler caught up: %d pending, %d active, %d gates",
                len(self.view.pending),
                len(self.view.active),
                len(self.view.gates),
            )
            self.ready.set()
            async with asyncio.TaskGroup() as tg:
                await self._passes(tg)
        finally:
            for sub in subs:
                await sub.unsubscribe()

    async def on_query(self, incoming: Incoming[AnySchedulerQuery]) -> msgspec.Struct:
        """A dry run: what a pass would do with the sender's job now (nothing is sent)."""
        query, sender = incoming.body, incoming.sender
        if subjects.parse(incoming.subject).a != subjects.SCHEDULER_QUERY_OF[type(query)]:
            return Rejected(to=query.id, code=RejectCode.BAD_REQUEST, detail="wrong subject")
        if sender.role not in (Role.USER, Role.ADMIN):
            return Rejected(to=query.id, code=RejectCode.NOT_ALLOWED, detail="users only")
        accounts = self.policy.accounts
        why = (
            None
            if accounts is None
            else accounts.refusal(sender.name, query.spec.account, sender.role is Role.ADMIN)
        )
        if why is not None:
            return Rejected(to=query.id, code=RejectCode.NOT_MEMBER, detail=why)
        now = self.clock()
        if not self._dry_runs.admit(sender.name, now):
            detail = f"at most {self.settings.dry_runs_per_s:g} dry runs a second; try again"
            return Rejected(to=query.id, code=RejectCode.RATE_LIMITED, detail=detail)
        return dry_run(
            self.view,
            now,
            UserName(sender.name),
            query.spec,
            query.id,
            self.flights.in_flight(),
            self.flights.backing_off(now),
            dataclasses.replace(self.policy, advice=self.advice),  # as the next pass will
        )

    async def _follow(self) -> list[_Subscription]:
        """Subscribe to both replays, waiting for core to create the streams if need be."""
        while True:
            try:
                jobs = await self.bus.replay(subjects.ALL_JOB_EVENTS, _job_decoder, self._on_job)
                gates = await self.bus.replay(
                    subjects.gate_events_of("*", "gate_capacity"), _gate_decoder, self._on_gate
                )
                return [jobs, gates]
            except Exception as exc:  # start-up boundary: streams may not exist yet
                log.warning("scheduler cannot follow the streams yet: %s", exc)
                await asyncio.sleep(self.settings.retry_s)

    async def _on_job(self, delivery: Delivery[AnyJobEvent]) -> None:
        if self.view.apply_job_event(delivery.incoming.body):
            self._changed.set()
        self._jobs.saw(delivery.pending)

    async def _on_gate(self, delivery: Delivery[AnyGateEvent]) -> None:
        event, subject = delivery.incoming.body, delivery.incoming.subject
        if subjects.parse(subject).a != event.gate:
            log.warning("dropped %s: it names gate %r", subject, event.gate)
        elif self.view.apply_gate_event(event):
            self._changed.set()
        self._gates.saw(delivery.pending)

    async def _passes(self, tg: asyncio.TaskGroup) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            try:
                async with asyncio.timeout(self._idle_timeout()):
                    await self._changed.wait()
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(self.settings.debounce_s)
            self._changed.clear()
            for batch in self.run_pass():
                tg.create_task(self._send(batch))
            notes = self.waiting_notes()
            if notes:
                tg.create_task(self._report(notes))
            if self._solve_due():
                self._solving = tg.create_task(self._optimise())

    def _idle_timeout(self) -> float:
        now = self.clock()
        deadline = self.flights.next_deadline(now)
        wait = self.settings.period_s if deadline is None else deadline - now
        return min(self.settings.period_s, max(0.005, wait))

    def run_pass(self) -> list[list[Placement]]:
        """One placement pass; returns the batches to send (already marked in flight)."""
        now = self.clock()
        self.flights.prune(self.view, now)
        policy = dataclasses.replace(self.policy, advice=self.advice)
        result = self.planner(
            self.view, now, self.flights.in_flight(), self.flights.backing_off(now), policy
        )
        placements, self.waiting = result.placements, result.waiting
        self.flights.sent(placements, now)
        size = self.settings.max_batch
        return [placements[i : i + size] for i in range(0, len(placements), size)]

    def _solve_due(self) -> bool:
        """A solve when none runs, the optimiser is on, the view changed (or the advice runs
        out), and a job has waited for capacity ``solve_after_s``; at most one every
        ``solve_every_s``."""
        s, now = self.settings, self.clock()
        if not s.optimise or (self._solving is not None and not self._solving.done()):
            return False
        if now - self._solved_at < s.solve_every_s:
            return False
        stale = self.view.version != self._solved_version or now >= self.advice.valid_until - 1
        if not stale:
            return False
        # Only a queue that keeps jobs waiting: one that drains in seconds gains nothing from
        # a plan that assumes every job runs to its time limit, and the solve costs a core.
        pending = self.view.pending
        return any(
            why.reason in _SOLVABLE and now - pending[job_id].submitted_at >= s.solve_after_s
            for job_id, why in self.waiting.items()
            if job_id in pending
        )

    async def _optimise(self) -> None:
        """Snapshot the window here (the view must not move under it), solve in a thread,
        and let the next pass follow the advice. A failed solve leaves the greedy answer."""
        s, now = self.settings, self.clock()
        self._solved_version, self._solved_at = self.view.version, now
        try:
            instance = snapshot(
                self.view,
                now,
                self.flights.in_flight(),
                self.flights.backing_off(now),
                self.policy,
                self.waiting,
                s.window,
            )
            advice = await asyncio.to_thread(solve, instance, s.objective, s.solve)
        except Exception:  # boundary: the optimiser may fail; placement goes on greedily
            log.exception("optimiser failed; greedy placement goes on")
            return
        self.solves += 1
        self.advice = advice
        log.info(
            "optimiser: %s over %d jobs in %.2f s, objective %.1f -> %.1f (%.1f%%)",
            advice.status,
            len(instance.jobs),
            advice.solve_s,
            advice.greedy.objective,
            advice.advised.objective,
            advice.gain_pct,
        )
        if advice.planned:
            self._changed.set()  # a pass follows it now

    def waiting_notes(self) -> list[WaitingNote]:
        """The pending reasons of the last pass that core has not recorded and that were not
        sent lately, of jobs pending ``reasons_after_s`` at least; at most once every
        ``reasons_period_s``."""
        now = self.clock()
        s = self.settings
        if now - self._reported_at < s.reasons_period_s:
            return []
        self._reported_at = now
        for job_id in [j for j in self._reported if j not in self.view.pending]:
            del self._reported[job_id]
        notes: list[WaitingNote] = []
        for job_id, why in self.waiting.items():
            job = self.view.pending.get(job_id)
            if job is None or now - job.submitted_at < s.reasons_after_s:
                continue  # a job that starts within seconds needs no reason recorded
            detail = why.detail[:MAX_WAITING_DETAIL]  # as core will have recorded it
            if job.reason is why.reason and job.reason_detail == detail:
                continue
            sent = self._reported.get(job_id)
            if (
                sent is not None
                and sent[:2] == (job.attempt, why)
                and now < sent[2] + s.in_flight_s
            ):
                continue  # on its way to core
            self._reported[job_id] = (job.attempt, why, now)
            notes.append(
                WaitingNote(job_id=job_id, attempt=job.attempt, reason=why.reason, detail=detail)
            )
        return notes

    async def _report(self, notes: list[WaitingNote]) -> None:
        size = self.settings.max_notes
        for i in range(0, len(notes), size):
            cmd = ReportWaiting(
                id=MessageId(uuid.uuid4().hex), at=self.clock(), notes=tuple(notes[i : i + size])
            )
            try:
                reply = await self.bus.request(
                    WAITING, cmd, timeout=self.settings.request_timeout_s
                )
            except Exception as exc:  # boundary: a lost report is sent again after in_flight_s
                log.warning("pending reasons (%d jobs) not reported: %s", len(cmd.notes), exc)
                return
            if isinstance(reply, Rejected):
                log.warning("pending reasons refused (%s): %s", reply.code, reply.detail)

    async def _send(self, placements: Sequence[Placement]) -> None:
        plan_id = uuid.uuid4().hex
        cmd = PlaceJobs(
            id=MessageId(plan_id),
            at=self.clock(),
            plan_id=PlanId(plan_id),
            placements=tuple(placements),
        )
        self.plans_sent += 1
        try:
            reply = await self.bus.request(PLACE, cmd, timeout=self.settings.request_timeout_s)
        except BusError as exc:
            log.warning("plan %s (%d jobs) unanswered: %s", plan_id, len(placements), exc)
            return  # stays in flight until it expires; then a pass retries
        except Exception:  # message-loop boundary: one lost request must not stop the passes
            log.exception("plan %s failed", plan_id)
            return
        self._on_reply(plan_id, placements, reply)

    def _on_reply(self, plan_id: str, placements: Sequence[Placement], reply: object) -> None:
        now = self.clock()
        match reply:
            case PlaceReply(accepted=accepted, rejected=rejected):
                self.flights.accepted(accepted, now)
                for rejection in rejected:
                    log.info(
                        "plan %s: job %s rejected (%s): %s",
                        plan_id,
                        rejection.job_id,
                        rejection.code,
                        rejection.detail,
                    )
                    self.flights.rejected(rejection.job_id, now)
                if rejected:
                    self._changed.set()  # their resources are free again
            case Rejected(code=code, detail=detail):
                log.warning("plan %s refused (%s): %s", plan_id, code, detail)
                for placement in placements:
                    self.flights.rejected(placement.job_id, now)
                self._changed.set()
            case _:
                log.warning("plan %s: unexpected reply %r", plan_id, reply)
