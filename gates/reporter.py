"""What one run reports: its events on the gate subjects and its log chunks (I/O).

Ids are deterministic so that whatever a restarted gate publishes again is dropped by
JetStream's de-duplication (and by core's inbox after the window): events
``<job_id>-<attempt>-<tag>``, output chunks ``<job_id>-<attempt>-<stream>-<offset>-<bytes>``,
system messages ``<job_id>-<attempt>-system-<ordinal>``.

Events and system messages are pipelined: ``send`` returns at once and the messages go out
one after the other, each once the previous one is acknowledged. Each is retried on its own,
with backoff, until it is acknowledged (or the gate stops), so a bus that is down for a while
delays a run's reports but never loses or poisons them. ``drain`` waits until all are
acknowledged. Output chunks are published directly, once; the caller retries them (its
offsets say what went out).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from enum import IntEnum
from typing import Any

import msgspec

from bus.connection import Bus
from gates.outcome import Verdict
from schemas import subjects
from schemas.gate import (
    LogChunk,
    RunEnded,
    RunEvent,
    RunStagingIn,
    RunStagingOut,
    RunStarted,
    StartRun,
)
from schemas.ids import GateName, MessageId
from schemas.jobs import StagedOutput
from schemas.subjects import LogStream

log = logging.getLogger("skyport.gates.reporter")
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # the delays between tries; the last one repeats


class Note(IntEnum):
    """Sky Port's own messages on the system log stream; the value is the chunk offset."""

    STAGING_IN = 0
    TERM = 2
    KILL = 3
    ENDED = 5


class RunReporter:
    """Publishes for the run of one StartRun, as gate ``gate``."""

    def __init__(self, bus: Bus, gate: str, start: StartRun) -> None:
        self.bus = bus
        self.gate = GateName(gate)
        self.start = start
        self.key = f"{start.job_id}-{start.attempt}"
        self._last: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    # -- events ----------------------------------------------------------------------------

    def staging_in(self, detail: str) -> None:
        self._event(RunStagingIn, detail=detail)

    def started(self, detail: str) -> None:
        self._event(RunStarted, detail=detail)

    def staging_out(self, exit_code: int | None) -> None:
        self._event(RunStagingOut, exit_code=exit_code)

    def ended(self, result: Verdict, outputs: tuple[StagedOutput, ...]) -> None:
        self._event(
            RunEnded,
            detail=result.detail,
            outcome=result.outcome,
            reason=result.reason,
            exit_code=result.exit_code,
            outputs=outputs,
        )

    def _event(self, kind: type[RunEvent], **fields: Any) -> None:
        """Build and send one report; its id is ``<job>-<attempt>-<tag>``."""
        tag = str(kind.__struct_config__.tag)
        event = kind(
            event_id=MessageId(f"{self.key}-{tag}"),
            at=time.time(),
            gate=self.gate,
            job_id=self.start.job_id,
            attempt=self.start.attempt,
            **fields,
        )
        self._send(subjects.gate_event(self.gate, tag), event, event.event_id)

    # -- logs ------------------------------------------------------------------------------

    def note(self, note: Note, text: str) -> None:
        """A line of Sky Port's own on the run's system log."""
        chunk = self._chunk(LogStream.SYSTEM, note.value, text + "\n")
        subject = subjects.log(self.start.owner, self.start.job_id, self.gate, LogStream.SYSTEM)
        self._send(subject, chunk, f"{self.key}-system-{note.value}")

    async def output(self, stream: LogStream, offset: int, nbytes: int, text: str) -> None:
        """Publish ``nbytes`` of a stdout/stderr file starting at ``offset``."""
        await self.bus.js_publish(
            subjects.log(self.start.owner, self.start.job_id, self.gate, stream),
            self._chunk(stream, offset, text),
            msg_id=f"{self.key}-{stream.value}-{offset}-{nbytes}",
        )

    def _chunk(self, stream: LogStream, offset: int, text: str) -> LogChunk:
        return LogChunk(
            job_id=self.start.job_id,
            attempt=self.start.attempt,
            stream=stream,
            offset=offset,
            data=text,
            at=time.time(),
        )

    # -- the pipeline ----------------------------------------------------------------------

    def _send(self, subject: str, msg: msgspec.Struct, msg_id: str) -> None:
        previous = self._last

        async def after_previous() -> None:
            if previous is not None:  # only its end matters here, not how it ended
                await asyncio.wait({previous})
            await self._publish(subject, msg, msg_id)

        task = asyncio.create_task(after_previous(), name=f"publish-{msg_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        self._last = task

    async def _publish(self, subject: str, msg: msgspec.Struct, msg_id: str) -> None:
        """Publish until acknowledged; the id makes a try that did go through harmless."""
        for attempt in itertools.count():
            try:
                await self.bus.js_publish(subject, msg, msg_id=msg_id)
            except Exception as exc:  # bus edge: retry while the connection recovers
                delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                if attempt < len(RETRY_S) or attempt % 60 == 0:
                    log.warning("publish %s failed (try %d): %r", msg_id, attempt + 1, exc)
                await asyncio.sleep(delay)
            else:
                if attempt:
                    log.info("publish %s went through on try %d", msg_id, attempt + 1)
                return

    async def drain(self) -> None:
        """Wait until everything sent so far is acknowledged."""
        if self._last is not None:
            await self._last

    def abandon(self) -> None:
        """Stop publishing (the gate is stopping, or the run is supervised anew; whoever
        resumes the run publishes again, under the same ids)."""
        for task in self._pending:
            task.cancel()
