"""The shell that supervises one local run; it outlives the gate, so exit statuses do too.

Started by the gate in a new session (stdin/stdout/stderr on /dev/null) with a fixed, minimal
environment (``SHIM_ENV``): nothing of the job's environment reaches this shell, so neither
``BASH_ENV`` nor ``SHELLOPTS`` can run code before it records itself or make it exit early.
It runs the job script (by its ``#!`` interpreter, else with ``bash``) in the work
directory, in its own process group (job control, ``set -m``; the group id is written to
``job.pid``), with output to the run's ``stdout`` and ``stderr`` files. The job's
environment comes from ``job.env`` (``KEY=VALUE`` entries, NUL-separated, written by the
gate): the background subshell that becomes the job exports them and then execs the script,
so the job, and only the job, sees them. When the script ends the shell kills what is left
of the group and writes the exit status (as the shell reports it: 128 + n for signal n) to
``exit``. The gate signals the job's process group, never this shell, so the status is
written even after SIGKILL. Readers trust ``exit`` only once this shell has exited.

It writes its own pid to ``shim.pid`` first, so that a gate killed between the spawn and
saving the handle finds the run again (``LocalGate.recover``).

Costs ~2 ms (bash) and no process besides the job's; a Python supervisor would cost ~15 ms
per job. Inside the subshell only ``$1`` (a positional parameter, which no exported variable
can replace) names the run directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gates.environment import DEFAULT_PATH

SHIM_ENV = {"PATH": DEFAULT_PATH}
# Read-only in every bash: the subshell cannot export them, so they are not passed on.
BASH_READONLY = frozenset({"BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"})

SHIM = r"""
d=$1
printf '%s\n' "$$" >"$d/shim.pid"
cd "$d/workdir" || { printf '127\n' >"$d/exit"; exit 0; }
# SKYPORT_* names are refused in job specs, so no entry can clash with this array's name;
# PATH (the shim's, exported already) is named first so that export never lists.
mapfile -d '' -t SKYPORT_SHIM_ENV <"$d/job.env"
set -m
if [ "$2" = exec ]; then
  ( export -- PATH "${SKYPORT_SHIM_ENV[@]}"; exec "$1/job.sh" ) \
    </dev/null >>"$d/stdout" 2>>"$d/stderr" &
else
  ( export -- PATH "${SKYPORT_SHIM_ENV[@]}"; exec bash "$1/job.sh" ) \
    </dev/null >>"$d/stdout" 2>>"$d/stderr" &
fi
job=$!
printf '%s\n' "$job" >"$d/job.pid"
wait "$job"
rc=$?
kill -KILL -- "-$job" 2>/dev/null
printf '%s\n' "$rc" >"$d/exit"
"""


def env_file(env: Mapping[str, str]) -> bytes:
    """The content of ``job.env``: what the job's environment is, as the shim reads it."""
    return b"".join(
        os.fsencode(f"{key}={value}") + b"\0"
        for key, value in env.items()
        if key not in BASH_READONLY
    )


def argv(bash: str, run_dir: str, has_shebang: bool) -> list[str]:
    """The command line of the supervising shell of the run in ``run_dir``. A script with a
    ``#!`` line is executed by its own interpreter (as sbatch does); others run with bash."""
    mode = "exec" if has_shebang else "bash"
    return [bash, "--noprofile", "--norc", "-c", SHIM, "skyport-shim", run_dir, mode]
