"""The wire benchmark runs and reports both figures (its verify raises on a bad signature)."""

from __future__ import annotations

import json

import pytest

from benchmarks import wire_bench


def test_the_wire_benchmark_prints_sign_and_verify_times(
    capsys: pytest.CaptureFixture[str],
) -> None:
    wire_bench.main(n=20)
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["name"] for f in figures] == ["sign_us", "verify_us"]
    assert all(f["unit"] == "us" and f["value"] > 0 for f in figures)
