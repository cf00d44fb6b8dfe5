"""Authentication by the real nats-server with the configuration Sky Port writes: every
connection proves an nkey of the roster, and the roster can change while the server runs."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from bus import quick, server
from bus.deployment import StateDir
from schemas import subjects
from schemas.commands import ListJobs
from schemas.ids import new_message_id
from schemas.roster import Role
from schemas.wire import Signer, new_user_seed
from tests.rawproto import handshake, pub, sub

CREATE = "$JS.API.CONSUMER.CREATE"


@pytest.mark.parametrize(
    "name, then",
    [
        ("local", pub(subjects.job_event("alice", "1", "job_completed"))),  # a core event
        ("local", pub(subjects.gate_event("other", "run_ended"))),  # another gate's report
        ("local", pub(subjects.core_command(subjects.CoreVerb.CANCEL))),
        ("local", sub(subjects.gate_commands_of("other"))),  # another gate's commands
        ("local", sub(subjects.ALL_JOB_EVENTS)),
        (
            "local",
            pub(
                "$JS.API.CONSUMER.CREATE.SKYPORT_GATE_COMMANDS.gate-local."
                + subjects.gate_commands_of("other")
            ),
        ),  # a consumer of them
        ("local", pub("$JS.API.STREAM.DELETE.SKYPORT_JOB_EVENTS")),
        ("local", sub(f"{subjects.inbox_of('alice')}.>")),  # someone else's replies
        ("scheduler", sub(f"{subjects.inbox_of('core')}.>")),
        ("scheduler", pub(subjects.job_event("alice", "1", "job_completed"))),
        ("scheduler", pub(subjects.gate_command("local", "start"))),
        ("scheduler", pub(subjects.core_command(subjects.CoreVerb.SUBMIT))),
        ("scheduler", pub(f"{subjects.inbox_of('alice')}.x")),  # only replies to its queries
        ("local", pub(subjects.scheduler_query(subjects.SchedulerQueryName.PLAN))),
        ("alice", sub(subjects.SCHEDULER_QUERIES)),
        ("scheduler", pub(f"{CREATE}.{subjects.STREAM_LOGS}.x.{subjects.ALL_LOGS}")),
        ("scheduler", pub(f"$O.{subjects.files_bucket('alice')}.M.eA")),
        # a user: another user's events and logs, however asked for
        ("alice", sub(subjects.job_events_of("bob"))),
        ("alice", sub(subjects.logs_of("bob", "1"))),
        ("alice", sub(subjects.ALL_JOB_EVENTS)),
        ("alice", sub(subjects.CORE_COMMANDS)),  # everyone's commands
        ("alice", pub(f"{CREATE}.{subjects.STREAM_JOB_EVENTS}.x.{subjects.job_events_of('bob')}")),
        ("alice", pub(f"{CREATE}.{subjects.STREAM_JOB_EVENTS}.x.{subjects.ALL_JOB_EVENTS}")),
        ("alice", pub(f"{CREATE}.{subjects.STREAM_LOGS}.x.{subjects.logs_of('bob', '1')}")),
        ("alice", pub(f"{CREATE}.{subjects.STREAM_JOB_EVENTS}")),  # no filter in the subject
        ("alice", pub(f"$JS.API.CONSUMER.DURABLE.CREATE.{subjects.STREAM_LOGS}.x")),
        ("alice", pub(f"$JS.API.DIRECT.GET.{subjects.STREAM_JOB_EVENTS}")),
        ("alice", pub(f"$JS.API.STREAM.MSG.GET.{subjects.STREAM_LOGS}")),
        ("alice", pub(f"$JS.API.STREAM.INFO.{subjects.STREAM_JOB_EVENTS}")),
        ("alice", pub(f"$O.{subjects.files_bucket('bob')}.M.eA")),  # bob's files
        ("alice", pub(f"{CREATE}.{subjects.bucket_stream(subjects.files_bucket('bob'))}")),
        ("alice", pub(subjects.core_command(subjects.CoreVerb.PLACE))),
        ("alice", pub(subjects.core_command(subjects.CoreVerb.WAITING))),
        ("alice", pub(subjects.job_event("alice", "1", "job_completed"))),  # even her own
        ("alice", pub(subjects.gate_command("local", "start"))),
        ("alice", sub(f"{subjects.inbox_of('bob')}.>")),
        ("admin", pub(subjects.core_command(subjects.CoreVerb.PLACE))),
        ("admin", pub(subjects.core_command(subjects.CoreVerb.WAITING))),
        ("admin", pub(subjects.job_event("alice", "1", "job_completed"))),
        ("admin", sub(subjects.ALL_LOGS)),  # reads through consumers, never by subscription
        # core: only what it serves and writes
        ("core", pub(subjects.gate_event("local", "run_ended"))),
        ("core", pub(subjects.log("alice", "1", "local", subjects.LogStream.STDOUT))),
        ("core", sub(subjects.ALL_JOB_EVENTS)),
        ("core", sub(f"{subjects.inbox_of('alice')}.>")),
        ("core", pub("$JS.API.STREAM.DELETE.SKYPORT_JOB_EVENTS")),
        ("core", pub(f"{CREATE}.{subjects.STREAM_LOGS}.x.{subjects.ALL_LOGS}")),
    ],
)
def test_a_component_is_refused_what_its_role_does_not_need(
    state: StateDir, nats_url: str, name: str, then: bytes
) -> None:
    answer = handshake(nats_url, state.load_signer(name), then)
    assert answer.startswith("-ERR 'Permissions Violation"), answer


@pytest.mark.parametrize(
    "name, then",
    [
        (
            "alice",
            pub(f"{CREATE}.{subjects.STREAM_JOB_EVENTS}.x.{subjects.job_events_of('alice')}"),
        ),
        ("alice", pub(f"{CREATE}.{subjects.STREAM_LOGS}.x.{subjects.logs_of('alice', '7')}")),
        ("alice", pub(f"$O.{subjects.files_bucket('alice')}.M.eA")),
        ("alice", pub(subjects.core_command(subjects.CoreVerb.CANCEL))),
        ("alice", pub(subjects.scheduler_query(subjects.SchedulerQueryName.PLAN))),
        ("scheduler", sub(subjects.SCHEDULER_QUERIES)),
        ("alice", sub(f"{subjects.inbox_of('alice')}.x")),
        ("admin", pub(f"{CREATE}.{subjects.STREAM_JOB_EVENTS}.x.{subjects.ALL_JOB_EVENTS}")),
        ("admin", pub(f"{CREATE}.{subjects.STREAM_LOGS}.x.{subjects.logs_of('bob', '7')}")),
        ("admin", pub(f"$O.{subjects.files_bucket('bob')}.M.eA")),
        ("local", pub(f"$O.{subjects.files_bucket('bob')}.C.x")),  # stage out bob's outputs
        ("core", pub(subjects.job_event("alice", "1", "job_completed"))),
        ("core", pub(f"{subjects.inbox_of('alice')}.x")),  # a reply
        ("core", sub(subjects.CORE_COMMANDS)),
    ],
)
def test_an_identity_may_use_what_its_role_needs(
    state: StateDir, nats_url: str, name: str, then: bytes
) -> None:
    assert handshake(nats_url, state.load_signer(name), then) == "PONG"


def test_a_gate_may_use_its_own_subjects(state: StateDir, nats_url: str) -> None:
    own = (
        pub(subjects.gate_event("local", "run_ended"))
        + pub(subjects.log("alice", "1", "local", subjects.LogStream.STDOUT))
        + sub(f"{subjects.inbox_of('local')}.x")
    )
    assert handshake(nats_url, state.load_signer("local"), own) == "PONG"


def test_a_connection_without_credentials_is_refused(nats_url: str) -> None:
    assert "Authorization Violation" in handshake(nats_url, None)


def test_a_key_not_on_the_roster_is_refused(nats_url: str) -> None:
    assert "Authorization Violation" in handshake(nats_url, Signer(new_user_seed()))


def test_a_key_on_the_roster_is_let_in(state: StateDir, nats_url: str) -> None:
    assert handshake(nats_url, state.load_signer("alice")) == "PONG"


def test_quick_requests_authenticate_with_the_key_they_sign_with(
    state: StateDir, nats_url: str
) -> None:
    query = ListJobs(id=new_message_id(), at=time.time())
    subject = subjects.query_subject(query)
    # a known key connects and only finds nobody serving the subject
    with pytest.raises(quick.QuickTimeoutError):
        quick.request(nats_url, state.load_signer("alice"), state.load_roster(), subject, query)
    stranger = Signer(new_user_seed())
    with pytest.raises(quick.QuickError, match="(?i)authorization"):
        quick.request(nats_url, stranger, state.load_roster(), subject, query, timeout=3)


async def test_an_added_identity_connects_after_a_reload_and_a_removed_one_is_cut_off(
    state: StateDir, nats_server: server.RunningServer
) -> None:
    url = nats_server.url
    state.ensure_identity("carol", Role.USER)
    carol_signer = state.load_signer("carol")
    assert "Authorization Violation" in handshake(url, carol_signer)  # not loaded yet
    server.reload(nats_server, state.root)
    async with asyncio.timeout(5):
        while handshake(url, carol_signer) != "PONG":
            await asyncio.sleep(0.05)
    dropped = asyncio.Event()

    async def on_disconnect() -> None:
        dropped.set()

    carol = await nats.connect(
        url,
        nkeys_seed=str(state.seed_path("carol")),
        allow_reconnect=False,
        disconnected_cb=on_disconnect,
    )
    try:
        started = time.monotonic()
        assert state.remove_identity("carol")
        server.reload(nats_server, state.root)
        async with asyncio.timeout(5):  # revoked: dropped within 5 s, nothing restarted
            await dropped.wait()
        assert time.monotonic() - started < 5
    finally:
        await carol.close()
    assert "Authorization Violation" in handshake(url, carol_signer)
    assert not state.seed_path("carol").exists()
    assert handshake(url, state.load_signer("alice")) == "PONG"  # the others stay
