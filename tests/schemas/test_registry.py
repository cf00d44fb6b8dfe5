"""Every message class is in exactly one union, has a tag, a subject, and is in the export."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import msgspec
import pytest

from schemas import export, subjects
from schemas.commands import AnyCommand, AnyQuery, AnySchedulerQuery, Command, Query, Reply
from schemas.events import JobEvent
from schemas.gate import GATE_VERB_OF, AnyGateCommand, GateCommand, GateEvent, LogChunk

BASES = (Command, Query, Reply, JobEvent, GateCommand, GateEvent)
DATA = Path(__file__).parent / "data"


def _leaf_classes() -> list[type[msgspec.Struct]]:
    out: list[type[msgspec.Struct]] = []
    for union in export.UNIONS.values():
        out.extend(typing.get_args(union) or (union,))
    return out


def test_every_message_is_in_exactly_one_union() -> None:
    leaves = _leaf_classes()
    assert len(leaves) == len(set(leaves))
    seen: set[type] = set()
    stack: list[type] = list(BASES)
    while stack:
        cls = stack.pop()
        subs: list[type] = cls.__subclasses__()
        if not subs and cls not in BASES:
            seen.add(cls)
        stack.extend(subs)
    seen.add(LogChunk)  # a single message type, not a union
    assert seen == set(leaves)


def test_every_message_has_a_tag_in_its_schema() -> None:
    for cls in _leaf_classes():
        tag = cls.__struct_config__.tag
        assert isinstance(tag, str) and tag, cls


def test_every_command_and_query_has_a_subject() -> None:
    for cls in typing.get_args(AnyCommand):
        assert cls in subjects.VERB_OF
    for cls in typing.get_args(AnyQuery):
        assert cls in subjects.QUERY_OF
    assert set(subjects.SCHEDULER_QUERY_OF) == {AnySchedulerQuery}
    assert set(GATE_VERB_OF) == set(typing.get_args(AnyGateCommand))


def test_checked_in_json_schema_is_current() -> None:
    assert export.SCHEMA_PATH.read_bytes() == export.render(), "run `make schema`"


def test_every_message_is_in_the_json_schema() -> None:
    defs = json.loads(export.SCHEMA_PATH.read_text())["$defs"]
    for cls in _leaf_classes():
        assert cls.__name__ in defs, cls


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.name)
def test_old_payloads_still_decode(path: Path) -> None:
    """Payloads recorded from earlier versions must decode with today's schemas."""
    union = export.UNIONS[path.name.split(".")[0]]
    for line in path.read_bytes().splitlines():
        msgspec.json.decode(line, type=union)
