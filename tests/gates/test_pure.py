"""Outcomes, UTF-8 chunking of output, and virtual nodes. Pure."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gates import records
from gates.base import GateOptions
from gates.local.nodes import host_memory_mb, virtual_nodes
from gates.logs import MAX_CHUNK, MAX_READ, OutputTail, decode_prefix
from gates.outcome import StopCause, verdict
from gates.records import Phase
from schemas.jobs import FailReason, JobSpec, RunOutcome
from tests.gates.conftest import start_run


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
    assert tail.pending(final=False) == []  # not created yet
    path.write_bytes(b"a" * (MAX_CHUNK + 10))
    chunks = tail.pending(final=False)
    assert [(c.offset, c.nbytes) for c in chunks] == [(0, MAX_CHUNK), (MAX_CHUNK, 10)]
    for chunk in chunks:
        tail.advance(chunk)
    with path.open("ab") as f:
        f.write("ü\n".encode())
    assert tail.pending(final=False) == [(MAX_CHUNK + 10, "ü\n", 3)]


def test_tail_moves_on_only_past_the_chunks_it_is_told_went_out(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    path.write_bytes(b"x" * (MAX_CHUNK + 1))
    tail = OutputTail(path)
    first, _second = tail.pending(final=False)
    tail.advance(first)  # the second one failed to publish: it is read again
    assert [(c.offset, c.nbytes) for c in tail.pending(final=False)] == [(MAX_CHUNK, 1)]


def test_one_read_of_a_huge_output_is_bounded_and_the_rest_comes_later(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    # a multi-byte character straddles the read limit: it is never cut in two
    data = b"a" * (MAX_READ - 1) + "€".encode() + b"b" * (2 * MAX_READ)
    path.write_bytes(data)
    tail = OutputTail(path)
    texts = []
    while chunks := tail.pending(final=True):
        assert sum(c.nbytes for c in chunks) <= MAX_READ
        for chunk in chunks:
            tail.advance(chunk)
        texts.append("".join(c.text for c in chunks))
    assert len(texts) == 4
    assert "".join(texts) == data.decode()


def test_an_incomplete_character_at_the_end_is_replaced_only_in_the_final_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stdout"
    path.write_bytes(b"ok" + "€".encode()[:2])
    tail = OutputTail(path)
    assert tail.pending(final=False) == [(0, "ok", 2)]
    assert tail.pending(final=True) == [(0, "ok\ufffd", 4)]


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


def test_the_end_of_a_run_is_recorded_in_place_and_frees_no_inode(tmp_path: Path) -> None:
    paths = records.run_paths(tmp_path, "7", 1)
    first = records.RunRecord(start=start_run(JobSpec(script="true")), phase=Phase.STAGING_IN)
    records.create(paths, first)
    inode = paths.record.stat().st_ino
    stop = records.StopInfo(cause=StopCause.CANCEL, why="x" * 500, grace_s=1.0, term_at=0.0)
    longer = msgspec.structs.replace(first, phase=Phase.ENDED, stop=stop)
    records.save_ended(paths, longer)
    assert paths.record.stat().st_ino == inode
    assert records.load(paths) == longer
    shorter = msgspec.structs.replace(first, phase=Phase.ENDED)
    records.save_ended(paths, shorter)  # cut to the new length: no stale tail
    assert records.load(paths) == shorter
    assert paths.record.stat().st_ino == inode


def test_log_offsets_are_rewritten_in_place_and_a_torn_file_means_from_the_start(
    tmp_path: Path,
) -> None:
    paths = records.run_paths(tmp_path, "7", 1)
    paths.root.mkdir(parents=True)
    records.save_log_offsets(paths, {"stdout": 123456, "stderr": 7})
    inode = paths.log_offsets.stat().st_ino
    records.save_log_offsets(paths, {"stdout": 9, "stderr": 0})
    assert records.log_offsets(paths) == {"stdout": 9, "stderr": 0}
    assert paths.log_offsets.stat().st_ino == inode
    paths.log_offsets.write_bytes(b'{"stdout": 12')  # a write cut short by a crash
    assert records.log_offsets(paths) == {}
