"""The shell that supervises one local run; it outlives the gate, so exit statuses do too.

Started by the gate in a new session (stdin/stdout/stderr on /dev/null), it runs the job
script (by its ``#!`` interpreter, else with ``bash``) in the work directory, in its own
process group (job control, ``set -m``; the group id is written to ``job.pid``), with output
to the run's ``stdout`` and ``stderr`` files; when the script ends it kills what is left of
the group and writes the exit status (as the shell reports it: 128 + n for signal n) to
``exit``. The gate signals the job's
process group, never this shell, so the status is written even after SIGKILL. Readers trust
``exit`` only once this shell has exited.

It writes its own pid to ``shim.pid`` first, so that a gate killed between the spawn and
saving the handle finds the run again (``LocalGate.recover``).

Costs ~2 ms (bash); a Python supervisor would cost ~15 ms per job.
"""

from __future__ import annotations

SHIM = r"""
d=$1
printf '%s\n' "$$" >"$d/shim.pid"
cd "$d/workdir" || { printf '127\n' >"$d/exit"; exit 0; }
set -m
if [ "$2" = exec ]; then
  "$d/job.sh" </dev/null >>"$d/stdout" 2>>"$d/stderr" &
else
  bash "$d/job.sh" </dev/null >>"$d/stdout" 2>>"$d/stderr" &
fi
job=$!
printf '%s\n' "$job" >"$d/job.pid"
wait "$job"
rc=$?
kill -KILL -- "-$job" 2>/dev/null
printf '%s\n' "$rc" >"$d/exit"
"""


def argv(bash: str, run_dir: str, has_shebang: bool) -> list[str]:
    """The command line of the supervising shell of the run in ``run_dir``. A script with a
    ``#!`` line is executed by its own interpreter (as sbatch does); others run with bash."""
    mode = "exec" if has_shebang else "bash"
    return [bash, "--noprofile", "--norc", "-c", SHIM, "skyport-shim", run_dir, mode]
