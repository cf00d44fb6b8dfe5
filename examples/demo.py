"""`make demo`: a real job end to end on the embedded deployment, as a user would run it.

Starts the deployment (nats-server, core, scheduler, local gate) in a fresh state directory,
submits examples/hello/job.sh with --follow (live log, final state), shows the job's
history, fetches its staged-out output, prints it, and stops everything it started.
"""

from __future__ import annotations

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


def job_id_of(submit_output: str) -> str:
    for word in submit_output.split():
        if word.isdigit():
            return word
    raise SystemExit(f"demo: no job id in {submit_output!r}")


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="skyport-demo-"))
    os.environ["SKYPORT_HOME"] = str(home)
    out_dir = ROOT / "demo-output"
    try:
        run("up", "--detach")
        print("\n$ skyport submit --follow examples/hello/job.sh", flush=True)
        submit = subprocess.run(
            [SKYPORT, "submit", "--follow", "examples/hello/job.sh"],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            check=False,
        )
        print(submit.stdout, end="", flush=True)
        job = job_id_of(submit.stdout.splitlines()[0])
        run("show", job)
        run("fetch", job, str(out_dir))
        print(f"\n--- {out_dir / 'report.txt'} ---", flush=True)
        print((out_dir / "report.txt").read_text(), end="")
        if submit.returncode != 0:
            print(f"demo: the job failed (exit {submit.returncode})", file=sys.stderr)
            return 1
        print(f"\nThe demo job completed; its output is in demo-output/, logs in {home}/logs.")
        return 0
    finally:
        run("down", check=False)
        left = subprocess.run([SKYPORT, "status"], text=True, capture_output=True)
        if left.returncode != 3:
            print("demo: something is still running:\n" + left.stdout, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
