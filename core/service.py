"""Core's command side on the bus: verify → decode → load → decide → append → reply.

Commands and gate events go through one queue to one writer task (group commit): whatever is
queued is taken as a batch (up to ``batch_max``), decided in order against an overlay of the
in-memory state (core.batch), appended in one transaction with its inbox marks, projection
rows and outbox rows, and only then answered (or acknowledged, for gate events). The relay is
woken after every commit; this module never publishes events itself. After a failed commit
the in-memory state is reloaded from the store before the items are retried one by one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import msgspec

from bus.connection import Bus, Incoming
from core.batch import (
    State,
    Working,
    apply,
    decide_command,
    decide_gate_event,
    inbox_key,
    index_dependents,
)
from core.capacity import offers
from core.job import Actor, job_number
from core.queries import Queries
from core.relay import Relay
from core.store import Store
from schemas import subjects
from schemas.commands import (
    AnyCommand,
    AnyQuery,
    AnyReply,
    GateOffer,
    PlaceJobs,
    RejectCode,
    Rejected,
    ReportWaiting,
    SubmitJob,
)
from schemas.gate import AnyGateEvent, GateCapacity, RunEvent
from schemas.ids import JobId, MessageId, UserName
from schemas.roster import Identity, Role

log = logging.getLogger("skyport.core")

_command_decoder = msgspec.json.Decoder(AnyCommand)
_query_decoder = msgspec.json.Decoder(AnyQuery)
_gate_decoder = msgspec.json.Decoder(AnyGateEvent)
_reply_decoder = msgspec.json.Decoder(AnyReply)
_USERS = frozenset({Role.USER, Role.ADMIN})


class ItemFailedError(Exception):
    """Deciding one item of a batch raised: it is failed alone, the rest is decided again."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"item {index} failed: {cause!r}")
        self.index = index
        self.cause = cause


