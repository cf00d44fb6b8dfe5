"""The exit code of ``skyport submit --wait/--follow``, as docs/cli.md states it."""

from __future__ import annotations

import msgspec
import pytest

from schemas.jobs import JobState
from terminals.cli.streams import exit_code_of
from tests.terminals.fakecore import detail


@pytest.mark.parametrize(
    ("state", "exit_code", "expected"),
    [
        (JobState.COMPLETED, None, 0),
        (JobState.COMPLETED, 0, 0),
        (JobState.FAILED, 3, 3),
        (JobState.FAILED, 255, 255),
        (JobState.FAILED, 256, 1),
        (JobState.FAILED, -9, 1),
        (JobState.FAILED, 0, 1),
        (JobState.FAILED, None, 1),
        (JobState.CANCELLED, 143, 1),  # SIGTERM'd by the cancel: still "cancelled", exit 1
        (JobState.CANCELLED, 7, 1),
        (JobState.CANCELLED, None, 1),
    ],
)
def test_submit_wait_exit_code(state: JobState, exit_code: int | None, expected: int) -> None:
    job = detail("1")
    summary = msgspec.structs.replace(job.summary, state=state, exit_code=exit_code)
    assert exit_code_of(msgspec.structs.replace(job, summary=summary)) == expected
