"""The job spec refuses what no gate should be asked to run, whoever built it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from schemas.jobs import MAX_SPEC_BYTES, JobSpec, NodeShape, node_share


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"script": "\x01" * 400_000}, "bytes encoded"),
        ({"script": "x", "env": {f"V{i}": "x" * 30_000 for i in range(10)}}, "environment"),
        ({"script": "x", "env": {"SKYPORT_JOB_ID": "1"}}, "reserved"),
        ({"script": "x", "env": {"A-B": "1"}}, "invalid environment variable"),
        ({"script": "x", "env": {"SHELLOPTS": "errexit"}}, "read-only"),
        ({"script": "x", "nodes": 0}, ">= 1"),
        ({"script": "x", "outputs": ["a/../../b"]}, ".."),
        ({"script": "x", "outputs": ["/etc/passwd"]}, "absolute"),
        ({"script": "x", "outputs": ["."]}, "work directory itself"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=words):
        msgspec.convert(fields, JobSpec)


def test_the_largest_accepted_spec_fits_every_message_that_carries_it() -> None:
    spec = JobSpec(script="x" * 500_000, env={f"V{i}": "y" * 2_000 for i in range(100)})
    assert len(msgspec.json.encode(spec)) <= MAX_SPEC_BYTES


def test_node_sizes_are_bounded_on_the_wire() -> None:
    with pytest.raises(msgspec.ValidationError, match="16384"):
        msgspec.convert({"name": "n", "cpus": 3_000_000, "memory_mb": 1}, NodeShape)


def test_a_node_share_is_its_largest_fraction_of_cpus_memory_or_gpus() -> None:
    node = NodeShape(name="n", cpus=8, memory_mb=1000, gpus=4, price_per_hour=2.0)
    assert node_share(node, cpus=2, memory_mb=0, gpus=0) == 0.25
    assert node_share(node, cpus=1, memory_mb=500, gpus=0) == 0.5  # memory dominates
    assert node_share(node, cpus=1, memory_mb=0, gpus=3) == 0.75  # GPUs dominate
    assert node_share(node, cpus=8, memory_mb=1000, gpus=4) == 1.0
    bare = NodeShape(name="b", cpus=4, memory_mb=0)  # no memory or GPUs reported
    assert node_share(bare, cpus=2, memory_mb=100, gpus=1) == 0.5


def test_a_spec_names_each_dependency_once_and_at_most_64() -> None:
    twice = [{"kind": "afterok", "job_id": "3"}, {"kind": "afternotok", "job_id": "3"}]
    with pytest.raises(msgspec.ValidationError, match="named twice"):
        msgspec.convert({"script": "x", "dependencies": twice}, JobSpec)
    many = [{"kind": "afterany", "job_id": str(n)} for n in range(1, 66)]
    with pytest.raises(msgspec.ValidationError, match="length <= 64"):
        msgspec.convert({"script": "x", "dependencies": many}, JobSpec)
