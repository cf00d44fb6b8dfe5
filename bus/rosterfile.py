"""Following the operator's files of a running deployment: the roster (``skyport user``
rewrites it) and the accounts (``skyport account`` does).

The file is polled (its mtime and inode), not watched: it is small, the poll is one
``stat`` a second, and it works the same on every filesystem.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from schemas.roster import Roster

log = logging.getLogger("skyport.bus")
ROSTER_POLL_S = 1.0
T = TypeVar("T")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino


async def follow(
    path: Path,
    use: Callable[[Roster], Awaitable[None]],
    component: str,
    every_s: float = ROSTER_POLL_S,
) -> None:
    """Follow the roster at ``path`` (``follow_file``)."""
    await follow_file(path, Roster.decode, use, component, every_s)


async def follow_file(
    path: Path,
    decode: Callable[[bytes], T],
    use: Callable[[T], Awaitable[None]],
    component: str,
    every_s: float = ROSTER_POLL_S,
) -> None:
    """Await ``use`` with the decoded file at ``path`` once at the start (so that a change
    made while the component started is not missed) and after every change; runs until
    cancelled. A missing file is waited for; a damaged one is logged and skipped (the last
    good one stays in force); a failing ``use`` is logged and retried at the next poll."""
    seen: tuple[int, int] | None = None
    first = True
    while True:
        await asyncio.sleep(every_s)
        now = _stamp(path)
        if now == seen:
            continue
        seen = now
        try:
            value = decode(path.read_bytes())
        except (OSError, msgspec.MsgspecError, ValueError) as exc:
            log.error("%s: %s not reloaded: %s", component, path, exc)
            continue
        if not first:
            log.info("%s: reloaded %s", component, path)
        first = False
        try:
            await use(value)
        except Exception as exc:  # loop boundary: try again at the next poll
            log.warning("%s: reacting to %s failed: %s", component, path, exc)
            seen = None
