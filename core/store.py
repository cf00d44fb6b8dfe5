"""The SQL event store of core: events, inbox, job projection with snapshots, outbox, gates.

The only module that talks SQL. Tables are SQLModel classes; statements are SQLAlchemy Core
(``executemany`` is ~10x faster than ORM sessions). Writes are synchronous and meant for one
writer thread (``Store.run_write``); reads may run in any thread. SQLite gets WAL with
``synchronous=FULL``: a reply to a submission means the event survived power loss, not only a
process crash. Any other SQLAlchemy URL (PostgreSQL) works with the same tables.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from core.batch import Commit
from core.job import Job, job_number
from core.projections import summary, tag_of
from schemas.events import AnyJobEvent, JobUsageRecorded
from schemas.gate import AnyGateCommand, GateCapacity
from schemas.ids import JobId
from schemas.jobs import TERMINAL_STATES, JobState

T = TypeVar("T")


class StoreError(Exception):
    """The store could not do what was asked."""


class ConcurrencyError(StoreError):
    """An event with this (stream, version) or id exists: someone else appended first."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"optimistic concurrency conflict: {detail}")
        self.detail = detail


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (sa.UniqueConstraint("stream_id", "version"),)
    position: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    stream_id: str
    version: int
    type: str
    owner: str
    at: float
    payload: bytes


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    key: str = Field(primary_key=True)
    reply: bytes


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"
    job_id: int = Field(primary_key=True)
    owner: str = Field(index=True)
    name: str = Field(index=True)
    state: str = Field(index=True)
    finished: bool = Field(index=True)
    version: int
    summary: bytes
    snapshot: bytes


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    position: int | None = Field(default=None, primary_key=True)
    command_id: str
    job_id: str
    subject: str
    payload: bytes


class CursorRow(SQLModel, table=True):
    __tablename__ = "cursors"
    name: str = Field(primary_key=True)
    position: int


class UsageRow(SQLModel, table=True):
    """One attempt's usage (a ``JobUsageRecorded``), for ``skyport usage``."""

    __tablename__ = "usage"
    event_id: str = Field(primary_key=True)
    job_id: int = Field(index=True)
    owner: str = Field(index=True)
    account: str = Field(index=True)
    ended_at: float = Field(index=True)
    node_hours: float
    cost: float


class GateRow(SQLModel, table=True):
    __tablename__ = "gates"
    gate: str = Field(primary_key=True)
    capacity: bytes


EVENTS: sa.Table = EventRow.__table__  # type: ignore[attr-defined]
INBOX: sa.Table = InboxRow.__table__  # type: ignore[attr-defined]
JOBS: sa.Table = JobRow.__table__  # type: ignore[attr-defined]
OUTBOX: sa.Table = OutboxRow.__table__  # type: ignore[attr-defined]
CURSORS: sa.Table = CursorRow.__table__  # type: ignore[attr-defined]
GATES: sa.Table = GateRow.__table__  # type: ignore[attr-defined]
USAGE: sa.Table = UsageRow.__table__  # type: ignore[attr-defined]

_enc = msgspec.json.Encoder()
_job_dec = msgspec.json.Decoder(Job)
_event_dec = msgspec.json.Decoder(AnyJobEvent)
_gate_dec = msgspec.json.Decoder(GateCapacity)
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000")


@dataclass
class Committed:
    """What one commit appended for the relay: (position, owner, event) and (position,
    subject, command), in position order."""

    events: list[tuple[int, str, AnyJobEvent]] = field(default_factory=list)
    outbox: list[tuple[int, str, AnyGateCommand]] = field(default_factory=list)


