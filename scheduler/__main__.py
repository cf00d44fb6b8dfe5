"""``python -m scheduler --state-dir DIR --nats-url URL``: run the scheduler as its own process.

Wiring only: read the identity and roster once, connect, run the service in a TaskGroup, and
stop cleanly (exit 0) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from bus.connection import Bus
from bus.deployment import DeploymentError, StateDir
from bus.tls import client_context
from scheduler.service import SchedulerService
from schemas.accounts import decode as decode_accounts

log = logging.getLogger("skyport.scheduler")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scheduler", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="deployment state dir")
    parser.add_argument("--nats-url", required=True, help="NATS server URL")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    return parser.parse_args(argv)


async def run(state_dir: Path, nats_url: str) -> None:
    """Run the scheduler until SIGTERM or SIGINT."""
    state = StateDir(state_dir)
    signer, roster = state.load_signer("scheduler"), state.load_roster()
    accounts = state.load_accounts()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        bus = await Bus.connect(
            nats_url,
            signer,
            roster,
            "scheduler",
            tls=client_context(state),
            nkeys_seed=str(state.seed_path("scheduler")),
        )
        stack.push_async_callback(bus.close)
        bus.follow_roster(state.roster_path)
        scheduler = SchedulerService(bus)
        await scheduler.use_accounts(accounts)
        bus.follow_file(state.accounts_path, decode_accounts, scheduler.use_accounts)
        service = asyncio.create_task(scheduler.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({service, stopping}, return_when=asyncio.FIRST_COMPLETED)
        log.info("scheduler stopping")
        stopping.cancel()
        while not service.done():
            # Again and again: nats-py waits with asyncio.wait_for, which on Python 3.11
            # can swallow a cancellation that races its timeout.
            service.cancel()
            await asyncio.wait({service}, timeout=0.5)
        error = None if service.cancelled() else service.exception()
        if error is not None:
            raise error


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(run(args.state_dir, args.nats_url))
    except DeploymentError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
