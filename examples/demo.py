"""`make demo`: a real job end to end on the embedded deployment, as a user would run it.

Starts the deployment (nats-server, core, scheduler, local gate) in a fresh state directory,
submits examples/hello/job.sh with --follow (live log, final state), shows the job's
history, fetches its staged-out output, prints it, and stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKYPORT = str(Path(sys.executable).with_name("skyport"))


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"\n$ skyport {' '.join(args)}", flush=True)
    return subprocess.run([SKYPORT, *args], cwd=ROOT, text=True, check=check)


def only_job_id() -> str:
    """The id of the one job of this fresh deployment."""
    listing = subprocess.run(
        [SKYPORT, "jobs", "--all", "--json"], cwd=ROOT, text=True, capture_output=True, check=True
    )
    jobs = json.loads(listing.stdout)
    if len(jobs) != 1:
        raise SystemExit(f"demo: expected one job, found {len(jobs)}")
    return str(jobs[0]["job_id"])


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="skyport-demo-"))
    os.environ["SKYPORT_HOME"] = str(home)
    out_dir = ROOT / "demo-output"
    try:
        run("up", "--detach")
        submit = run("submit", "--follow", "examples/hello/job.sh", check=False)
        job = only_job_id()
        run("show", job)
        run("fetch", job, str(out_dir))
        print(f"\n--- {out_dir / 'report.txt'} ---", flush=True)
        print((out_dir / "report.txt").read_text(), end="")
        if submit.returncode != 0:
            print(f"demo: the job failed (exit {submit.returncode})", file=sys.stderr)
            return 1
        print(f"\nThe demo job completed; its output is in demo-output/, logs in {home}/logs.")
        return 0
    finally:  # stop first, print after: a closed stdout (| head) must not leave it running
        down = subprocess.run([SKYPORT, "down"], text=True, capture_output=True)
        left = subprocess.run([SKYPORT, "status"], text=True, capture_output=True)
        with contextlib.suppress(BrokenPipeError):
            print(f"\n$ skyport down\n{down.stdout}{down.stderr}", end="", flush=True)
            if left.returncode != 3:
                print("demo: something is still running:\n" + left.stdout, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