def open_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get WAL and full fsync on commit."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})

        @sa_event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            for pragma in _SQLITE_PRAGMAS:
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Store:
    """The event store. Sync methods; ``run_write``/``run_read`` move them off the loop."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        SQLModel.metadata.create_all(
            self.engine, tables=[EVENTS, INBOX, JOBS, OUTBOX, CURSORS, GATES, USAGE]
        )
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="core-store")
        # SQLite answers a small indexed read from the page cache in well under 0.1 ms; handing
        # it to a thread costs more (the hand-off waits for the GIL), so such reads run inline.
        self._inline_small_reads = self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.engine.dispose()

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write in the one writer thread (SQLite has one writer anyway)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def run_small_read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read of a few indexed rows: inline for SQLite, in a thread for a server."""
        if self._inline_small_reads:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    # -- start-up -------------------------------------------------------------------------

    def load_active(self) -> list[Job]:
        """Snapshots of every job that is not finished (start-up replays nothing)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(JOBS.c.snapshot).where(JOBS.c.finished.is_(False)))
            return [_job_dec.decode(r.snapshot) for r in rows]

    def load_gates(self) -> dict[str, GateCapacity]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(GATES.c.capacity))
            caps = [_gate_dec.decode(r.capacity) for r in rows]
        return {c.gate: c for c in caps}

    def last_job_id(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(JOBS.c.job_id))).scalar()
        return int(value or 0)

    # -- the write path -------------------------------------------------------------------

    def lookup(
        self, keys: Sequence[str], job_ids: Iterable[JobId]
    ) -> tuple[dict[str, bytes], dict[JobId, Job]]:
        """Stored replies of seen inbox keys, and snapshots of jobs not held in memory."""
        ids = [n for n in map(job_number, job_ids) if n is not None]
        with self.engine.connect() as conn:
            seen: dict[str, bytes] = {}
            for chunk in _chunks(list(keys), 500):
                q = sa.select(INBOX.c.key, INBOX.c.reply).where(INBOX.c.key.in_(chunk))
                seen.update({r.key: r.reply for r in conn.execute(q)})
            jobs: dict[JobId, Job] = {}
            for chunk_ids in _chunks(ids, 500):
                q = sa.select(JOBS.c.snapshot).where(JOBS.c.job_id.in_(chunk_ids))
                for r in conn.execute(q):
                    job = _job_dec.decode(r.snapshot)
                    jobs[job.job_id] = job
        return seen, jobs

    def commit(self, c: Commit) -> Committed:
        """Append a batch in one transaction; ConcurrencyError if an event already exists.
        Returns what the relay publishes, with the positions the store gave it."""
        try:
            with self.engine.begin() as conn:
                return self._write(conn, c)
        except IntegrityError as exc:
            raise ConcurrencyError(str(exc.orig)) from exc

    def _write(self, conn: sa.Connection, c: Commit) -> Committed:
        done = Committed()
        if c.events:
            positions = conn.execute(
                EVENTS.insert().returning(EVENTS.c.position, sort_by_parameter_order=True),
                [_event_row(job, ev) for job, ev in c.events],
            ).scalars()
            done.events = [
                (pos, job.owner, ev) for pos, (job, ev) in zip(positions, c.events, strict=True)
            ]
        usage = [_usage_row(ev) for _, ev in c.events if isinstance(ev, JobUsageRecorded)]
        if usage:
            conn.execute(USAGE.insert(), usage)
        if c.inbox:
            conn.execute(INBOX.insert(), [{"key": k, "reply": v} for k, v in c.inbox.items()])
        new = [_job_row(j) for i, j in c.jobs.items() if i in c.new_jobs]
        old = [_job_row(j) for i, j in c.jobs.items() if i not in c.new_jobs]
        if new:
            conn.execute(JOBS.insert(), new)
        if old:
            conn.execute(
                JOBS.update()
                .where(JOBS.c.job_id == sa.bindparam("b_job_id"))
                .values({k: sa.bindparam(f"b_{k}") for k in _JOB_COLUMNS if k != "job_id"}),
                [{f"b_{k}": v for k, v in row.items()} for row in old],
            )
        if c.outbox:
            positions = conn.execute(
                OUTBOX.insert().returning(OUTBOX.c.position, sort_by_parameter_order=True),
                [
                    {
                        "command_id": o.command.id,
                        "job_id": o.command.job_id,
                        "subject": o.subject,
                        "payload": _enc.encode(o.command),
                    }
                    for o in c.outbox
                ],
            ).scalars()
            done.outbox = [
                (pos, o.subject, o.command) for pos, o in zip(positions, c.outbox, strict=True)
            ]
        for gate, cap in c.gates.items():
            conn.execute(GATES.delete().where(GATES.c.gate == gate))
            conn.execute(GATES.insert().values(gate=gate, capacity=_enc.encode(cap)))
        return done

    def usage_totals(
        self, since: float | None, until: float | None, owner: str | None
    ) -> list[tuple[str, str, int, float, float]]:
        """(owner, account, jobs, node-hours, cost) of the attempts that ended in
        [since, until), per owner and account, in that order."""
        u = USAGE.c
        q = sa.select(
            u.owner,
            u.account,
            sa.func.count(sa.distinct(u.job_id)),
            sa.func.sum(u.node_hours),
            sa.func.sum(u.cost),
        ).group_by(u.owner, u.account)
        if since is not None:
            q = q.where(u.ended_at >= since)
        if until is not None:
            q = q.where(u.ended_at < until)
        if owner is not None:
            q = q.where(u.owner == owner)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(u.owner, u.account)).all()
        return [(r[0], r[1], int(r[2]), float(r[3] or 0), float(r[4] or 0)) for r in rows]

    def spent_since(self, scope: str, name: str, since: float) -> float:
        """What the attempts of user (or account) ``name`` that ended from ``since`` cost."""
        u = USAGE.c
        column = u.owner if scope == "user" else u.account
        q = sa.select(sa.func.sum(u.cost)).where(column == name, u.ended_at >= since)
        with self.engine.connect() as conn:
            return float(conn.execute(q).scalar() or 0)

    # -- relay ----------------------------------------------------------------------------

    def cursor(self, name: str) -> int:
        with self.engine.connect() as conn:
            q = sa.select(CURSORS.c.position).where(CURSORS.c.name == name)
            value = conn.execute(q).scalar()
        return int(value or 0)

    def set_cursor(self, name: str, position: int) -> None:
        self.set_cursors({name: position})

    def set_cursors(self, positions: dict[str, int]) -> None:
        """Store several cursors in one transaction."""
        with self.engine.begin() as conn:
            for name, position in positions.items():
                done = conn.execute(
                    CURSORS.update().where(CURSORS.c.name == name).values(position=position)
                )
                if done.rowcount == 0:
                    conn.execute(CURSORS.insert().values(name=name, position=position))

    def events_after(self, position: int, limit: int) -> list[tuple[int, str, AnyJobEvent]]:
        """(position, owner, event) of the events after ``position``, in order."""
        q = (
            sa.select(EVENTS.c.position, EVENTS.c.owner, EVENTS.c.payload)
            .where(EVENTS.c.position > position)
            .order_by(EVENTS.c.position)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(r.position, r.owner, _event_dec.decode(r.payload)) for r in rows]

    def outbox_after(self, position: int, limit: int) -> list[tuple[int, str, str, bytes]]:
        """(position, subject, job id, command JSON) of gate commands after ``position``."""
        q = (
            sa.select(OUTBOX.c.position, OUTBOX.c.subject, OUTBOX.c.job_id, OUTBOX.c.payload)
            .where(OUTBOX.c.position > position)
            .order_by(OUTBOX.c.position)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(r.position, r.subject, r.job_id, r.payload) for r in rows]

    # -- queries --------------------------------------------------------------------------

    def list_jobs(
        self,
        states: Sequence[JobState],
        include_finished: bool,
        user: str | None,
        name: str | None,
        after: int,
        limit: int,
    ) -> list[bytes]:
        """Summary rows (JSON) ordered by job id; one more than ``limit`` if there are more."""
        q = sa.select(JOBS.c.summary).where(JOBS.c.job_id > after)
        if states:
            q = q.where(JOBS.c.state.in_([s.value for s in states]))
        elif not include_finished:
            q = q.where(JOBS.c.finished.is_(False))
        if user is not None:
            q = q.where(JOBS.c.owner == user)
        if name is not None:
            q = q.where(JOBS.c.name == name)
        q = q.order_by(JOBS.c.job_id).limit(limit + 1)
        with self.engine.connect() as conn:
            return [r.summary for r in conn.execute(q)]

    def job_events(self, job_id: JobId) -> list[AnyJobEvent]:
        """Every event of one job, oldest first (empty if there is no such job)."""
        q = (
            sa.select(EVENTS.c.payload)
            .where(EVENTS.c.stream_id == job_id)
            .order_by(EVENTS.c.version)
        )
        with self.engine.connect() as conn:
            return [_event_dec.decode(r.payload) for r in conn.execute(q)]

    def snapshot(self, job_id: JobId) -> Job | None:
        number = job_number(job_id)
        if number is None:
            return None
        q = sa.select(JOBS.c.snapshot).where(JOBS.c.job_id == number)
        with self.engine.connect() as conn:
            raw = conn.execute(q).scalar()
        return None if raw is None else _job_dec.decode(raw)


_JOB_COLUMNS = ("job_id", "owner", "name", "state", "finished", "version", "summary", "snapshot")


def _job_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": int(job.job_id),
        "owner": job.owner,
        "name": job.spec.name,
        "state": job.state.value,
        "finished": job.state in TERMINAL_STATES,
        "version": job.version,
        "summary": _enc.encode(summary(job)),
        "snapshot": _enc.encode(job),
    }


def _usage_row(ev: JobUsageRecorded) -> dict[str, object]:
    return {
        "event_id": ev.event_id,
        "job_id": int(ev.job_id),
        "owner": ev.owner,
        "account": ev.account,
        "ended_at": ev.ended_at,
        "node_hours": ev.node_hours,
        "cost": ev.cost,
    }


def _event_row(job: Job, ev: AnyJobEvent) -> dict[str, Any]:
    """``job`` is the state right after ``ev``: its version is the event's version."""
    return {
        "event_id": ev.event_id,
        "stream_id": ev.job_id,
        "version": job.version,
        "type": tag_of(ev),
        "owner": job.owner,
        "at": ev.at,
        "payload": _enc.encode(ev),
    }


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
