"""The async Python client of Sky Port: submit, list, watch, control and fetch jobs.

The only I/O shell of ``terminals.client``: everything goes through a signed ``bus`` connection
as one user identity; messages are built by ``terminals.client.requests``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import TypeVar

import msgspec

from bus.connection import Bus, BusError, Delivery
from bus.deployment import DeploymentError
from bus.objects import BucketMissingError, ObjectError, get_file, put_file
from bus.tls import client_context
from schemas import subjects
from schemas.commands import (
    Accepted,
    AnyQuery,
    AnyReply,
    GateOffer,
    JobDetail,
    JobPage,
    OfferList,
    PlanReport,
    UsageReport,
)
from schemas.events import AnyJobEvent, JobCancelled, JobCompleted, JobFailed
from schemas.gate import LogChunk
from schemas.ids import JobId
from schemas.jobs import TERMINAL_STATES, JobSpec, JobState, JobSummary, StagedInput
from schemas.roster import Role
from terminals.client import requests
from terminals.client.errors import ClientError, NotRunningError, StagingError
from terminals.client.locate import credentials, require_running, state_dir
from terminals.client.logtail import LogTail
from terminals.client.staging import prepare_target

T = TypeVar("T")
_event_decoder = msgspec.json.Decoder(AnyJobEvent)
_log_decoder = msgspec.json.Decoder(LogChunk)
TERMINAL_EVENTS = (JobCompleted, JobFailed, JobCancelled)
EMPTY_WAIT_S = 0.5  # a replay that yields nothing this long is taken as empty
IDLE_S = 5.0  # a non-following replay stops after this long without a message
BUCKET_WAIT_S = 5.0


class Client:
    """A signed connection for one user. Build it with ``await Client.connect(...)``."""

    def __init__(self, bus: Bus, user: str, timeout: float = 10.0, admin: bool = False) -> None:
        self.bus = bus
        self.user = user
        self.timeout = timeout
        self.admin = admin  # may read every user's events and logs (the server enforces it)

    @classmethod
    async def connect(
        cls,
        state_dir_path: Path | str | None = None,
        identity: str | None = None,
        nats_url: str | None = None,
        timeout: float = 10.0,
        credentials_path: Path | str | None = None,
    ) -> Client:
        """Connect to the deployment of a state dir as the identity of a credentials file
        (``credentials_path``, else ``$SKYPORT_CREDENTIALS``), else as ``identity`` (default:
        ``$SKYPORT_USER``, else the login name)."""
        state = state_dir(state_dir_path)
        creds = credentials(state, identity, credentials_path)
        user = creds.name
        url = nats_url or require_running(state).nats_url
        try:
            signer, roster = creds.signer(), state.load_roster()
            context = client_context(state)
        except DeploymentError as exc:
            raise ClientError(str(exc)) from exc
        try:
            bus = await Bus.connect(
                url,
                signer,
                roster,
                f"client-{user}",
                tls=context,
                connect_timeout=3,
                nkeys_seed=str(creds.seed_path),
            )
        except Exception as exc:  # the edge of nats: any connect failure means unreachable
            raise NotRunningError(f"cannot reach NATS at {url}: {exc}") from exc
        own = roster.get(signer.public_key)
        return cls(bus, user, timeout, admin=own is not None and own.role is Role.ADMIN)

    async def close(self) -> None:
        await self.bus.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- request/reply -------------------------------------------------------------------------

    async def _ask(self, subject: str, msg: msgspec.Struct) -> AnyReply:
        try:
            return await self.bus.request(subject, msg, timeout=self.timeout)
        except BusError as exc:
            raise NotRunningError(str(exc)) from exc

    async def submit(self, spec: JobSpec) -> JobId:
        """Submit ``spec``; return the new job's id. Raises RejectedError if core refuses."""
        cmd = requests.submit(spec)
        accepted = requests.expect(await self._ask(subjects.command_subject(cmd), cmd), Accepted)
        if accepted.job_id is None:
            raise ClientError("core accepted the job without naming it")
        return accepted.job_id

    async def _control(self, verb: str, job_id: str) -> str:
        cmd = requests.job_command(verb, job_id)
        reply = await self._ask(subjects.command_subject(cmd), cmd)
        return requests.expect(reply, Accepted).detail

    async def cancel(self, job_id: str) -> str:
        return await self._control("cancel", job_id)

    async def requeue(self, job_id: str) -> str:
        return await self._control("requeue", job_id)

    async def hold(self, job_id: str) -> str:
        return await self._control("hold", job_id)

    async def release(self, job_id: str) -> str:
        return await self._control("release", job_id)

    async def _query(self, query: AnyQuery) -> AnyReply:
        return await self._ask(subjects.query_subject(query), query)

    async def jobs(
        self,
        states: Iterable[JobState] = (),
        all: bool = False,
        user: str | None = None,
        name: str | None = None,
    ) -> list[JobSummary]:
        """Jobs in submission order (active ones unless ``all``), every page of them."""
        found: list[JobSummary] = []
        after: JobId | None = None
        while True:
            query = requests.list_jobs(states, all, user, name, after)
            page = requests.expect(await self._query(query), JobPage)
            found.extend(page.jobs)
            if page.next_after is None or not page.jobs:
                return found
            after = page.next_after

    async def offers(self) -> tuple[GateOffer, ...]:
        """What every gate offers: its nodes with prices, and what active jobs hold."""
        return requests.expect(await self._query(requests.list_offers()), OfferList).gates

    async def usage(
        self, since: float | None = None, until: float | None = None, user: str | None = None
    ) -> UsageReport:
        """Spend per user and account of the attempts that ended in [since, until): the
        user's own, or with ``user`` (admins) another's, or everyone's for an admin."""
        query = requests.get_usage(since, until, user)
        return requests.expect(await self._query(query), UsageReport)

    async def plan(self, spec: JobSpec) -> PlanReport:
        """A dry run: where ``spec`` would run if submitted now, when, at what cost, and why
        not elsewhere (asked of the scheduler; nothing is submitted)."""
        query = requests.plan_job(spec)
        subject = subjects.scheduler_query(subjects.SchedulerQueryName.PLAN)
        return requests.expect(await self._ask(subject, query), PlanReport)

    async def job(self, job_id: str) -> JobDetail:
        """Everything about one job, with its transition history."""
        return requests.expect(await self._query(requests.get_job(job_id)), JobDetail)

    # -- streams -------------------------------------------------------------------------------

    async def _replay(
        self,
        filter_subject: str,
        decoder: msgspec.json.Decoder[T],
        follow: bool,
        until: Callable[[], Awaitable[object]] | None = None,
    ) -> AsyncGenerator[T, None]:
        """Messages of a stream from its start; stop when caught up unless ``follow``.

        When following with ``until``, stop once ``until`` is done and the stream is drained.
        """
        queue: asyncio.Queue[tuple[T, int]] = asyncio.Queue()

        async def on_delivery(delivery: Delivery[T]) -> None:
            await queue.put((delivery.incoming.body, delivery.pending))

        try:
            sub = await self.bus.replay(filter_subject, decoder, on_delivery)
        except Exception as exc:  # the edge of nats: no stream yet, no JetStream, ...
            raise NotRunningError(f"cannot read {filter_subject}: {exc}") from exc
        done = asyncio.ensure_future(until()) if until is not None else None
        try:
            seen = False
            while True:
                following = follow and (done is None or not done.done())
                wait = 0.5 if following else (IDLE_S if seen else EMPTY_WAIT_S)
                try:
                    body, pending = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if following:
                        continue
                    return
                seen = True
                yield body
                if pending == 0 and not (follow and (done is None or not done.done())):
                    return
        finally:
            if done is not None:
                done.cancel()
                if done.done() and not done.cancelled():
                    done.exception()  # retrieved: a failed watch only ends the following
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is closing: the subscription goes with it
                pass

    def _check_readable(self, owner: str) -> None:
        """Refuse at once what the server would refuse after a timeout: a user reads only
        their own jobs' events and logs."""
        if owner != self.user and not self.admin:
            who = "every user" if owner == "*" else f"user {owner!r}"
            raise ClientError(f"{self.user} is not an admin: cannot read the jobs of {who}")

    async def events(
        self, follow: bool = False, owner: str | None = None, job_id: str = "*"
    ) -> AsyncGenerator[AnyJobEvent, None]:
        """The verified job events (of one job, one owner's jobs, or with ``owner="*"`` every
        job: admins only), oldest first. ``owner`` defaults to the job's owner for one job,
        else to the user."""
        if owner is None:
            owner = (await self.job(job_id)).summary.owner if job_id != "*" else self.user
        self._check_readable(owner)
        filter_subject = subjects.job_events_of(owner, job_id)
        async with aclosing(self._replay(filter_subject, _event_decoder, follow)) as events:
            async for event in events:
                yield event

    async def logs(
        self, job_id: str, owner: str | None = None, follow: bool = False
    ) -> AsyncGenerator[LogChunk, None]:
        """A job's log chunks (stdout, stderr, system); ``follow`` until the job has ended."""
        if owner is None:
            owner = (await self.job(job_id)).summary.owner
        self._check_readable(owner)
        until = (lambda: self.wait(job_id, owner)) if follow else None
        tail = LogTail()
        filter_subject = subjects.logs_of(owner, job_id)
        async with aclosing(self._replay(filter_subject, _log_decoder, follow, until)) as chunks:
            async for chunk in chunks:
                fresh = tail.new_part(chunk)
                if fresh is not None:
                    yield fresh

    async def wait(self, job_id: str, owner: str | None = None) -> JobDetail:
        """Wait until the job is completed, failed or cancelled; return its detail."""
        detail = await self.job(job_id)
        if detail.summary.state in TERMINAL_STATES:
            return detail
        owner = owner or detail.summary.owner
        self._check_readable(owner)
        filter_subject = subjects.job_events_of(owner, job_id)
        async with aclosing(self._replay(filter_subject, _event_decoder, follow=True)) as events:
            async for event in events:
                if isinstance(event, TERMINAL_EVENTS):
                    detail = await self.job(job_id)
                    if detail.summary.state in TERMINAL_STATES:
                        return detail
        raise ClientError(f"stopped watching job {job_id} before it ended")

    # -- files ---------------------------------------------------------------------------------

    async def stage_inputs(self, files: Iterable[tuple[Path, str]]) -> tuple[StagedInput, ...]:
        """Upload local files for a submission into the user's bucket; return them as the
        spec's inputs."""
        prefix = subjects.upload_prefix(self.user, uuid.uuid4().hex)
        bucket = subjects.files_bucket(self.user)
        staged: list[StagedInput] = []
        for local, name in files:
            if not local.is_file():
                raise StagingError(f"input {local} is not a readable file")
            try:
                size, digest = await self._put(bucket, prefix + name, local)
            except OSError as exc:
                raise StagingError(f"cannot upload {local}: {exc}") from exc
            except ObjectError as exc:
                raise StagingError(f"cannot upload {local}: {exc}") from exc
            staged.append(StagedInput(name=name, obj=prefix + name, size=size, sha256=digest))
        return tuple(staged)

    async def _put(self, bucket: str, key: str, local: Path) -> tuple[int, str]:
        """``put_file``, waiting a little for a bucket core has not made yet (a user added a
        moment ago: core makes their bucket when it next reads the roster)."""
        deadline = asyncio.get_running_loop().time() + BUCKET_WAIT_S
        while True:
            try:
                return await put_file(self.bus.js, bucket, key, local)
            except BucketMissingError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def fetch(self, job_id: str, dest: Path | str = ".") -> list[Path]:
        """Download the job's staged outputs under ``dest``; return the written paths."""
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        detail = await self.job(job_id)
        bucket = subjects.files_bucket(detail.summary.owner)
        for out in detail.outputs:
            target = prepare_target(root, out.name)
            try:
                await get_file(self.bus.js, bucket, out.obj, target, out.sha256)
            except ObjectError as exc:
                raise StagingError(str(exc)) from exc
            except TimeoutError as exc:  # the server said nothing: down, or not ours to read
                raise StagingError(f"no answer fetching {out.name!r} from {bucket}") from exc
            written.append(target)
        return written
