"""The outbox relay: the only publisher of core's events and gate commands.

It publishes the events table by global position and the outbox table to JetStream with
``Nats-Msg-Id`` = event id (or command id), and then advances a persisted cursor. A crash
between commit and publish loses nothing (the cursor has not moved) and the re-publish is
de-duplicated by JetStream. A batch is pipelined in position order on one connection, so the
stream keeps the store's order.

What a commit appended is handed over in memory (``offer``) with its positions; the relay
publishes from there when it continues exactly where the relay is, and reads the tables
otherwise (at start, after a gap, or when it fell far behind). Reading back each commit cost
about a millisecond of core's loop per batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any, TypeVar

import msgspec

from bus.connection import Bus
from core.projections import tag_of
from core.store import Committed, Store
from schemas import subjects
from schemas.events import AnyJobEvent
from schemas.gate import AnyGateCommand

log = logging.getLogger("skyport.core.relay")

EVENTS_CURSOR = "events"
OUTBOX_CURSOR = "outbox"
R = TypeVar("R", bound=tuple[Any, ...])
HeldEvent = tuple[int, str, AnyJobEvent]  # position, owner, event
HeldCommand = tuple[int, str, AnyGateCommand]  # position, subject, command
MAX_HELD = 100_000  # rows held for publishing; beyond that the relay reads the store
_command_decoder = msgspec.json.Decoder(AnyGateCommand)


class Relay:
    """Publishes what the store committed; woken by ``wake`` (and a fallback poll)."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        wake: asyncio.Event,
        batch: int = 1000,
        save_every_s: float = 0.5,
    ) -> None:
        self.bus = bus
        self.store = store
        self.wake = wake
        self.batch = batch
        self.save_every_s = save_every_s
        self.events_pos = 0
        self.outbox_pos = 0
        self.published = 0
        self._saved = (0, 0)
        self._saved_at = 0.0
        self._held_events: collections.deque[HeldEvent] = collections.deque()
        self._held_commands: collections.deque[HeldCommand] = collections.deque()
        self._events_caught_up = False  # read the store until a read finds its end
        self._outbox_caught_up = False

    def resync(self) -> None:
        """A commit ended without an answer: the store may hold rows never offered."""
        self._events_caught_up = False
        self._outbox_caught_up = False
        self.wake.set()

    def offer(self, committed: Committed) -> None:
        """What a commit appended, in position order; wakes the relay."""
        if len(self._held_events) + len(committed.events) > MAX_HELD:
            self._held_events.clear()  # far behind (NATS down?): the tables have it all
            self._events_caught_up = False
        if len(self._held_commands) + len(committed.outbox) > MAX_HELD:
            self._held_commands.clear()
            self._outbox_caught_up = False
        self._held_events.extend(committed.events)
        self._held_commands.extend(committed.outbox)
        self.wake.set()

    async def run(self, poll_s: float = 1.0) -> None:
        self.events_pos = await self.store.run_read(self.store.cursor, EVENTS_CURSOR)
        self.outbox_pos = await self.store.run_read(self.store.cursor, OUTBOX_CURSOR)
        self._saved = (self.events_pos, self.outbox_pos)
        try:
            await self._loop(poll_s)
        finally:  # stopping: leave nothing to publish twice after a long pause
            with contextlib.suppress(Exception):
                await asyncio.shield(self.save_cursors(force=True))

    async def _loop(self, poll_s: float) -> None:
        while True:
            try:
                while await self.pump():
                    await self.save_cursors(force=False)
                await self.save_cursors(force=False)
            except Exception:  # loop boundary: NATS down or slow; the cursor keeps our place
                log.exception("relay: publish failed; retrying")
                await asyncio.sleep(poll_s)
                continue
            # A cursor not saved yet (throttled) is saved when the throttle ends, busy or not.
            unsaved = (self.events_pos, self.outbox_pos) != self._saved
            due = self._saved_at + self.save_every_s - time.monotonic()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when it is
            # cancelled just as the event is set, and the relay then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due) if unsaved else poll_s):
                    await self.wake.wait()

    async def pump(self) -> bool:
        """Publish one batch of events and one of gate commands; True if anything moved."""
        self.wake.clear()
        moved = await self._events()
        return await self._outbox() or moved

    async def save_cursors(self, force: bool) -> None:
        """Persist how far the relay got, at most every ``save_every_s`` unless forced: a
        crash only means that up to that much is published again, and JetStream drops it."""
        now = time.monotonic()
        current = (self.events_pos, self.outbox_pos)
        if current == self._saved or (not force and now - self._saved_at < self.save_every_s):
            return
        await self.store.run_write(
            self.store.set_cursors,
            {
                EVENTS_CURSOR: self.events_pos,
                OUTBOX_CURSOR: self.outbox_pos,
            },
        )
        self._saved, self._saved_at = current, now

    async def _events(self) -> bool:
        rows = _take(self._held_events, self.events_pos, self.batch, self._events_caught_up)
        if rows is None:
            rows = await self.store.run_small_read(
                self.store.events_after, self.events_pos, self.batch
            )
            self._events_caught_up = len(rows) < self.batch
        if not rows:
            return False

        await self.bus.js_publish_many(
            [
                (subjects.job_event(owner, event.job_id, tag_of(event)), event, event.event_id)
                for _, owner, event in rows
            ]
        )
        self.events_pos = rows[-1][0]
        self.published += len(rows)
        return True

    async def _outbox(self) -> bool:
        rows = _take(self._held_commands, self.outbox_pos, self.batch, self._outbox_caught_up)
        if rows is None:
            stored = await self.store.run_small_read(
                self.store.outbox_after, self.outbox_pos, self.batch
            )
            self._outbox_caught_up = len(stored) < self.batch
            rows = [(pos, subject, _command_decoder.decode(raw)) for pos, subject, _, raw in stored]
        if not rows:
            return False

        await self.bus.js_publish_many(
            [(subject, command, command.id) for _, subject, command in rows]
        )
        self.outbox_pos = rows[-1][0]
        return True


def _take(held: collections.deque[R], position: int, limit: int, caught_up: bool) -> list[R] | None:
    """Up to ``limit`` held rows right after ``position``; [] if none is held and the store
    has nothing more (``caught_up``: every commit since it was last read was offered); None
    if the rows that follow must be read from the store."""
    while held and held[0][0] <= position:
        held.popleft()  # published already (read from the store)
    if not held:
        return [] if caught_up else None
    if held[0][0] != position + 1:
        return None  # a gap: what lies between is only in the store
    return [held.popleft() for _ in range(min(limit, len(held)))]
