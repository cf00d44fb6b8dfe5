"""Every subject, stream and bucket name of Sky Port. The only place subjects are spelled.

Variable tokens (owner, job id, gate, verb, tag) are validated with ``check_token`` so that
no value can add a token or a wildcard to a subject.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from schemas.commands import (
    AnyCommand,
    AnyQuery,
    CancelJob,
    GetJob,
    GetUsage,
    HoldJob,
    ListJobs,
    ListOffers,
    PlaceJobs,
    PlanJob,
    ReleaseJob,
    ReportWaiting,
    RequeueJob,
    SubmitJob,
)
from schemas.ids import TOKEN_RE, check_token

ROOT = "skyport.v1"


class CoreVerb(StrEnum):
    SUBMIT = "submit"
    CANCEL = "cancel"
    REQUEUE = "requeue"
    HOLD = "hold"
    RELEASE = "release"
    PLACE = "place"
    WAITING = "waiting"


class SchedulerQueryName(StrEnum):
    PLAN = "plan"


class CoreQueryName(StrEnum):
    JOBS = "jobs"
    JOB = "job"
    OFFERS = "offers"
    USAGE = "usage"


SCHEDULER_VERBS = frozenset({CoreVerb.PLACE, CoreVerb.WAITING})
"""The commands only the scheduler may send; every other verb is a user's."""

VERB_OF: dict[type[AnyCommand], CoreVerb] = {
    SubmitJob: CoreVerb.SUBMIT,
    CancelJob: CoreVerb.CANCEL,
    RequeueJob: CoreVerb.REQUEUE,
    HoldJob: CoreVerb.HOLD,
    ReleaseJob: CoreVerb.RELEASE,
    PlaceJobs: CoreVerb.PLACE,
    ReportWaiting: CoreVerb.WAITING,
}
QUERY_OF: dict[type[AnyQuery], CoreQueryName] = {
    ListJobs: CoreQueryName.JOBS,
    GetJob: CoreQueryName.JOB,
    ListOffers: CoreQueryName.OFFERS,
    GetUsage: CoreQueryName.USAGE,
}

# JetStream streams; every user has an object-store bucket of their own (``files_bucket``).
STREAM_JOB_EVENTS = "SKYPORT_JOB_EVENTS"
STREAM_GATE_COMMANDS = "SKYPORT_GATE_COMMANDS"
STREAM_GATE_EVENTS = "SKYPORT_GATE_EVENTS"
STREAM_LOGS = "SKYPORT_LOGS"
FILES_BUCKET_PREFIX = "skyport-files-"

ALL_JOB_EVENTS = f"{ROOT}.evt.job.>"
ALL_GATE_COMMANDS = f"{ROOT}.cmd.gate.>"
ALL_GATE_EVENTS = f"{ROOT}.evt.gate.>"
ALL_LOGS = f"{ROOT}.log.>"
CORE_COMMANDS = f"{ROOT}.cmd.core.*"
CORE_QUERIES = f"{ROOT}.query.core.*"
SCHEDULER_QUERIES = f"{ROOT}.query.scheduler.*"
SCHEDULER_QUEUE_GROUP = "skyport-scheduler"
CORE_QUEUE_GROUP = "skyport-core"
INBOX_PREFIX = "_INBOX."  # an identity's replies go only to _INBOX.<name>.<token>
CORE_GATE_EVENTS_CONSUMER = "core"  # core's one durable consumer of the gate reports


_STREAM_OF_PREFIX = (
    (f"{ROOT}.evt.job.", STREAM_JOB_EVENTS),
    (f"{ROOT}.evt.gate.", STREAM_GATE_EVENTS),
    (f"{ROOT}.cmd.gate.", STREAM_GATE_COMMANDS),
    (f"{ROOT}.log.", STREAM_LOGS),
)


def stream_of(filter_subject: str) -> str:
    """The stream that holds the subjects of ``filter_subject``; ValueError if none does."""
    for prefix, stream in _STREAM_OF_PREFIX:
        if filter_subject.startswith(prefix):
            return stream
    raise ValueError(f"no stream holds {filter_subject!r}")


def core_command(verb: CoreVerb) -> str:
    return f"{ROOT}.cmd.core.{verb.value}"


def command_subject(cmd: AnyCommand) -> str:
    return core_command(VERB_OF[type(cmd)])


def core_query(what: CoreQueryName) -> str:
    return f"{ROOT}.query.core.{what.value}"


def query_subject(query: AnyQuery) -> str:
    return core_query(QUERY_OF[type(query)])


SCHEDULER_QUERY_OF: dict[type[PlanJob], SchedulerQueryName] = {PlanJob: SchedulerQueryName.PLAN}


def scheduler_query(what: SchedulerQueryName) -> str:
    return f"{ROOT}.query.scheduler.{what.value}"


def job_event(owner: str, job_id: str, tag: str) -> str:
    return (
        f"{ROOT}.evt.job.{check_token('owner', owner)}."
        f"{check_token('job id', job_id)}.{check_token('tag', tag)}"
    )


def job_events_of(owner: str = "*", job_id: str = "*", tag: str = "*") -> str:
    """Filter for the events (of one kind) of one job, one owner's jobs, or every job."""
    own = owner if owner == "*" else check_token("owner", owner)
    jid = job_id if job_id == "*" else check_token("job id", job_id)
    kind = tag if tag == "*" else check_token("tag", tag)
    return f"{ROOT}.evt.job.{own}.{jid}.{kind}"


