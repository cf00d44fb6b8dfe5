"""JetStream streams and the object store of Sky Port, declared idempotently by core."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from schemas import subjects
from schemas.roster import Role, Roster

log = logging.getLogger("skyport.bus")
DAY = 24 * 3600.0

STREAMS: tuple[api.StreamConfig, ...] = (
    api.StreamConfig(
        name=subjects.STREAM_JOB_EVENTS,
        subjects=[subjects.ALL_JOB_EVENTS],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        duplicate_window=600.0,
    ),
    api.StreamConfig(
        name=subjects.STREAM_GATE_COMMANDS,
        subjects=[subjects.ALL_GATE_COMMANDS],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        duplicate_window=600.0,
    ),
    api.StreamConfig(
        name=subjects.STREAM_GATE_EVENTS,
        subjects=[subjects.ALL_GATE_EVENTS],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=7 * DAY,
        duplicate_window=600.0,
    ),
    api.StreamConfig(
        name=subjects.STREAM_LOGS,
        subjects=[subjects.ALL_LOGS],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=30 * DAY,
        max_bytes=8 * 1024**3,
        duplicate_window=600.0,
    ),
)


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the streams if missing; update them if they differ."""
    for config in STREAMS:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


async def ensure_buckets(js: JetStreamContext, roster: Roster, made: set[str]) -> None:
    """Create the files bucket of every user and admin of ``roster`` not in ``made`` (buckets
    made so far; updated). A revoked user's bucket stays: their jobs' outputs are kept."""
    for identity in roster.identities():
        if identity.role in (Role.USER, Role.ADMIN) and identity.name not in made:
            await js.create_object_store(subjects.files_bucket(identity.name))
            made.add(identity.name)


async def wait_for_streams(
    js: JetStreamContext, names: tuple[str, ...], component: str, poll: float = 0.2
) -> None:
    """Wait until core has declared ``names``: only core creates streams, and a component
    that starts first (or reconnects to a fresh server) must wait, not crash."""
    warned = False
    for name in names:
        while True:
            try:
                await js.stream_info(name)
                break
            except NotFoundError:
                if not warned:
                    log.info("%s: waiting for core to create stream %s", component, name)
                    warned = True
                await asyncio.sleep(poll)
