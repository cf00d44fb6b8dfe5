"""Commands that upload, stream or download: submit, logs, events, fetch.

They open the async client (and so load ``nats``) only when they need it: a plain submit
without inputs goes over the quick path like ``jobs`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.commands import Accepted, JobDetail, PlanReport
from schemas.jobs import JobSpec, JobState, StagedInput
from terminals.cli import render
from terminals.cli.context import Context
from terminals.cli.directives import OPTIONS, Request, build_spec, parse_options, parse_script
from terminals.cli.errors import UsageError
from terminals.client import requests

if TYPE_CHECKING:
    from schemas.gate import LogChunk
    from terminals.client.client import Client


def read_request(args: argparse.Namespace) -> tuple[str, Request]:
    """The script text and what its directives and the options ask for."""
    path = Path(args.script)
    try:
        script = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read script {path}: {exc}") from exc
    given = [(o.long, v) for o in OPTIONS for v in (getattr(args, option_dest(o.long)) or ())]
    return script, parse_script(script).override(parse_options(given))


def option_dest(long: str) -> str:
    """The argparse destination of a submit option (every one is collected as a list)."""
    return "opt_" + long.replace("-", "_")


def exit_code_of(detail: JobDetail) -> int:
    """The exit code of ``submit --wait/--follow`` (docs/cli.md): 0 for a completed job; its
    exit code for a failed job with one in 1-255; 1 otherwise, for a cancelled job too (its
    exit code is the signal that stopped it, not the job's verdict)."""
    s = detail.summary
    if s.state is JobState.COMPLETED:
        return 0
    if s.state is JobState.FAILED and s.exit_code is not None and 0 < s.exit_code < 256:
        return s.exit_code
    return 1


def submit(ctx: Context, args: argparse.Namespace) -> int:
    script, request = read_request(args)
    for warning in request.warnings:
        print(f"skyport: warning: {warning}", file=sys.stderr)
    spec = build_spec(script, request)  # validate everything before uploading anything
    files = [(Path(f.local), f.name) for f in request.inputs]
    for local, _ in files:
        if not local.is_file():
            raise UsageError(f"input {local} is not a readable file")
    ctx.deployment()
    if args.dry_run:
        report = ctx.ask(requests.plan_job(spec), PlanReport)
        print(render.to_json(report) if args.json else render.plan_text(report, time.time()))
        return 0
    if not files and not (args.follow or args.wait):
        job_id = ctx.ask(requests.submit(spec), Accepted).job_id
        return _submitted(args, str(job_id))
    return asyncio.run(_submit_async(ctx, args, script, request, files))


def _submitted(args: argparse.Namespace, job_id: str) -> int:
    if args.json:
        print(render.to_json({"job_id": job_id}))
    elif not (args.follow or args.wait) or not args.quiet:
        print(
            f"Submitted job {job_id}", file=sys.stderr if (args.follow or args.wait) else sys.stdout
        )
    return 0


async def _submit_async(
    ctx: Context,
    args: argparse.Namespace,
    script: str,
    request: Request,
    files: list[tuple[Path, str]],
) -> int:
    async with await _client(ctx) as client:
        inputs: tuple[StagedInput, ...] = await client.stage_inputs(files) if files else ()
        spec: JobSpec = build_spec(script, request, inputs)
        job_id = await client.submit(spec)
        _submitted(args, job_id)
        if args.follow:
            async for chunk in client.logs(job_id, owner=client.user, follow=True):
                write_chunk(chunk)
        if not (args.follow or args.wait):
            return 0
        detail = await client.wait(job_id, owner=client.user)
        if args.follow:
            print(f"[skyport] job {job_id} {_ending(detail)}", file=sys.stderr)
        return exit_code_of(detail)


def _ending(detail: JobDetail) -> str:
    s = detail.summary
    text = render.state_text(s)
    if s.detail:
        return f"{text}: {s.detail}"
    return text if s.exit_code is None else f"{text} (exit code {s.exit_code})"


async def _client(ctx: Context) -> Client:
    from terminals.client.client import Client

    info = ctx.deployment()
    return await Client.connect(
        ctx.state.root, ctx.user, nats_url=info.nats_url, credentials_path=ctx.credentials_path
    )


def write_chunk(chunk: LogChunk) -> None:
    """stdout to stdout, stderr to stderr, Sky Port's own messages to stderr, marked."""
    if chunk.stream == "stdout":
        sys.stdout.write(chunk.data)
        sys.stdout.flush()
    elif chunk.stream == "stderr":
        sys.stderr.write(chunk.data)
        sys.stderr.flush()
    else:
        line = chunk.data if chunk.data.endswith("\n") else chunk.data + "\n"
        sys.stderr.write(f"[skyport] {line}")
        sys.stderr.flush()


def logs(ctx: Context, args: argparse.Namespace) -> int:
    async def run() -> int:
        async with await _client(ctx) as client:
            async for chunk in client.logs(args.job, follow=args.follow):
                write_chunk(chunk)
        return 0

    return asyncio.run(run())


def events(ctx: Context, args: argparse.Namespace) -> int:
    # one job: whoever owns it (core refuses a user another's); else the user's own jobs
    owner = "*" if args.all_users else (None if args.job else ctx.user)

    async def run() -> int:
        async with await _client(ctx) as client:
            async for event in client.events(
                follow=args.follow, owner=owner, job_id=args.job or "*"
            ):
                if args.json:
                    print(render.to_json(event), flush=True)
                else:
                    tag = type(event).__struct_config__.tag
                    print(
                        f"{render.when(event.at)}  {event.job_id}  {tag}  {event.detail}",
                        flush=True,
                    )
        return 0

    return asyncio.run(run())


def fetch(ctx: Context, args: argparse.Namespace) -> int:
    async def run() -> int:
        async with await _client(ctx) as client:
            written = await client.fetch(args.job, Path(args.dest))
        for path in written:
            print(path)
        if not written:
            print(f"job {args.job} has no staged outputs", file=sys.stderr)
        return 0

    return asyncio.run(run())
