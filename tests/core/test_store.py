"""Store tests on a temporary SQLite file: concurrency, inbox, snapshots, projections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.batch import Commit, State, Working, apply, decide_command
from core.job import Actor, Job, replay
from core.store import ConcurrencyError, Store
from schemas.commands import Accepted, CancelJob, HoldJob, SubmitJob
from schemas.events import JobUsageRecorded
from schemas.ids import GateName, JobId, MessageId, UserName
from schemas.jobs import JobSpec, JobState

ALICE = Actor(name=UserName("alice"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'core.db'}")
    yield s
    s.close()


def submit(i: int) -> SubmitJob:
    return SubmitJob(id=MessageId(f"s{i}"), at=1.0, spec=JobSpec(script="x", name=f"n{i % 2}"))


def batch(store: Store, state: State, commands: list[SubmitJob | CancelJob | HoldJob]) -> Commit:
    work = Working(state, {}, 5.0)
    for cmd in commands:
        reply = decide_command(work, ALICE, cmd)
        assert isinstance(reply, Accepted), reply  # every step of these tests is allowed
        work.mark(f"k{cmd.id}", reply)
    store.commit(work.commit)
    apply(state, work.commit)
    return work.commit


def test_sqlite_runs_in_wal_mode_with_full_sync(store: Store) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_second_append_of_the_same_version_is_a_concurrency_error(store: Store) -> None:
    state = State()
    commit = batch(store, state, [submit(1)])
    with pytest.raises(ConcurrencyError):
        store.commit(Commit(events=commit.events))
    assert len(store.events_after(0, 100)) == 1


def test_a_failed_commit_writes_nothing(store: Store) -> None:
    state = State()
    first = batch(store, state, [submit(1)])
    work = Working(state, {}, 6.0)
    decide_command(work, ALICE, submit(2))
    work.commit.events.extend(first.events)  # a conflicting event in the same transaction
    with pytest.raises(ConcurrencyError):
        store.commit(work.commit)
    assert store.last_job_id() == 1
    assert len(store.events_after(0, 100)) == 1


def test_inbox_returns_the_stored_reply_of_a_seen_key(store: Store) -> None:
    batch(store, State(), [submit(1)])
    seen, _ = store.lookup(["ks1", "ks2"], [])
    assert list(seen) == ["ks1"]
    assert b'"job_id":"1"' in seen["ks1"]


def test_ids_core_never_issues_find_no_job_and_raise_nothing(store: Store) -> None:
    batch(store, State(), [submit(1)])
    hostile = [JobId(t) for t in ("²", "9" * 30, "01", "-1", "", "1.0")]
    seen, jobs = store.lookup(["ks1"], [*hostile, JobId("1")])
    assert list(seen) == ["ks1"] and list(jobs) == ["1"]
    for job_id in hostile:
        assert store.snapshot(job_id) is None
    assert store.snapshot(JobId("1")) is not None


def test_snapshot_reload_equals_replay(store: Store) -> None:
    state = State()
    batch(store, state, [submit(i) for i in range(1, 6)])
    batch(
        store,
        state,
        [
            HoldJob(id=MessageId("h"), at=2.0, job_id=JobId("2")),
            CancelJob(id=MessageId("c"), at=2.0, job_id=JobId("3")),
        ],
    )
    loaded = {j.job_id: j for j in store.load_active()}
    assert set(loaded) == {"1", "2", "4", "5"}
    assert loaded == state.jobs
    for job_id, job in loaded.items():
        assert replay(store.job_events(job_id)) == job
    assert store.snapshot(JobId("3")) == replay(store.job_events(JobId("3")))
    assert store.last_job_id() == 5


def test_list_jobs_filters_by_state_user_name_and_pages(store: Store) -> None:
    state = State()
    batch(store, state, [submit(i) for i in range(1, 13)])
    batch(store, state, [CancelJob(id=MessageId("c"), at=2.0, job_id=JobId("10"))])
    assert len(store.list_jobs((), False, None, None, 0, 100)) == 11
    assert len(store.list_jobs((), True, None, None, 0, 100)) == 12
    assert len(store.list_jobs((JobState.CANCELLED,), False, None, None, 0, 100)) == 1
    assert len(store.list_jobs((), True, "bob", None, 0, 100)) == 0
    assert len(store.list_jobs((), True, None, "n1", 0, 100)) == 6
    page = store.list_jobs((), True, None, None, 9, 2)
    assert len(page) == 3 and b'"job_id":"10"' in page[0]  # numeric order, one extra row


def test_the_relay_cursor_persists(store: Store) -> None:
    assert store.cursor("events") == 0
    store.set_cursor("events", 7)
    store.set_cursor("events", 9)
    assert store.cursor("events") == 9
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from cursors")).scalar() == 1


def test_accepted_submissions_get_sequential_ids(store: Store) -> None:
    state = State(last_job_id=store.last_job_id())
    work = Working(state, {}, 1.0)
    replies = [decide_command(work, ALICE, submit(i)) for i in range(3)]
    assert [r.job_id for r in replies if isinstance(r, Accepted)] == ["1", "2", "3"]


def test_a_commit_returns_what_it_appended_with_the_stored_positions(store: Store) -> None:
    state = State()
    first = batch(store, state, [submit(1), submit(2)])
    work = Working(state, {}, 6.0)
    decide_command(work, ALICE, submit(3))
    committed = store.commit(work.commit)
    stored = store.events_after(0, 100)
    assert len(first.events) == 2
    assert [(pos, owner, ev) for pos, owner, ev in stored][2:] == committed.events
    assert [pos for pos, _, _ in stored] == [1, 2, 3]


def _used(n: int, owner: str, account: str, ended_at: float, hours: float, cost: float) -> Commit:
    job = Job(job_id=JobId(str(n)), owner=UserName(owner), spec=JobSpec(script="x"), version=4)
    usage = JobUsageRecorded(
        event_id=MessageId(f"{n}-4"),
        job_id=job.job_id,
        at=ended_at,
        attempt=1,
        owner=job.owner,
        account=account,
        gate=GateName("local"),
        started_at=ended_at - 10,
        ended_at=ended_at,
        nodes=1,
        node_hours=hours,
        cost=cost,
    )
    return Commit(events=[(job, usage)])


def test_usage_is_summed_per_user_and_account_over_a_period(store: Store) -> None:
    for commit in (
        _used(1, "alice", "physics", 100.0, 1.0, 2.0),
        _used(2, "alice", "physics", 200.0, 0.5, 1.0),
        _used(3, "alice", "alice", 300.0, 2.0, 0.0),
        _used(4, "bob", "physics", 150.0, 4.0, 8.0),
    ):
        store.commit(commit)
    assert store.usage_totals(None, None, None) == [
        ("alice", "alice", 1, 2.0, 0.0),
        ("alice", "physics", 2, 1.5, 3.0),
        ("bob", "physics", 1, 4.0, 8.0),
    ]
    assert store.usage_totals(150.0, 300.0, None) == [  # [since, until)
        ("alice", "physics", 1, 0.5, 1.0),
        ("bob", "physics", 1, 4.0, 8.0),
    ]
    assert store.usage_totals(None, None, "bob") == [("bob", "physics", 1, 4.0, 8.0)]
    assert store.usage_totals(1000.0, None, None) == []
    # what a budget's period has used: by user, or by account, from its start on
    assert store.spent_since("user", "alice", 0.0) == 3.0
    assert store.spent_since("account", "physics", 150.0) == 9.0
    assert store.spent_since("user", "carol", 0.0) == 0.0
