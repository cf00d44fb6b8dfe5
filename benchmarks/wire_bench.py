"""Signing and verifying one message of the wire format (schemas.wire), as every component
does for every message it sends or receives: ``sign_us`` and ``verify_us``, microseconds per
message, for a typical submission (a 20-line script and a few options)."""

from __future__ import annotations

import time

import msgspec

from benchmarks.figures import emit
from schemas import subjects
from schemas.commands import SubmitJob
from schemas.ids import MessageId
from schemas.jobs import JobSpec
from schemas.roster import Identity, Role, Roster
from schemas.wire import Signer, Verifier, new_user_seed

SCRIPT = "#!/bin/bash\n" + "".join(f"echo step {i}; sleep 0\n" for i in range(20))


def main(n: int = 5000) -> None:
    signer = Signer(new_user_seed())
    verifier = Verifier(Roster([Identity(name="alice", role=Role.USER, key=signer.public_key)]))
    cmd = SubmitJob(
        id=MessageId("0" * 32), at=time.time(), spec=JobSpec(script=SCRIPT, name="bench")
    )
    subject = subjects.command_subject(cmd)
    payload = msgspec.json.encode(cmd)

    t0 = time.perf_counter()
    for _ in range(n):
        headers = signer.headers(subject, payload)
    t1 = time.perf_counter()
    for _ in range(n):
        verifier.verify(subject, payload, headers)
    t2 = time.perf_counter()
    emit("sign_us", (t1 - t0) / n * 1e6, "us", payload_bytes=len(payload), messages=n)
    emit("verify_us", (t2 - t1) / n * 1e6, "us", payload_bytes=len(payload), messages=n)


if __name__ == "__main__":
    main()
