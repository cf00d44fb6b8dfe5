"""Following the roster file of a running deployment (``skyport user add/revoke`` rewrite it).

The file is polled (its mtime and inode), not watched: it is small, the poll is one
``stat`` a second, and it works the same on every filesystem.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from schemas.roster import Roster

log = logging.getLogger("skyport.bus")
ROSTER_POLL_S = 1.0


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
    """Await ``use`` with the roster at ``path`` once at the start (so that a change made
    while the component started is not missed) and after every change; runs until
    cancelled. A damaged file is logged and skipped; a failing ``use`` is logged and retried
    at the next poll."""
    seen: tuple[int, int] | None = None
    first = True
    while True:
        await asyncio.sleep(every_s)
        now = _stamp(path)
        if now == seen:
            continue
        seen = now
        try:
            roster = Roster.decode(path.read_bytes())
        except (OSError, msgspec.MsgspecError, ValueError) as exc:
            log.error("%s: roster %s not reloaded: %s", component, path, exc)
            continue
        if not first:
            log.info("%s: roster reloaded from %s", component, path)
        first = False
        try:
            await use(roster)
        except Exception as exc:  # loop boundary: try again at the next poll
            log.warning("%s: reacting to the roster failed: %s", component, exc)
            seen = None