@dataclass
class Work:
    """One command or gate event waiting for the writer; ``done`` gets its reply."""

    key: str
    sender: Identity
    body: AnyCommand | GateCapacity | RunEvent
    done: asyncio.Future[AnyReply | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    retried: bool = False  # handled again by core itself: a stored reply is its own

    @property
    def replayable(self) -> bool:
        """A sender's command seen before is a replay (gate events are redelivered by
        JetStream and answered from the inbox)."""
        return self.key.startswith("cmd:") and not self.retried


class CoreService:
    """The writer, the command and query handlers, the gate-event consumer and the relay."""

    def __init__(
        self, bus: Bus, store: Store, batch_max: int = 500, replay_window_s: float = 300.0
    ) -> None:
        self.bus = bus
        self.store = store
        self.batch_max = batch_max
        self.replay_window_s = replay_window_s
        self.state = State()
        self.queue: asyncio.Queue[Work] = asyncio.Queue()
        self.committed = asyncio.Event()
        self.ready = asyncio.Event()
        self.queries = Queries(store, self._offers, lambda: self.state.accounts)
        self.relay = Relay(bus, store, self.committed)
        self.batches = 0
        self._busy = False
        self._stale = False  # memory may be behind the store: reload before the next batch

    async def _resolve_ended_dependencies(self) -> None:
        """Dependencies on jobs that ended without resolving them (jobs submitted before
        core resolved dependencies): resolve them now, in one commit of their own."""
        ended = {d for d in self.state.dependents if d not in self.state.jobs}
        if not ended:
            return
        _, loaded = await self.store.run_small_read(self.store.lookup, [], ended)
        work = Working(self.state, loaded, time.time())
        for job in loaded.values():
            if job.finished:
                work.resolve_dependents(job)
        for dependency in ended:
            self.state.dependents.pop(dependency, None)  # resolved, or naming no job
        if not work.commit.empty:
            committed = await self.store.run_write(self.store.commit, work.commit)
            apply(self.state, work.commit)
            self.relay.offer(committed)
        log.info("core resolved the dependencies of %d jobs on ended ones", len(work.commit.jobs))

    async def load(self) -> None:
        """Snapshots of unfinished jobs, gates' nodes, the job id counter (at start-up, and
        again after a failed commit, since the store may then be ahead of memory)."""
        jobs = await self.store.run_read(self.store.load_active)
        self.state.jobs = {j.job_id: j for j in jobs}
        self.state.dependents = index_dependents(jobs)
        await self._resolve_ended_dependencies()
        self.state.gates = await self.store.run_read(self.store.load_gates)
        self.state.last_job_id = await self.store.run_read(self.store.last_job_id)
        log.info(
            "core loaded %d unfinished jobs, %d gates, last job id %d",
            len(self.state.jobs),
            len(self.state.gates),
            self.state.last_job_id,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain the queue and return."""
        await self.load()
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self._write_loop())
            tasks = [tg.create_task(self._consume_gate_events()), tg.create_task(self.relay.run())]
            subs = [
                await self.bus.serve(
                    subjects.CORE_COMMANDS,
                    subjects.CORE_QUEUE_GROUP,
                    _command_decoder,
                    self.on_command,
                    max_in_flight=2000,
                ),
                await self.bus.serve(
                    subjects.CORE_QUERIES,
                    subjects.CORE_QUEUE_GROUP,
                    _query_decoder,
                    self.queries.handle,
                    max_in_flight=64,
                ),
            ]
            self.ready.set()
            await stop.wait()
            for sub in subs:
                await sub.unsubscribe()
            await _cancel(tasks)
            await self._drain()
            await _cancel([writer])
        refused = dict(sorted(self.bus.refusals.items()))
        log.info("core stopped after %d batches; messages refused: %s", self.batches, refused)

    def _offers(self) -> tuple[GateOffer, ...]:
        """The gates' offers from the committed state (what a query may see)."""
        held = (j.allocation for j in self.state.jobs.values() if j.on_gate and j.allocation)
        return offers(self.state.gates, held, time.time())

    async def _drain(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while (not self.queue.empty() or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # -- handlers ----------------------------------------------------------------------------

    async def on_command(self, msg: Incoming[AnyCommand]) -> AnyReply:
        """A verified, decoded command: check subject and role, then queue it for the writer."""
        cmd = msg.body
        verb = subjects.parse(msg.subject).a
        if verb != subjects.VERB_OF[type(cmd)]:
            return Rejected(
                to=cmd.id, code=RejectCode.BAD_REQUEST, detail=f"{type(cmd).__name__} on {verb}"
            )
        allowed = (
            msg.sender.role is Role.SCHEDULER
            if verb in subjects.SCHEDULER_VERBS
            else (msg.sender.role in _USERS)
        )
        if not allowed:
            return Rejected(
                to=cmd.id, code=RejectCode.NOT_ALLOWED, detail=f"{msg.sender.role} may not {verb}"
            )
        skew = cmd.at - time.time()
        if not abs(skew) <= self.replay_window_s:  # also refuses NaN
            return Rejected(
                to=cmd.id,
                code=RejectCode.STALE,
                detail=f"stamped {skew:+.0f} s off core's clock; the window is "
                f"±{self.replay_window_s:g} s",
            )
        work = Work(
            inbox_key("cmd", f"{msg.sender.role}.{msg.sender.name}", cmd.id), msg.sender, cmd
        )
        self.queue.put_nowait(work)
        reply = await work.done
        if reply is None:  # cannot happen for commands; keep the contract total
            return Rejected(to=cmd.id, code=RejectCode.INTERNAL, detail="no reply")
        return reply

    async def _consume_gate_events(self) -> None:
        """Gate reports, a batch at a time; each is acked only after its batch committed."""
        while True:
            try:
                await self._consume_gate_batches()
            except Exception:  # loop boundary: the durable consumer keeps our place
                log.exception("core: gate-event consumer failed; restarting")
                await asyncio.sleep(1.0)

    async def _consume_gate_batches(self) -> None:
        async for batch in self.bus.pull(
            subjects.STREAM_GATE_EVENTS,
            durable=subjects.CORE_GATE_EVENTS_CONSUMER,
            filter_subject=subjects.ALL_GATE_EVENTS,
            decoder=_gate_decoder,
        ):
            works: list[Work | None] = []
            for delivery in batch:
                ev, sender = delivery.incoming.body, delivery.incoming.sender
                if ev.gate != sender.name:
                    log.warning("gate %s reported as %s: ignored", sender.name, ev.gate)
                    works.append(None)
                    continue
                work = Work(inbox_key("gate", sender.name, ev.event_id), sender, ev)
                self.queue.put_nowait(work)
                works.append(work)
            for delivery, queued in zip(batch, works, strict=True):
                try:
                    if queued is not None:
                        await queued.done
                except Exception:
                    await delivery.nak(delay=1.0)
                else:
                    await delivery.ack()

    # -- the writer --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            while len(items) < self.batch_max and not self.queue.empty():
                items.append(self.queue.get_nowait())
            self._busy = True
            try:
                await self._process(items)
            except Exception as exc:  # message-loop boundary: fail these, keep writing
                self._stale = True
                log.exception("core: batch of %d failed", len(items))
                for work in items:
                    _fail(work, exc)
            finally:
                self._busy = False

    async def _process(self, items: list[Work]) -> None:
        """Decide and commit one batch; on a failed commit resync, then retry each item alone.

        A failure other than one item's decide error may leave the store ahead of memory
        (another writer appended first, or a COMMIT succeeded but its answer was lost), so the
        state is reloaded before anything is decided again, and items that did commit find
        their reply in the inbox.
        """
        while items:
            try:
                await self._commit_batch(items)
                return
            except ItemFailedError as err:
                log.error("core: %s", err, exc_info=err.cause)
                _fail(items[err.index], err.cause)
                items = items[: err.index] + items[err.index + 1 :]
            except Exception:
                self._stale = True
                log.exception("core: commit of %d failed; reloading, then one by one", len(items))
                for work in items:
                    await self._commit_alone(work)
                return

    async def _commit_alone(self, work: Work) -> None:
        work.retried = True  # it may have been committed in the batch that failed
        try:
            await self._commit_batch([work])
        except ItemFailedError as err:
            log.error("core: %s: %s", work.key, err, exc_info=err.cause)
            _fail(work, err.cause)
        except Exception as exc:
            self._stale = True
            log.error("core: %s failed: %r", work.key, exc)
            _fail(work, exc)

    async def _commit_batch(self, items: list[Work]) -> None:
        if self._stale:
            await self.load()
            self._stale = False
        needed = {
            job_id for w in items for job_id in _job_ids(w.body) if job_id not in self.state.jobs
        }
        keys = [w.key for w in items]
        seen, loaded = await self.store.run_small_read(self.store.lookup, keys, needed)
        work = Working(self.state, loaded, time.time())
        replies: list[AnyReply | None] = []
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            if (item.key in seen or item.key in first) and item.replayable:
                replies.append(_replayed(item))
            elif item.key in seen:
                raw = seen[item.key]
                replies.append(_reply_decoder.decode(raw) if raw else None)
            elif item.key in first:
                replies.append(replies[first[item.key]])
            else:
                first[item.key] = i
                try:
                    reply = _decide(work, item)
                except Exception as exc:
                    raise ItemFailedError(i, exc) from exc
                work.mark(item.key, reply)
                replies.append(reply)
        if not work.commit.empty:
            try:
                committed = await self.store.run_write(self.store.commit, work.commit)
            except BaseException:
                self.relay.resync()  # it may have landed without an answer: read the store
                raise
            apply(self.state, work.commit)
            self.relay.offer(committed)
        self.batches += 1
        for item, reply in zip(items, replies, strict=True):
            if not item.done.done():
                item.done.set_result(reply)


def _replayed(work: Work) -> Rejected:
    body = work.body
    assert isinstance(body, AnyCommand)  # only commands are replayable
    return Rejected(
        to=body.id,
        code=RejectCode.REPLAYED,
        detail=f"command {body.id} of {work.sender.name} was handled already",
    )


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again while one lives on: Python 3.11's
    ``wait_for`` (nats-py fetches with it) can swallow a cancellation that races a timeout."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def _decide(work: Working, item: Work) -> AnyReply | None:
    body = item.body
    if isinstance(body, GateCapacity | RunEvent):
        decide_gate_event(work, body)
        return None
    actor = Actor(name=UserName(item.sender.name), admin=item.sender.role is Role.ADMIN)
    return decide_command(work, actor, body)


def _job_ids(body: AnyCommand | GateCapacity | RunEvent) -> list[JobId]:
    """Ids of the jobs a command names that could exist (others are simply unknown jobs)."""
    if isinstance(body, PlaceJobs):
        ids = [p.job_id for p in body.placements]
    elif isinstance(body, ReportWaiting):
        ids = [n.job_id for n in body.notes]
    elif isinstance(body, SubmitJob):
        ids = [d.job_id for d in body.spec.dependencies]  # checked to exist and be the user's
    else:
        job_id = getattr(body, "job_id", None)
        ids = [] if job_id is None or isinstance(body, RunEvent) else [job_id]
    return [j for j in ids if job_number(j) is not None]


def _fail(work: Work, exc: BaseException) -> None:
    if work.done.done():
        return
    if isinstance(work.body, GateCapacity | RunEvent):
        work.done.set_exception(exc)
        work.done.exception()  # retrieved: the consumer naks it
        return
    # The exception is in core's log; the sender learns only that sending again is safe.
    work.done.set_result(
        Rejected(
            to=MessageId(work.body.id),
            code=RejectCode.INTERNAL,
            detail="core could not record this command; it may be sent again with the same id",
        )
    )
