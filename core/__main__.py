"""``python -m core``: run core as its own process until SIGTERM or SIGINT (exit 0).

Wiring only: settings → the one-writer lock (core.lock), signer, roster, bus, streams, store
(in an AsyncExitStack) → the service. Logs go to stderr; seeds are never logged. Exit 2 when
core cannot start (a broken deployment, or another core holds the database's lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from bus.connection import Bus
from bus.deployment import DeploymentError
from bus.streams import ensure_buckets, ensure_streams
from bus.tls import client_context
from core.lock import LockHeldError, hold, lock_path
from core.service import CoreService
from core.settings import Settings, parse_args
from core.store import Store
from schemas.accounts import Accounts
from schemas.accounts import decode as decode_accounts
from schemas.roster import Roster

log = logging.getLogger("skyport.core")


async def serve(settings: Settings) -> None:
    signer = settings.state_dir.load_signer("core")
    roster = settings.state_dir.load_roster()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        guard = lock_path(settings.db_url)
        if guard is not None:  # other databases: a NATS KV lease, in a later issue
            stack.enter_context(hold(guard))
        bus = await Bus.connect(
            settings.nats_url,
            signer,
            roster,
            "core",
            tls=client_context(settings.state_dir),
            nkeys_seed=str(settings.state_dir.seed_path("core")),
        )
        stack.push_async_callback(bus.close)
        await ensure_streams(bus.js)
        buckets: set[str] = set()  # users whose files bucket exists
        await ensure_buckets(bus.js, roster, buckets)

        async def on_roster(new: Roster) -> None:
            await ensure_buckets(bus.js, new, buckets)  # a user added live gets a bucket

        bus.follow_roster(settings.state_dir.roster_path, on_change=on_roster)
        store = Store(settings.db_url)
        stack.callback(store.close)
        service = CoreService(
            bus, store, batch_max=settings.batch_max, replay_window_s=settings.replay_window_s
        )
        service.state.accounts = settings.state_dir.load_accounts()

        async def on_accounts(new: Accounts) -> None:
            service.state.accounts = new  # read by the writer between batches only

        bus.follow_file(settings.state_dir.accounts_path, decode_accounts, on_accounts)
        log.info("core serving on %s", settings.nats_url)
        await service.run(stop)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(settings))
    except (DeploymentError, LockHeldError) as exc:
        log.error("core cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
