"""Core's settings, read once at start-up from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bus.deployment import StateDir


@dataclass(frozen=True)
class Settings:
    """Where core finds its keys, the bus and its event store."""

    state_dir: StateDir
    nats_url: str
    db_url: str
    batch_max: int = 500
    replay_window_s: float = 300.0
    log_level: str = "INFO"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m core", description="Sky Port core: the job event store and its services."
    )
    parser.add_argument("--state-dir", required=True, type=Path, help="the deployment's state")
    parser.add_argument("--nats-url", required=True, help="e.g. nats://127.0.0.1:4222")
    parser.add_argument(
        "--db-url", default=None, help="SQLAlchemy URL (default: SQLite at <state>/core/core.db)"
    )
    parser.add_argument("--batch-max", type=int, default=500, help="most commands per commit")
    parser.add_argument(
        "--replay-window",
        type=float,
        default=300.0,
        help="refuse commands stamped more than this many seconds off core's clock",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir)
    db_url = args.db_url
    if db_url is None:
        state.core_db.parent.mkdir(parents=True, exist_ok=True)
        db_url = sqlite_url(state.core_db)
    return Settings(
        state_dir=state,
        nats_url=args.nats_url,
        db_url=db_url,
        batch_max=max(1, args.batch_max),
        replay_window_s=max(1.0, args.replay_window),
        log_level=args.log_level.upper(),
    )
