"""Run one gate instance: ``python -m gates --gate local --state-dir DIR --nats-url URL``.

Wiring only: read the flags once, load the gate plugin from the ``skyport.gates`` entry
points, connect the signed bus as the gate's identity, serve until SIGTERM/SIGINT. Jobs keep
running when the gate stops; the next gate process on the same state directory adopts them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

from bus.connection import Bus
from bus.deployment import DeploymentError, StateDir
from bus.tls import client_context
from gates.base import GateFactory, GateOptions
from gates.runner import GateRunner, cancel_firmly
from gates.settings import RunnerSettings

log = logging.getLogger("skyport.gates")
ENTRY_POINT_GROUP = "skyport.gates"


class PluginError(Exception):
    """No gate plugin of that kind is installed."""


def load_plugin(kind: str) -> GateFactory:
    """The gate class registered under ``kind`` in the ``skyport.gates`` entry points."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=kind)
    for ep in found:
        factory: GateFactory = ep.load()
        return factory
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise PluginError(f"no gate plugin {kind!r} (installed: {', '.join(known) or 'none'})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gates", description=__doc__.splitlines()[0])
    p.add_argument("--gate", required=True, help="gate kind (entry point name), e.g. local")
    p.add_argument("--name", help="gate instance name and identity (default: the kind)")
    p.add_argument("--state-dir", required=True, help="the deployment's state directory")
    p.add_argument("--nats-url", required=True)
    p.add_argument("--nodes", type=int, help="number of (virtual) nodes")
    p.add_argument("--cpus", type=int, help="cpus per node")
    p.add_argument("--memory-mb", type=int, help="memory per node (MiB)")
    p.add_argument("--gpus", type=int, help="GPUs per node")
    p.add_argument(
        "--price", type=_price, default=0.0, help="price per node-hour of its nodes (default 0)"
    )
    p.add_argument("--capacity-interval", type=float, default=5.0, help="heartbeat period (s)")
    p.add_argument("--timeout-grace", type=float, default=10.0, help="SIGTERM→SIGKILL (s)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _price(text: str) -> float:
    from schemas.jobs import parse_price

    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def serve(args: argparse.Namespace) -> None:
    name = args.name or args.gate
    state = StateDir(Path(args.state_dir))
    factory = load_plugin(args.gate)
    options = GateOptions(args.nodes, args.cpus, args.memory_mb, args.gpus, args.price)
    gate = factory(name, options)
    settings = RunnerSettings(
        capacity_interval_s=args.capacity_interval, timeout_grace_s=args.timeout_grace
    )
    bus = await Bus.connect(
        args.nats_url,
        state.load_signer(name),
        state.load_roster(),
        name,
        tls=client_context(state),
        nkeys_seed=str(state.seed_path(name)),
    )
    bus.follow_roster(state.roster_path)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runner = asyncio.create_task(GateRunner(bus, gate, state.gate_dir(name), settings).run())
    try:
        log.info("gate %s (%s) serving on %s", name, args.gate, args.nats_url)
        await asyncio.wait(
            {runner, asyncio.create_task(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if runner.done():
            runner.result()  # a runner that stopped by itself failed: raise its error
    finally:
        await cancel_firmly([runner])
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        asyncio.run(serve(args))
    except (PluginError, DeploymentError) as exc:
        log.error("%s", exc)
        return 2
    log.info("gate stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
