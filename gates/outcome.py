"""How a run ended, from its exit status and whether the gate stopped it. Pure.

Exit codes are as a shell reports them: a script killed by signal n has exit code 128 + n
(the run is supervised by a shell, which cannot tell ``exit 137`` from SIGKILL; neither can
we, so statuses 129-192 are reported as signals). A run the gate stopped is ``cancelled``
(StopRun) or ``failed/timeout`` (time limit), whatever its exit code.
"""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import NamedTuple, assert_never

from schemas.jobs import FailReason, RunOutcome

SIGNAL_BASE = 128
MAX_SIGNAL = 64


class StopCause(StrEnum):
    """Why the gate signalled a run."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"


class Verdict(NamedTuple):
    outcome: RunOutcome
    reason: FailReason | None
    exit_code: int | None
    detail: str


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def verdict(
    code: int | None, cause: StopCause | None, why: str = "", time_limit_s: int = 0
) -> Verdict:
    """The outcome of a run with exit ``code`` (None: lost), stopped for ``cause`` (or not)."""
    status = "exit status lost" if code is None else f"exit status {code}"
    if cause is not None:
        match cause:
            case StopCause.CANCEL:
                return Verdict(RunOutcome.CANCELLED, None, code, f"stopped ({why}), {status}")
            case StopCause.TIMEOUT:
                detail = f"time limit of {time_limit_s} s reached, {status}"
                return Verdict(RunOutcome.FAILED, FailReason.TIMEOUT, code, detail)
            case _:
                assert_never(cause)
    if code is None:
        detail = "the run's supervising process died without recording an exit status"
        return Verdict(RunOutcome.FAILED, FailReason.NODE_FAILURE, None, detail)
    if code == 0:
        return Verdict(RunOutcome.COMPLETED, None, 0, "exit status 0")
    if SIGNAL_BASE < code <= SIGNAL_BASE + MAX_SIGNAL:
        name = signal_name(code - SIGNAL_BASE)
        return Verdict(RunOutcome.FAILED, FailReason.SIGNAL, code, f"killed by {name} ({status})")
    return Verdict(RunOutcome.FAILED, FailReason.EXIT_CODE, code, status)
