"""A blocking wrapper of ``Client`` for scripts and notebooks: one event loop per instance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from schemas.commands import JobDetail
from schemas.events import AnyJobEvent
from schemas.gate import LogChunk
from schemas.ids import JobId
from schemas.jobs import JobSpec, JobState, JobSummary, StagedInput
from terminals.client.client import Client

T = TypeVar("T")


class SyncClient:
    """``Client`` with blocking methods. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        identity: str | None = None,
        nats_url: str | None = None,
        timeout: float = 10.0,
        credentials_path: Path | str | None = None,
    ) -> None:
        self._runner = asyncio.Runner()
        try:
            self._client = self._runner.run(
                Client.connect(state_dir, identity, nats_url, timeout, credentials_path)
            )
        except BaseException:
            self._runner.close()
            raise

    @property
    def user(self) -> str:
        return self._client.user

    def close(self) -> None:
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, spec: JobSpec) -> JobId:
        return self._runner.run(self._client.submit(spec))

    def stage_inputs(self, files: Iterable[tuple[Path, str]]) -> tuple[StagedInput, ...]:
        return self._runner.run(self._client.stage_inputs(files))

    def jobs(
        self,
        states: Iterable[JobState] = (),
        all: bool = False,
        user: str | None = None,
        name: str | None = None,
    ) -> list[JobSummary]:
        return self._runner.run(self._client.jobs(states, all, user, name))

    def job(self, job_id: str) -> JobDetail:
        return self._runner.run(self._client.job(job_id))

    def cancel(self, job_id: str) -> str:
        return self._runner.run(self._client.cancel(job_id))

    def requeue(self, job_id: str) -> str:
        return self._runner.run(self._client.requeue(job_id))

    def hold(self, job_id: str) -> str:
        return self._runner.run(self._client.hold(job_id))

    def release(self, job_id: str) -> str:
        return self._runner.run(self._client.release(job_id))

    def wait(self, job_id: str) -> JobDetail:
        return self._runner.run(self._client.wait(job_id))

    def fetch(self, job_id: str, dest: Path | str = ".") -> list[Path]:
        return self._runner.run(self._client.fetch(job_id, dest))

    def events(self, follow: bool = False) -> Iterator[AnyJobEvent]:
        return self._iterate(self._client.events(follow))

    def logs(self, job_id: str, follow: bool = False) -> Iterator[LogChunk]:
        return self._iterate(self._client.logs(job_id, follow=follow))

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(source)
            except StopAsyncIteration:
                return False, None

        while True:
            more, item = self._runner.run(step())
            if not more:
                return
            yield item  # type: ignore[misc]
