"""Hostile bytes on every core subject, from an authenticated connection (real processes).

Hypothesis sends random and mutated payloads and headers: unsigned, signed by an unknown
key, badly signed, signed garbage, and signed commands tampered with after signing. Nothing
may crash: core counts each message under a refusal reason, stores nothing from them, and
the deployment still runs a job afterwards."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.connection import Bus, Delivery
from schemas import subjects
from schemas.commands import SubmitJob
from schemas.events import AnyJobEvent, JobCompleted
from schemas.ids import new_message_id
from schemas.jobs import JobSpec
from schemas.wire import SIGNATURE_HEADER, SIGNER_HEADER, Signer, new_user_seed
from tests.conftest import connect_as
from tests.system.harness import Harness, submit_when_ready

pytestmark = pytest.mark.system

SUBJECTS = [
    *(subjects.core_command(verb) for verb in subjects.CoreVerb),
    *(subjects.core_query(name) for name in subjects.CoreQueryName),
]
KINDS = ["unsigned", "unknown_signer", "bad_signature", "signed_garbage", "tampered"]
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=40,
)


class RawNats:
    """A raw protocol connection as one identity: publish anything, then wait for the server
    to have processed it (PING/PONG)."""

    def __init__(self, url: str, signer: Signer, name: str) -> None:
        self.name = name
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.stream = self.sock.makefile("rb")
        info = json.loads(self.stream.readline()[5:])
        connect = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "protocol": 1,
            "nkey": signer.public_key,
            "sig": signer.sign_nonce(info["nonce"]),
        }
        self.sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
        self.barrier()

    def hpub(self, subject: str, headers: dict[str, str], payload: bytes) -> None:
        head = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        head += b"\r\n"
        size = len(head) + len(payload)
        reply = f"{subjects.inbox_of(self.name)}.fuzz"  # as a request would: then verification
        self.sock.sendall(
            f"HPUB {subject} {reply} {len(head)} {size}\r\n".encode() + head + payload + b"\r\n"
        )

    def barrier(self) -> None:
        self.sock.sendall(b"PING\r\n")
        while (line := self.stream.readline().strip()) != b"PONG":
            assert not line.startswith(b"-ERR"), line
            assert line, "the server closed the connection"

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.create(tmp_path / "state")
    h.start_all()
    try:
        yield h
    finally:
        h.stop()


def _message(
    kind: str, payload: bytes, noise: dict[str, str], alice: Signer, subject: str
) -> tuple[dict[str, str], bytes]:
    headers = dict(noise)
    if kind == "unsigned":
        headers.pop(SIGNER_HEADER, None)
        headers.pop(SIGNATURE_HEADER, None)
    elif kind == "unknown_signer":
        headers.update(Signer(new_user_seed()).headers(subject, payload))  # not on the roster
    elif kind == "bad_signature":
        headers.update(alice.headers(subject, payload + b"x"))  # over other bytes
    elif kind == "signed_garbage":
        headers.update(alice.headers(subject, payload))
    else:  # tampered: a real command, changed after it was signed
        cmd = SubmitJob(id=new_message_id(), at=time.time(), spec=JobSpec(script="true"))
        real = msgspec.json.encode(cmd)
        headers.update(alice.headers(subject, real))
        at = len(payload) % len(real)
        payload = real[:at] + bytes([real[at] ^ 0x20]) + real[at + 1 :]
    return headers, payload


async def _run_a_job(h: Harness) -> None:
    """Submit a trivial job as alice (retrying while core starts) and see it complete."""
    bus: Bus = await connect_as(h.state, h.url, "alice")
    try:
        reply = await submit_when_ready(bus, JobSpec(script="true"))
        assert reply.job_id is not None
        done: asyncio.Future[JobCompleted] = asyncio.get_running_loop().create_future()

        async def on_event(delivery: Delivery[AnyJobEvent]) -> None:
            ev = delivery.incoming.body
            if isinstance(ev, JobCompleted) and not done.done():
                done.set_result(ev)

        await bus.replay(
            subjects.job_events_of("alice", reply.job_id, "job_completed"),
            msgspec.json.Decoder(AnyJobEvent),
            on_event,
        )
        await asyncio.wait_for(done, 30)
    finally:
        await bus.close()


def test_hostile_messages_are_each_refused_and_the_deployment_runs_on(
    deployment: Harness,
) -> None:
    h = deployment
    asyncio.run(_run_a_job(h))  # core is up and its subscriptions are in place
    alice = h.state.load_signer("alice")
    raw = RawNats(h.url, alice, "alice")
    # The server lets only the scheduler publish on its verbs: alice's bytes go there through
    # the scheduler's connection, so that core's own checks meet them too.
    via_scheduler = RawNats(h.url, h.state.load_signer("scheduler"), "scheduler")
    schedulers = {subjects.core_command(v) for v in subjects.SCHEDULER_VERBS}
    sent = 0

    @given(
        kind=st.sampled_from(KINDS),
        subject=st.sampled_from(SUBJECTS),
        payload=st.binary(max_size=3000) | st.text(max_size=500).map(str.encode),
        noise=st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=4),
    )
    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def send(kind: str, subject: str, payload: bytes, noise: dict[str, str]) -> None:
        nonlocal sent
        headers, body = _message(kind, payload, noise, alice, subject)
        conn = via_scheduler if subject in schedulers else raw
        conn.hpub(subject, headers, body)
        conn.barrier()
        sent += 1

    try:
        send()
    finally:
        raw.close()
        via_scheduler.close()
    asyncio.run(_run_a_job(h))  # the deployment still runs jobs
    h.kill("core", signal.SIGTERM)  # a clean stop logs its refusal counts
    counts = re.findall(r"messages refused: (\{.*\})", h.log("core"))
    assert counts, h.log("core")[-2000:]
    refused = json.loads(counts[-1].replace("'", '"'))
    assert sum(refused.values()) == sent, (refused, sent)
    # place and waiting are the scheduler's: alice's signed messages there are refused
    reasons = {"unsigned", "unknown_signer", "bad_signature", "malformed", "not_allowed"}
    assert set(refused) <= reasons
    with sqlite3.connect(h.state.core_db) as db:  # only the two real jobs were stored
        jobs = db.execute("SELECT COUNT(DISTINCT stream_id) FROM events").fetchone()[0]
    assert jobs == 2
