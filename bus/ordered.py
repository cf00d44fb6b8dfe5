"""An ordered JetStream replay whose consumers carry names of our own.

nats-py's ordered consumer creates unnamed consumers, on the bare
``$JS.API.CONSUMER.CREATE.<stream>`` subject, which carries no filter: the server's
permissions could then not tell a user's replay of their own jobs from a replay of everyone's.
This one names every consumer it creates, so the filter is part of the API subject
(``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``) and a grant can bind it
(docs/security.md). Otherwise it behaves like an ordered consumer: an ephemeral push consumer
delivering to the caller's own inbox, without acks, in memory, with flow control and idle
heartbeats; on a gap or two missed heartbeats it is replaced by a new one (a new name) that
resumes after the last stream sequence seen.
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
_STATUS, _DESCRIPTION = api.Header.STATUS.value, api.Header.DESCRIPTION.value
_LAST_CONSUMER, _STALLED = api.Header.LAST_CONSUMER.value, api.Header.CONSUMER_STALLED.value


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
        self._sub: Subscription | None = None
        self._name = ""
        self._stream_seq = 0  # last stream sequence handed on
        self._consumer_seq = 0  # last delivery sequence of the current consumer
        self._active = False
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self._resetting = asyncio.Lock()

    async def start(self) -> OrderedReplay:
        """Create the first consumer; raises what the server answers (no stream, denied)."""
        await self._create()
        self._watch = asyncio.create_task(self._watchdog(), name=f"replay {self._filter}")
        return self

    async def unsubscribe(self) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._drop_subscription()

    async def _create(self) -> None:
        """A new consumer (and inbox subscription) from just after what was seen."""
        await self._drop_subscription()
        deliver = self._nc.new_inbox()
        name = self._name = f"replay-{uuid.uuid4().hex}"

        async def receive(msg: Msg) -> None:
            if name == self._name:  # else a late message for a consumer already replaced
                await self._receive(msg)

        self._sub = await self._nc.subscribe(deliver, cb=receive)
        self._consumer_seq = 0
        if self._stream_seq:
            policy, start = api.DeliverPolicy.BY_START_SEQUENCE, self._stream_seq + 1
        else:
            policy = api.DeliverPolicy.NEW if self._new_only else api.DeliverPolicy.ALL
            start = None
        config = api.ConsumerConfig(
            name=self._name,
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
            await self._js.add_consumer(self._stream, config)
        except BaseException:
            await self._drop_subscription()
            raise
        self._active = True

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closing
                await sub.unsubscribe()

    async def _receive(self, msg: Msg) -> None:
        self._active = True
        headers = msg.headers or {}
        if not msg.data and headers.get(_STATUS) == "100":
            await self._control(msg, headers)
            return
        try:
            meta = msg.metadata
        except Exception:  # not a JetStream delivery: nothing of ours
            return
        if meta.sequence.consumer != self._consumer_seq + 1:
            await self._reset(f"gap at delivery {meta.sequence.consumer}")
            return
        self._consumer_seq = meta.sequence.consumer
        self._stream_seq = meta.sequence.stream
        await self._on_msg(msg)

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
            await self._reset(f"heartbeat says delivery {last}, seen {self._consumer_seq}")

    async def _reset(self, why: str) -> None:
        async with self._resetting:  # the watchdog and a delivery may both find a gap
            if self._closed:
                return
            log.info("replay of %s resumes after %d: %s", self._filter, self._stream_seq, why)
            try:
                await self._create()
            except Exception as exc:  # the watchdog tries again
                log.warning("replay of %s not resumed yet: %s", self._filter, exc)
                self._active = False

    async def _watchdog(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._heartbeat_s * 2)
            if not self._active and not self._closed and self._nc.is_connected:
                await self._reset("no heartbeat")
            self._active = False
