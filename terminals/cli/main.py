"""The ``skyport`` command: argument parsing and dispatch, with errors mapped to exit codes.

Exit codes: 0 ok, 1 the operation was refused or failed, 2 bad usage or input, 3 no
deployment reachable. Command modules are imported only when their command runs, so that
``skyport jobs`` loads neither ``nats`` nor asyncio.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
_Commands = argparse._SubParsersAction  # what add_subparsers() returns (generic when typed)

# command → (module, function)
HANDLERS: dict[str, tuple[str, str]] = {
    "init": ("deployment", "init"),
    "up": ("deployment", "up"),
    "down": ("deployment", "down"),
    "status": ("deployment", "status"),
    "submit": ("streams", "submit"),
    "jobs": ("commands", "jobs"),
    "show": ("commands", "show"),
    "offers": ("commands", "offers"),
    "usage": ("commands", "usage"),
    "logs": ("streams", "logs"),
    "cancel": ("commands", "control"),
    "requeue": ("commands", "control"),
    "hold": ("commands", "control"),
    "release": ("commands", "control"),
    "events": ("streams", "events"),
    "fetch": ("streams", "fetch"),
    "user": ("users", "user"),
    "account": ("accounts", "account"),
}
STATES = (
    "pending",
    "scheduled",
    "provisioning",
    "staging_in",
    "running",
    "staging_out",
    "completed",
    "failed",
    "cancelled",
)

PERIODS = ("total", "month", "week", "day")  # schemas.accounts.Period, without importing it


def _states(text: str) -> list[str]:
    found = [s.strip().lower() for s in text.split(",") if s.strip()]
    for s in found:
        if s not in STATES:
            raise argparse.ArgumentTypeError(f"unknown state {s!r} (one of {', '.join(STATES)})")
    return found


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _price(text: str) -> float:
    from schemas.jobs import parse_price

    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(text: str) -> float:
    """A local ISO 8601 date or date and time (``2026-12-01``, ``2026-12-01T08:00``)."""
    import datetime

    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD[THH:MM])") from None


def _listen(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address; port -1 means any."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r} is not HOST[:PORT]")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r} names no host")
    if not port:
        return host, -1
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{port!r} is not a port (1-65535)")
    return host, int(port)


def _add_submit_options(p: argparse.ArgumentParser) -> None:
    from terminals.cli.directives import OPTIONS

    group = p.add_argument_group(
        "job options (the same as #SKYPORT directives; they override the script's)"
    )
    for option in OPTIONS:
        flags = [f"--{option.long}"] + ([f"-{option.short}"] if option.short else [])
        group.add_argument(
            *flags,
            dest="opt_" + option.long.replace("-", "_"),
            action="append",
            metavar="VALUE",
            help=option.help + (" (repeatable)" if option.repeat != "replace" else ""),
        )


def build_parser(submit_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser; without ``submit_options`` it skips loading the directive table
    (other commands do not need it, and ``skyport jobs`` must start fast)."""
    parser = argparse.ArgumentParser(
        prog="skyport",
        description="Sky Port: submit and manage HPC jobs on this machine and beyond.",
        epilog="Exit codes: 0 ok, 1 refused or failed, 2 bad usage or input, "
        "3 Sky Port not reachable. See docs/cli.md.",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="state directory (default: $SKYPORT_HOME, else $XDG_DATA_HOME/skyport)",
    )
    parser.add_argument(
        "--identity",
        metavar="NAME",
        help="act as this identity of the state directory (default: $SKYPORT_USER, else "
        "the login name)",
    )
    parser.add_argument(
        "--credentials",
        metavar="FILE",
        help="act as the user of this credentials file (from 'skyport user add'; default: "
        "$SKYPORT_CREDENTIALS, else --identity)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_deployment_commands(sub)
    _add_job_commands(sub, submit_options)
    _add_user_commands(sub)
    _add_account_commands(sub)
    return parser


def _add_deployment_commands(sub: _Commands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="create the deployment's keys, roster and server configuration (up does it too)",
        description="Create an nkey for core, the scheduler, every gate and you (an admin), "
        "the trust roster and the nats-server configuration with per-role permissions. "
        "Existing keys are kept. Seeds are written with mode 0600 and never printed.",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="also create a CA and a server certificate: the server then requires TLS",
    )
    p.add_argument(
        "--host",
        action="append",
        metavar="NAME",
        help="another name or address the server certificate covers (repeatable; with --tls)",
    )
    p.add_argument(
        "--gate", action="append", metavar="NAME", help="one more gate instance (repeatable)"
    )

    p = sub.add_parser("up", help="start the embedded deployment")
    p.add_argument("--detach", "-d", action="store_true", help="run in the background")
    p.add_argument("--nodes", type=_positive, help="virtual nodes of the local gate")
    p.add_argument("--cpus", type=_positive, help="CPUs per virtual node of the local gate")
    p.add_argument("--memory-mb", type=_positive, help="memory (MB) per virtual node")
    p.add_argument(
        "--price", type=_price, help="price per node-hour of the local gate's nodes (default 0)"
    )
    p.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST[:PORT]",
        help="where nats-server listens (default 127.0.0.1, a free port); an address that "
        "is not loopback needs TLS (skyport init --tls)",
    )

    sub.add_parser("down", help="stop the embedded deployment")

    p = sub.add_parser("status", help="what runs: NATS URL, state dir, components")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_job_commands(sub: _Commands[argparse.ArgumentParser], submit_options: bool) -> None:
    p = sub.add_parser("submit", help="submit a job script")
    p.add_argument("script", metavar="SCRIPT", help="the job script (with #SKYPORT directives)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--follow", "-f", action="store_true", help="stream its log until it ends")
    mode.add_argument("--wait", "-W", action="store_true", help="wait; exit with its exit code")
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="submit nothing: print where it would run, when, at what cost, and why not elsewhere",
    )
    p.add_argument("--json", action="store_true", help="print the job id as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="with --follow/--wait: no banner")
    if submit_options:
        _add_submit_options(p)

    p = sub.add_parser("jobs", help="list jobs (yours, active ones, unless told otherwise)")
    p.add_argument("--all", "-a", action="store_true", help="include finished jobs")
    p.add_argument(
        "--state", "-s", type=_states, action="extend", metavar="S[,S...]", help="only these states"
    )
    p.add_argument("--user", "-u", dest="user_filter", metavar="USER", help="jobs of this user")
    p.add_argument("--all-users", action="store_true", help="jobs of every user (admins)")
    p.add_argument("--name", "-n", metavar="NAME", help="only jobs with this name")
    p.add_argument("--json", action="store_true", help="print JSON (a list of job summaries)")

    p = sub.add_parser("show", help="one job in detail, with its transition history")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "offers", help="what every gate offers: nodes, what is free, price per node-hour"
    )
    p.add_argument("--json", action="store_true", help="print JSON (a list of gate offers)")

    p = sub.add_parser("usage", help="spend per user and account over a period")
    p.add_argument("--user", "-u", dest="user_filter", metavar="USER", help="this user's (admins)")
    p.add_argument("--all-users", action="store_true", help="every user's (admins)")
    p.add_argument(
        "--since", type=_when, metavar="WHEN", help="from this local date/time (ISO 8601)"
    )
    p.add_argument("--until", type=_when, metavar="WHEN", help="to this local date/time, excl.")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("logs", help="a job's output (stdout, stderr, Sky Port messages)")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--follow", "-f", action="store_true", help="keep streaming until it ends")

    for verb, text in (
        ("cancel", "cancel jobs"),
        ("requeue", "put jobs back in the queue"),
        ("hold", "keep pending jobs from starting"),
        ("release", "let held jobs start"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("jobs", metavar="JOB", nargs="+")
        p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    p = sub.add_parser("events", help="the verified job event stream")
    p.add_argument("--follow", "-f", action="store_true", help="keep streaming new events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--job", metavar="JOB", help="only this job's events")
    p.add_argument("--all-users", action="store_true", help="every user's jobs (admins)")

    p = sub.add_parser("fetch", help="download a job's staged outputs")
    p.add_argument("job", metavar="JOB")
    p.add_argument("dest", metavar="DEST", nargs="?", default=".", help="directory (default .)")


def _add_user_commands(sub: _Commands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("user", help="add, list, revoke or re-key the users of the deployment")
    users = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    q = users.add_parser("add", help="create a user; print the path of its credentials file")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--admin", action="store_true", help="may act on every user's jobs")
    q = users.add_parser("list", help="the users and admins")
    q.add_argument("--json", action="store_true", help="print JSON")
    q = users.add_parser("revoke", help="remove a user; its connections are dropped")
    q.add_argument("name", metavar="NAME")
    q = users.add_parser(
        "rotate", help="give a user a new key; print the new credentials file (the old is void)"
    )
    q.add_argument("name", metavar="NAME")


def _add_account_commands(sub: _Commands[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("account", help="accounts, their members, and spend caps (budgets)")
    accounts = p.add_subparsers(dest="account_command", required=True, metavar="ACTION")
    q = accounts.add_parser("add", help="create an account, or add members to one")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--member", "-m", action="append", metavar="USER", help="repeatable")
    q = accounts.add_parser("remove", help="remove an account, or (with --member) members")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--member", "-m", action="append", metavar="USER", help="repeatable")
    q = accounts.add_parser(
        "budget", help="cap what an account (or with --user, a user) may spend per period"
    )
    q.add_argument("name", metavar="NAME")
    q.add_argument("limit", metavar="LIMIT", help="in the currency of the prices; 'none': no cap")
    q.add_argument(
        "--period",
        choices=PERIODS,
        default="total",
        help="spend is counted from the start of the current one, UTC (default: total)",
    )
    q.add_argument("--user", action="store_true", help="NAME is a user, not an account")
    q = accounts.add_parser("list", help="accounts, members and budgets")
    q.add_argument("--json", action="store_true", help="print JSON")


def _handler(command: str) -> Callable[..., int]:
    module, function = HANDLERS[command]
    handler: Callable[..., int] = getattr(
        importlib.import_module(f"terminals.cli.{module}"), function
    )
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``skyport`` command; return its exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(submit_options="submit" in words).parse_args(words)
    from schemas.ids import InvalidTokenError
    from schemas.jobs import StagedPathError
    from terminals.cli.context import Context
    from terminals.cli.errors import UsageError
    from terminals.client.errors import ClientError, NotRunningError
    from terminals.client.locate import credentials, default_user, state_dir, token_of

    state = state_dir(args.state_dir)
    ctx = Context(state=state, user=token_of(args.identity) if args.identity else default_user())
    try:
        chosen = args.credentials or os.environ.get("SKYPORT_CREDENTIALS")
        if chosen:
            creds = credentials(state, path=chosen)
            ctx = Context(state=state, user=creds.name, credentials_path=creds.seed_path)
        return _handler(args.command)(ctx, args)
    except (UsageError, InvalidTokenError, StagedPathError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except NotRunningError as exc:
        return _fail(EXIT_UNREACHABLE, str(exc))
    except ClientError as exc:
        return _fail(EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error worth a traceback
        return EXIT_OK


def _fail(code: int, reason: str) -> int:
    print(f"skyport: {reason}", file=sys.stderr)
    return code