def job_events_of_owner(owner: str) -> str:
    """Every event of one owner's jobs (``*``: of every owner's), however filtered further:
    the grant a user's replays must stay inside."""
    return ALL_JOB_EVENTS if owner == "*" else f"{ROOT}.evt.job.{check_token('owner', owner)}.>"


def gate_command(gate: str, verb: str) -> str:
    return f"{ROOT}.cmd.gate.{check_token('gate', gate)}.{check_token('verb', verb)}"


def gate_commands_consumer(gate: str) -> str:
    """The one durable consumer of a gate's commands (the server lets the gate use it alone)."""
    return f"gate-{check_token('gate', gate)}"


def gate_commands_of(gate: str) -> str:
    return f"{ROOT}.cmd.gate.{check_token('gate', gate)}.*"


def gate_event(gate: str, tag: str) -> str:
    return f"{ROOT}.evt.gate.{check_token('gate', gate)}.{check_token('tag', tag)}"


class LogStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"


def gate_events_of(gate: str = "*", tag: str = "*") -> str:
    """Filter for gate events: one gate or all (``*``), one tag or all (``*``)."""
    g = gate if gate == "*" else check_token("gate", gate)
    t = tag if tag == "*" else check_token("tag", tag)
    return f"{ROOT}.evt.gate.{g}.{t}"


def logs_from(gate: str) -> str:
    """Filter for every log line a gate publishes (any owner, job and stream)."""
    return f"{ROOT}.log.*.*.{check_token('gate', gate)}.*"


def log(owner: str, job_id: str, gate: str, stream: LogStream) -> str:
    """A job's log stream as written by ``gate`` (the gate token lets receivers and NATS
    permissions tell which gate wrote it: a gate may write only under its own name)."""
    return (
        f"{ROOT}.log.{check_token('owner', owner)}.{check_token('job id', job_id)}."
        f"{check_token('gate', gate)}.{stream}"
    )


def logs_of_owner(owner: str) -> str:
    """Every log line of one owner's jobs (``*``: of every owner's)."""
    return ALL_LOGS if owner == "*" else f"{ROOT}.log.{check_token('owner', owner)}.>"


def logs_of(owner: str, job_id: str) -> str:
    return f"{ROOT}.log.{check_token('owner', owner)}.{check_token('job id', job_id)}.*.*"


def files_bucket(owner: str) -> str:
    """The object-store bucket of one user's staged files (inputs and job outputs). One bucket
    per user, because object names are base64 in the store's subjects: a grant cannot bind a
    name prefix inside one bucket, only a whole bucket (docs/security.md)."""
    return FILES_BUCKET_PREFIX + check_token("owner", owner)


def bucket_stream(bucket: str) -> str:
    """The JetStream stream behind an object-store bucket."""
    return f"OBJ_{bucket}"


def job_files_prefix(job_id: str) -> str:
    """Object-store key prefix of a job's staged-out files."""
    return f"jobs/{check_token('job id', job_id)}/"


def upload_prefix(owner: str, upload_id: str) -> str:
    """Object-store key prefix of a user's staged-in files for one submission."""
    return f"inputs/{check_token('owner', owner)}/{check_token('upload id', upload_id)}/"


class Kind(StrEnum):
    CORE_COMMAND = "core_command"
    CORE_QUERY = "core_query"
    SCHEDULER_QUERY = "scheduler_query"
    JOB_EVENT = "job_event"
    GATE_COMMAND = "gate_command"
    GATE_EVENT = "gate_event"
    LOG = "log"
    INBOX = "inbox"
    OTHER = "other"


class Parsed(NamedTuple):
    """A subject split into its kind and variable tokens (empty strings where absent)."""

    kind: Kind
    a: str = ""
    b: str = ""
    c: str = ""


_SHAPES: dict[tuple[str, str, int], Kind] = {
    ("cmd", "core", 3): Kind.CORE_COMMAND,
    ("query", "core", 3): Kind.CORE_QUERY,
    ("query", "scheduler", 3): Kind.SCHEDULER_QUERY,
    ("evt", "job", 5): Kind.JOB_EVENT,
    ("cmd", "gate", 4): Kind.GATE_COMMAND,
    ("evt", "gate", 4): Kind.GATE_EVENT,
}


def inbox_of(name: str) -> str:
    """The reply inbox prefix of identity ``name`` (the client adds ``.`` and a token); the
    server lets only that identity subscribe under it."""
    return f"{INBOX_PREFIX}{check_token('identity', name)}"


def parse(subject: str) -> Parsed:
    """Classify a subject; anything not of a known shape is ``Kind.OTHER``."""
    if subject.startswith(INBOX_PREFIX):
        name, dot, token = subject[len(INBOX_PREFIX) :].partition(".")
        if dot and token and TOKEN_RE.fullmatch(name):
            return Parsed(Kind.INBOX, name)  # whose inbox
        return Parsed(Kind.OTHER)
    if not subject.startswith(ROOT + "."):
        return Parsed(Kind.OTHER)
    parts = subject[len(ROOT) + 1 :].split(".")
    if parts[0] == "log" and len(parts) == 5:
        return Parsed(Kind.LOG, parts[1], parts[2], parts[3])  # owner, job id, gate
    if len(parts) < 2:
        return Parsed(Kind.OTHER)
    kind = _SHAPES.get((parts[0], parts[1], len(parts)))
    if kind is None:
        return Parsed(Kind.OTHER)
    rest = parts[2:] + ["", "", ""]
    return Parsed(kind, rest[0], rest[1], rest[2])
