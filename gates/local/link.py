"""The local gate's side of the keeper (``gates.local.keeper``): connect, or start one.

Requests (Launch, Ask) are answered in order on one Unix-socket connection; ``Exited``
notes arrive between answers and are kept, for the runs the keeper said were running, until
``exit_of`` collects them. When the
connection ends (the keeper died), every pending request fails with ``KeeperGone`` and every
awaited exit resolves to None: the caller then falls back to the run's files.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
from pathlib import Path

import msgspec

from gates.environment import DEFAULT_PATH
from gates.local import keeper

CONNECT_WAIT_S = 10.0  # a keeper just started needs its Python start-up (~0.1 s)


class KeeperGone(Exception):
    """The keeper could not be reached, or its connection ended."""


class KeeperLink:
    """One connection to the keeper of a runs directory."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: collections.deque[asyncio.Future[keeper.Status]] = collections.deque()
        self._exits: dict[str, asyncio.Future[int | None]] = {}
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(keeper.FromKeeper)
        self.closed = False
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, runs_dir: Path) -> KeeperLink:
        """Connect to the keeper of ``runs_dir``, starting one if none answers."""
        runs_dir.mkdir(parents=True, exist_ok=True)
        link = await cls._connect(runs_dir)
        if link is not None:
            return link
        await _start(runs_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_WAIT_S
        while loop.time() < deadline:
            await asyncio.sleep(0.01)
            link = await cls._connect(runs_dir)
            if link is not None:
                return link
        raise KeeperGone(f"no keeper answers in {runs_dir} after {CONNECT_WAIT_S:g} s")

    @classmethod
    async def _connect(cls, runs_dir: Path) -> KeeperLink | None:
        try:
            with keeper.in_dir(runs_dir) as here:
                reader, writer = await asyncio.open_unix_connection(
                    f"{here}/{keeper.SOCKET}", limit=keeper.MAX_LINE
                )
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        return cls(reader, writer)

    async def request(self, msg: keeper.ToKeeper) -> keeper.Status:
        if self.closed:
            raise KeeperGone("the keeper connection is closed")
        answer: asyncio.Future[keeper.Status] = asyncio.get_running_loop().create_future()
        self._pending.append(answer)
        self._writer.write(self._encoder.encode(msg) + b"\n")
        return await answer

    def exit_of(self, run: str) -> asyncio.Future[int | None]:
        """The exit code the keeper will report for ``run``, a run it answered ``running``
        for on this link (None if the link is lost first). ``forget`` it once taken."""
        fut = self._exits.get(run)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            if self.closed:
                fut.set_result(None)
            else:
                self._exits[run] = fut
        return fut

    def forget(self, run: str) -> None:
        self._exits.pop(run, None)

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                msg = self._decoder.decode(line)
                if isinstance(msg, keeper.Exited):
                    fut = self._exits.get(msg.run)  # only runs this link was told run
                    if fut is not None and not fut.done():
                        fut.set_result(msg.code)
                    continue
                if msg.state == "running":  # before any Exited of it can be read
                    self.exit_of(msg.run)
                if self._pending:
                    answer = self._pending.popleft()
                    if not answer.done():
                        answer.set_result(msg)
        except (OSError, ValueError, msgspec.DecodeError):
            pass
        finally:
            self._lost()

    def _lost(self) -> None:
        self.closed = True
        while self._pending:
            answer = self._pending.popleft()
            if not answer.done():
                answer.set_exception(KeeperGone("the keeper connection ended"))
        for fut in self._exits.values():
            if not fut.done():
                fut.set_result(None)
        self._exits.clear()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# Keepers this process started: reaped once over (a keeper outlives the link to it).
_started: set[int] = set()


async def _start(runs_dir: Path) -> None:
    """Start a keeper for ``runs_dir`` in its own session, with PATH as its environment."""
    reap_finished()
    argv = [sys.executable, "-I", "-m", "gates.local.keeper", str(runs_dir)]
    log = str(runs_dir / "keeper.log")
    files = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
    ]
    env = {"PATH": DEFAULT_PATH}
    _started.add(os.posix_spawn(sys.executable, argv, env, file_actions=files, setsid=True))


def reap_finished() -> None:
    """Reap the keepers this process started that are over (never blocks)."""
    for pid in list(_started):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _started.discard(pid)
