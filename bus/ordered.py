"""An ordered JetStream replay whose consumers carry names of our own.

nats-py's ordered consumer creates unnamed consumers, on the bare
``$JS.API.CONSUMER.CREATE.<stream>`` subject, which carries no filter: the server's
permissions could then not tell a user's replay of their own jobs from a replay of everyone's.
This one names every consumer it creates, so the filter is part of the API subject
(``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``) and a grant can bind it
(docs/security.md). Otherwise it behaves like an ordered consumer: an ephemeral push consumer
delivering to the caller's own inbox, without acks, in memory, with flow control and idle
heartbeats; on a gap, a heartbeat that disagrees, or two heartbeat periods with nothing
received, it is replaced by a new one (a new name) that resumes after the last message
handled.

One worker task does everything that changes state: it takes what the subscriptions receive
from a queue (their callbacks only enqueue), hands messages on in order, and replaces the
consumer itself. So a replacement never cancels a handler half-way, and a slow handler does
not look like a dead consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

log = logging.getLogger("skyport.bus")

HEARTBEAT_S = 5.0
INACTIVE_S = 30.0  # the server drops a consumer nobody listens to after this long
_STATUS, _LAST_CONSUMER = api.Header.STATUS.value, api.Header.LAST_CONSUMER.value
_STALLED = api.Header.CONSUMER_STALLED.value
_TICK = object()  # the watchdog's turn, queued like a message
_STOP = object()


class OrderedReplay:
    """One replay of ``filter_subject`` in ``stream``; ``start`` it, then ``unsubscribe``."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        filter_subject: str,
        on_msg: Callable[[Msg], Awaitable[None]],
        deliver_new_only: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._nc, self._js, self._stream, self._filter = nc, js, stream, filter_subject
        self._on_msg = on_msg
        self._new_only = deliver_new_only
        self._heartbeat_s = heartbeat_s
        self._queue: asyncio.Queue[tuple[str, Msg] | object] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._name = ""  # the current consumer; deliveries of any other are ignored
        self._stream_seq = 0  # last stream sequence handled
        self._consumer_seq = 0  # last delivery sequence of the current consumer
        self._heard = False  # the current consumer sent something since the last tick
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def deliver_subject(self) -> str:
        """Where the current consumer delivers (an inbox of this connection)."""
        return self._sub.subject if self._sub is not None else ""

    async def start(self) -> OrderedReplay:
        """Create the first consumer; raises what the server answers (no stream, denied)."""
        await self._create()
        self._tasks = [
            asyncio.create_task(self._work(), name=f"replay {self._filter}"),
            asyncio.create_task(self._watchdog(), name=f"replay watchdog {self._filter}"),
        ]
        return self

    async def unsubscribe(self) -> None:
        """Stop: no handler runs once this returns (unless called from a handler)."""
        self._queue.put_nowait(_STOP)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._name = ""
        await self._drop_subscription()

    async def _create(self) -> None:
        """A new consumer (and inbox subscription) from just after what was handled."""
        name = f"replay-{uuid.uuid4().hex}"
        self._name = name  # from here on, what older consumers deliver is ignored
        await self._drop_subscription()
        deliver = self._nc.new_inbox()

        async def receive(msg: Msg) -> None:  # runs in the subscription's task: only enqueue
            if name == self._name:
                self._heard = True
                self._queue.put_nowait((name, msg))

        self._sub = await self._nc.subscribe(deliver, cb=receive)
        self._consumer_seq = 0
        self._heard = True
        if self._stream_seq:
            policy, start = api.DeliverPolicy.BY_START_SEQUENCE, self._stream_seq + 1
        else:
            policy = api.DeliverPolicy.NEW if self._new_only else api.DeliverPolicy.ALL
            start = None
        config = api.ConsumerConfig(
            name=name,
            deliver_subject=deliver,
            filter_subject=self._filter,
            deliver_policy=policy,
            opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=self._heartbeat_s,
            inactive_threshold=INACTIVE_S,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            info = await self._js.add_consumer(self._stream, config)
        except BaseException:
            await self._drop_subscription()
            raise
        if not self._stream_seq and info.delivered is not None:
            # new-only: what comes is after this, even if this consumer is replaced early
            self._stream_seq = info.delivered.stream_seq or 0

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closing
                await sub.unsubscribe()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple):  # (consumer, message), as receive() enqueues it
                name, msg = item
                if name == self._name:
                    await self._handle(msg)
            elif item is _TICK:
                if not self._heard and self._nc.is_connected:
                    await self._reset("nothing heard for two heartbeats")
                self._heard = False
            else:  # _STOP
                return

    async def _handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        if not msg.data and headers.get(_STATUS) == "100":
            await self._control(msg, headers)
            return
        try:
            meta = msg.metadata
        except Exception:  # not a JetStream delivery: nothing of ours
            return
        if meta.sequence.consumer != self._consumer_seq + 1:
            await self._reset(f"gap: delivery {meta.sequence.consumer} after {self._consumer_seq}")
            return
        self._consumer_seq = meta.sequence.consumer
        await self._on_msg(msg)
        self._stream_seq = meta.sequence.stream  # handled: a replacement resumes after it

    async def _control(self, msg: Msg, headers: dict[str, str]) -> None:
        """A heartbeat (check nothing was missed) or a flow-control request (answer it)."""
        if msg.reply:  # flow control: the server waits for this before sending more
            await self._nc.publish(msg.reply, b"")
            return
        stalled = headers.get(_STALLED)
        if stalled:
            await self._nc.publish(stalled, b"")
        last = headers.get(_LAST_CONSUMER)
        if last is not None and last.isdigit() and int(last) != self._consumer_seq:
            await self._reset(f"heartbeat says delivery {last}, handled {self._consumer_seq}")

    async def _reset(self, why: str) -> None:
        log.info("replay of %s resumes after %d: %s", self._filter, self._stream_seq, why)
        try:
            await self._create()
        except Exception as exc:  # the next tick tries again
            log.warning("replay of %s not resumed yet: %s", self._filter, exc)
            self._heard = False

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s * 2)
            self._queue.put_nowait(_TICK)
