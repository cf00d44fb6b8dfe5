"""JSON Schema export of every message: ``python -m schemas.export`` rewrites the checked-in
``schemas/skyport.schema.json``; a test fails when it is stale."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.commands import AnyCommand, AnyQuery, AnyReply, AnySchedulerQuery
from schemas.events import AnyJobEvent
from schemas.gate import AnyGateCommand, AnyGateEvent, LogChunk

UNIONS: dict[str, Any] = {
    "CoreCommand": AnyCommand,
    "CoreQuery": AnyQuery,
    "CoreReply": AnyReply,  # also the scheduler's replies (the name predates them)
    "SchedulerQuery": AnySchedulerQuery,
    "JobEvent": AnyJobEvent,
    "GateCommand": AnyGateCommand,
    "GateEvent": AnyGateEvent,
    "LogChunk": LogChunk,
}
SCHEMA_PATH = Path(__file__).with_name("skyport.schema.json")


def render() -> bytes:
    """The export as formatted JSON bytes: one top-level ref per union, shared components."""
    names = list(UNIONS)
    refs, components = msgspec.json.schema_components(
        [UNIONS[n] for n in names], ref_template="#/$defs/{name}"
    )
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Sky Port wire messages (skyport.v1)",
        "description": "Payloads are JSON; see docs/architecture.md for signing headers.",
        "properties": dict(zip(names, refs, strict=True)),
        "$defs": components,
    }
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def main() -> int:
    SCHEMA_PATH.write_bytes(render())
    print(f"wrote {SCHEMA_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
