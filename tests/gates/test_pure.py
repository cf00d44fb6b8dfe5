"""Outcomes, UTF-8 chunking of output, and virtual nodes. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from gates.base import GateOptions
from gates.local.nodes import host_memory_mb, virtual_nodes
from gates.logs import MAX_CHUNK, OutputTail, decode_prefix
from gates.outcome import StopCause, verdict
from schemas.jobs import FailReason, RunOutcome


@pytest.mark.parametrize(
    ("code", "cause", "outcome", "reason"),
    [
        (0, None, RunOutcome.COMPLETED, None),
        (3, None, RunOutcome.FAILED, FailReason.EXIT_CODE),
        (137, None, RunOutcome.FAILED, FailReason.SIGNAL),
        (None, None, RunOutcome.FAILED, FailReason.NODE_FAILURE),
        (143, StopCause.TIMEOUT, RunOutcome.FAILED, FailReason.TIMEOUT),
        (0, StopCause.TIMEOUT, RunOutcome.FAILED, FailReason.TIMEOUT),
        (137, StopCause.CANCEL, RunOutcome.CANCELLED, None),
    ],
)
def test_verdict_of_an_exit_status(
    code: int | None, cause: StopCause | None, outcome: RunOutcome, reason: FailReason | None
) -> None:
    result = verdict(code, cause, "cancel", 60)
    assert (result.outcome, result.reason, result.exit_code) == (outcome, reason, code)


def test_a_signal_exit_names_the_signal() -> None:
    assert "SIGKILL" in verdict(137, None).detail


def test_an_incomplete_utf8_sequence_waits_for_the_rest_unless_final() -> None:
    data = "é".encode() + "€".encode()[:2]
    assert decode_prefix(data, final=False) == ("é", 2)
    text, used = decode_prefix(data, final=True)
    assert (text, used) == ("é\ufffd", 4)


def test_tail_reads_new_bytes_in_chunks_of_at_most_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    tail = OutputTail(path)
    assert tail.chunks(final=False) == []  # not created yet
    path.write_bytes(b"a" * (MAX_CHUNK + 10))
    chunks = tail.chunks(final=False)
    assert [(off, n) for off, _text, n in chunks] == [(0, MAX_CHUNK), (MAX_CHUNK, 10)]
    with path.open("ab") as f:
        f.write("ü\n".encode())
    assert tail.chunks(final=False) == [(MAX_CHUNK + 10, "ü\n", 3)]
    assert tail.offset == MAX_CHUNK + 13


def test_default_local_gate_is_one_node_with_the_whole_host() -> None:
    (node,) = virtual_nodes("local", GateOptions(), host_cpus=16, host_memory=64000)
    assert (node.name, node.cpus, node.memory_mb, node.gpus) == ("local-0", 16, 64000, 0)


def test_several_nodes_split_the_host_unless_sized() -> None:
    nodes = virtual_nodes("local", GateOptions(nodes=4), host_cpus=16, host_memory=64000)
    assert [(n.name, n.cpus, n.memory_mb) for n in nodes][-1] == ("local-3", 4, 16000)
    sized = virtual_nodes("local", GateOptions(nodes=2, cpus=8, memory_mb=100, gpus=1), 2, 10)
    assert {(n.cpus, n.memory_mb, n.gpus) for n in sized} == {(8, 100, 1)}


def test_host_memory_is_read_from_meminfo() -> None:
    assert host_memory_mb("MemTotal:       24684092 kB\nMemFree: 1 kB\n") == 24105
