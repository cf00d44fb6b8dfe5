"""The signed bus: connect, seal and open messages, request/reply, JetStream in and out.

Every message leaving through ``Bus`` is signed; every message arriving is verified against
the roster before it is decoded. Refused messages are counted by reason, logged once each
with subject and sender, and never retried (JetStream messages are terminated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import FetchTimeoutError

from bus.ordered import OrderedReplay
from bus.rosterfile import ROSTER_POLL_S, follow, follow_file
from schemas.commands import AnyReply, RejectCode, Rejected, answers
from schemas.ids import MessageId
from schemas.roster import Identity, Roster, answerer
from schemas.subjects import Kind, inbox_of, parse, stream_of
from schemas.wire import SIGNER_HEADER, Refusal, Signer, Verifier, WireError

log = logging.getLogger("skyport.bus")


T = TypeVar("T")
_reply_decoder = msgspec.json.Decoder(AnyReply)
# Refusals that get no answer: the sender is not known, so nothing may be sent on its behalf.
_SILENT = frozenset({Refusal.UNSIGNED, Refusal.UNKNOWN_SIGNER, Refusal.BAD_SIGNATURE})
_encoder = msgspec.json.Encoder()


class BusError(Exception):
    """A bus operation failed (no responder, timeout, refused reply)."""


class RequestTimeoutError(BusError):
    """Nobody answered a request in time."""


@dataclass(frozen=True)
class Incoming(Generic[T]):
    """A verified, decoded message."""

    subject: str
    sender: Identity
    body: T


@dataclass
class Delivery(Generic[T]):
    """A verified JetStream message with its acknowledgement handles."""

    incoming: Incoming[T]
    msg: Msg

    @property
    def pending(self) -> int:
        """Messages left in the consumer after this one (0 means caught up)."""
        return int(self.msg.metadata.num_pending)

    @property
    def stream_seq(self) -> int:
        return int(self.msg.metadata.sequence.stream)

    async def ack(self) -> None:
        await self.msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        await self.msg.nak(delay=delay)


def _quiet_error_cb(component: str) -> Callable[[Exception], Awaitable[None]]:
    async def error_cb(exc: Exception) -> None:
        log.warning("%s: nats: %s", component, exc)

    return error_cb


class Bus:
    """A signed connection for one component identity."""

    def __init__(self, nc: Client, signer: Signer, roster: Roster, component: str) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.signer = signer
        self.verifier = Verifier(roster)
        self.component = component
        self.refusals: Counter[str] = Counter()
        self._roster_task: asyncio.Task[None] | None = None
        self._file_tasks: list[asyncio.Task[None]] = []

    def follow_roster(
        self,
        path: Path,
        every_s: float = ROSTER_POLL_S,
        on_change: Callable[[Roster], Awaitable[None]] | None = None,
    ) -> None:
        """Re-read the roster at ``path`` whenever it changes (``skyport user add/revoke``):
        a new identity is known, and a revoked one refused, within ``every_s``. Then await
        ``on_change`` with it (a failure is logged and retried at the next poll)."""

        async def use(roster: Roster) -> None:
            self.verifier = Verifier(roster)
            if on_change is not None:
                await on_change(roster)

        self._roster_task = asyncio.create_task(
            follow(path, use, self.component, every_s), name="roster"
        )

    def follow_file(
        self,
        path: Path,
        decode: Callable[[bytes], T],
        on_change: Callable[[T], Awaitable[None]],
        every_s: float = ROSTER_POLL_S,
    ) -> asyncio.Task[None]:
        """Await ``on_change`` with the decoded file at ``path`` whenever it changes (the
        accounts file, say); the task stops with the bus."""
        task = asyncio.create_task(
            follow_file(path, decode, on_change, self.component, every_s), name=str(path)
        )
        self._file_tasks.append(task)
        return task

    @classmethod
    async def connect(
        cls,
        url: str,
        signer: Signer,
        roster: Roster,
        component: str,
        tls: ssl.SSLContext | None = None,
        **opts: Any,
    ) -> Bus:
        """Connect as ``signer``'s identity; with ``tls`` (``bus.tls.client_context``) the
        server must present a certificate that context trusts."""
        own = roster.get(signer.public_key)
        if own is not None:  # replies come to this identity's own inbox, which only it reads
            opts.setdefault("inbox_prefix", inbox_of(own.name))
        if tls is not None:  # TLS first, as the server requires (bus.server.write_config)
            opts["tls"] = tls
            opts["tls_handshake_first"] = True
        nc = Client()
        try:
            await nc.connect(
                url,
                name=f"skyport-{component}",
                error_cb=_quiet_error_cb(component),
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; a float works
                **opts,
            )
        except BaseException:
            # nats-py leaves the socket of a failed first connection (a refused TLS handshake)
            # open, and Client.close() would wait on a connection that never was
            transport = getattr(nc, "_transport", None)
            if transport is not None:
                transport.close()
            raise
        return cls(nc, signer, roster, component)

    async def close(self) -> None:
        tasks = [*self._file_tasks, *([self._roster_task] if self._roster_task else [])]
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self.nc.is_closed:
            await self.nc.drain()

    # -- sealing ---------------------------------------------------------------------------

    def seal(self, subject: str, msg: msgspec.Struct) -> tuple[bytes, dict[str, str]]:
        payload = _encoder.encode(msg)
        return payload, self.signer.headers(subject, payload)

    def open(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None,
        decoder: msgspec.json.Decoder[T],
    ) -> Incoming[T]:
        """Verify, then decode. Raises WireError (refused) or msgspec errors (malformed)."""
        sender = self.verifier.verify(subject, payload, headers)
        return Incoming(subject, sender, decoder.decode(payload))

    def _claimed_sender(self, headers: Mapping[str, str] | None) -> str:
        """The roster name of the key a message says signed it ("" if none is known)."""
        known = self.verifier.roster.get((headers or {}).get(SIGNER_HEADER, ""))
        return known.name if known is not None else ""

    def refuse(self, err: WireError | msgspec.MsgspecError, subject: str) -> Refusal:
        reason = err.reason if isinstance(err, WireError) else Refusal.MALFORMED
        self.refusals[reason.value] += 1
        count = self.refusals[reason.value]
        if count <= 10 or count % 1000 == 0:  # bounded: a flood must not flood the log
            log.warning(
                "%s refused message #%d (%s) on %s: %s",
                self.component,
                count,
                reason.value,
                subject,
                err,
            )
        return reason

    # -- core NATS ---------------------------------------------------------------------------

    async def publish(self, subject: str, msg: msgspec.Struct) -> None:
        payload, headers = self.seal(subject, msg)
        await self.nc.publish(subject, payload, headers=headers)

    async def request(self, subject: str, msg: msgspec.Struct, timeout: float = 10.0) -> AnyReply:
        """Send a signed request; return the verified reply of core (of the scheduler, for
        its queries)."""
        payload, headers = self.seal(subject, msg)
        try:
            raw = await self.nc.request(subject, payload, timeout=timeout, headers=headers)
        except NatsTimeoutError as exc:
            raise RequestTimeoutError(f"no reply on {subject} within {timeout} s") from exc
        except nats.errors.NoRespondersError as exc:
            raise RequestTimeoutError(f"nobody serves {subject}") from exc
        try:
            reply = self.open(raw.subject, raw.data, raw.headers, _reply_decoder)
        except (WireError, msgspec.MsgspecError) as exc:
            self.refuse(exc, raw.subject)
            raise BusError(f"refused the reply to {subject}: {exc}") from exc
        expected = answerer(subject)
        if reply.sender.role is not expected:
            raise BusError(f"reply to {subject} not signed by {expected}")
        body: AnyReply = reply.body
        request_id = getattr(msg, "id", None)
        if request_id is not None and not answers(body, request_id):
            raise BusError(f"the reply on {subject} answers another request")
        return body

    async def serve(
        self,
        subject: str,
        queue: str,
        decoder: msgspec.json.Decoder[T],
        handler: Callable[[Incoming[T]], Awaitable[msgspec.Struct]],
        max_in_flight: int = 1,
    ) -> Subscription:
        """Answer requests on ``subject``; refused or malformed ones get a signed Rejected.

        With ``max_in_flight`` > 1 up to that many requests are handled concurrently (each in
        its own task), so that a handler that batches work (group commit) sees a batch.
        """

        async def on_msg(raw: Msg) -> None:
            to = parse(raw.reply) if raw.reply else None
            inbox_owner = to.a if to is not None and to.kind is Kind.INBOX else ""
            if raw.reply and not inbox_owner:
                # Core's signed reply must never land on a subject the sender picked...
                self.refuse(WireError(Refusal.BAD_REPLY, raw.subject, raw.reply[:80]), raw.subject)
                return
            try:
                incoming = self.open(raw.subject, raw.data, raw.headers, decoder)
            except (WireError, msgspec.MsgspecError) as exc:
                reason = self.refuse(exc, raw.subject)
                if reason in _SILENT:
                    return  # nobody we know sent it: no answer
                if raw.reply and inbox_owner != self._claimed_sender(raw.headers):
                    return  # ...nor on another identity's inbox (refused and counted above)
                code = (
                    RejectCode.BAD_REQUEST
                    if reason is Refusal.MALFORMED
                    else RejectCode.NOT_ALLOWED
                )
                reply: msgspec.Struct = Rejected(to=MessageId(""), code=code, detail=str(exc))
            else:
                if raw.reply and inbox_owner != incoming.sender.name:
                    # ...nor on another identity's inbox: its owner would read an answer
                    # (and the sender act) on someone else's behalf
                    bad = WireError(Refusal.BAD_REPLY, raw.subject, raw.reply[:80])
                    self.refuse(bad, raw.subject)
                    return
                try:
                    reply = await handler(incoming)
                except Exception as exc:  # message-loop boundary: keep serving
                    log.exception("%s: handler failed on %s", self.component, raw.subject)
                    reply = Rejected(to=MessageId(""), code=RejectCode.INTERNAL, detail=str(exc))
            if raw.reply:
                try:
                    await self.publish(raw.reply, reply)
                except nats.errors.MaxPayloadError:
                    log.error("%s: reply on %s too large to send", self.component, raw.subject)
                    too_big = Rejected(
                        to=MessageId(""), code=RejectCode.INTERNAL, detail="too large"
                    )
                    await self.publish(raw.reply, too_big)

        if max_in_flight <= 1:
            sub = await self.nc.subscribe(subject, queue=queue, cb=on_msg)
            await self.nc.flush()  # serving once this returns: the server has the interest
            return sub
        slots = asyncio.Semaphore(max_in_flight)
        tasks: set[asyncio.Task[None]] = set()

        async def run(raw: Msg) -> None:
            try:
                await on_msg(raw)
            finally:
                slots.release()

        async def on_msg_concurrent(raw: Msg) -> None:
            await slots.acquire()
            task = asyncio.create_task(run(raw))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        sub = await self.nc.subscribe(subject, queue=queue, cb=on_msg_concurrent)
        await self.nc.flush()
        return sub

    # -- JetStream ---------------------------------------------------------------------------

    async def js_publish(self, subject: str, msg: msgspec.Struct, msg_id: str) -> int:
        """Publish durably with ``Nats-Msg-Id`` de-duplication; return the stream sequence."""
        payload, headers = self.seal(subject, msg)
        headers["Nats-Msg-Id"] = msg_id
        ack = await self.js.publish(subject, payload, headers=headers)
        return int(ack.seq)

    async def js_publish_many(
        self, items: list[tuple[str, msgspec.Struct, str]], timeout: float = 10.0
    ) -> list[int]:
        """Publish (subject, message, msg_id) items durably, pipelined, in the given order;
        return their stream sequences. Raises if any was not acknowledged in time."""
        futures = []
        for subject, msg, msg_id in items:
            payload, headers = self.seal(subject, msg)
            headers["Nats-Msg-Id"] = msg_id
            futures.append(await self.js.publish_async(subject, payload, headers=headers))
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        return [int(ack.seq) for ack in acks]

    async def pull(
        self,
        stream: str,
        durable: str,
        filter_subject: str,
        decoder: msgspec.json.Decoder[T],
        batch: int = 256,
        ack_wait: float = 30.0,
    ) -> AsyncIterator[list[Delivery[T]]]:
        """Yield batches from a durable pull consumer; refused messages are terminated."""
        config = api.ConsumerConfig(
            name=durable,  # named: the filter is then part of the API subject, so the
            durable_name=durable,  # server's permissions can bind it (docs/security.md)
            filter_subject=filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=10_000,
        )
        sub = await self.js.pull_subscribe(filter_subject, durable, stream=stream, config=config)
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch, timeout=1.0)
                except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                    continue
                yield await self._verified(msgs, decoder)
        finally:
            await sub.unsubscribe()

    async def _verified(
        self, msgs: list[Msg], decoder: msgspec.json.Decoder[T]
    ) -> list[Delivery[T]]:
        out: list[Delivery[T]] = []
        for raw in msgs:
            try:
                out.append(Delivery(self.open(raw.subject, raw.data, raw.headers, decoder), raw))
            except (WireError, msgspec.MsgspecError) as exc:
                self.refuse(exc, raw.subject)
                await raw.term()
        return out

    async def replay(
        self,
        filter_subject: str,
        decoder: msgspec.json.Decoder[T],
        handler: Callable[[Delivery[T]], Awaitable[None]],
        deliver_new_only: bool = False,
    ) -> OrderedReplay:
        """Ordered, ephemeral push consumer over a stream from its start (or new messages).

        Its consumers are named, so the filter travels in the API subject and the server's
        permissions decide whether this identity may read it (``bus.ordered``)."""

        async def on_msg(raw: Msg) -> None:
            try:
                delivery = Delivery(self.open(raw.subject, raw.data, raw.headers, decoder), raw)
            except (WireError, msgspec.MsgspecError) as exc:
                self.refuse(exc, raw.subject)
                return
            try:
                await handler(delivery)
            except Exception:  # message-loop boundary: keep consuming
                log.exception("%s: handler failed on %s", self.component, raw.subject)

        replay = OrderedReplay(
            self.nc, self.js, stream_of(filter_subject), filter_subject, on_msg, deliver_new_only
        )
        return await replay.start()
