"""Commands and queries to core, and the replies core sends back. Pure.

The sender of a command is never a field: core learns who sent it from the verified
signature (schemas.wire), so a user cannot claim to be someone else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import (
    Allocation,
    JobSpec,
    JobState,
    JobSummary,
    NodeShape,
    PendingReason,
    StagedOutput,
    Transition,
)

MAX_PAGE = 10_000
# Job ids are core's sequence numbers; a command naming anything else is malformed.
JobRef = Annotated[JobId, Meta(pattern="^[1-9][0-9]{0,17}$")]


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of commands to core: a unique id (idempotency key) and the sender's clock."""

    id: MessageId
    at: float


class SubmitJob(Command, frozen=True, kw_only=True, tag="submit_job"):
    spec: JobSpec


class CancelJob(Command, frozen=True, kw_only=True, tag="cancel_job"):
    job_id: JobRef


class RequeueJob(Command, frozen=True, kw_only=True, tag="requeue_job"):
    job_id: JobRef


class HoldJob(Command, frozen=True, kw_only=True, tag="hold_job"):
    job_id: JobRef


class ReleaseJob(Command, frozen=True, kw_only=True, tag="release_job"):
    job_id: JobRef


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """Start attempt ``attempt`` of a pending job on ``allocation``."""

    job_id: JobRef
    attempt: int
    allocation: Allocation


class PlaceJobs(Command, frozen=True, kw_only=True, tag="place_jobs"):
    """The scheduler's placements; idempotent by ``plan_id`` (the command id)."""

    plan_id: PlanId
    placements: tuple[Placement, ...]


MAX_WAITING_NOTES = 10_000
MAX_WAITING_DETAIL = 300


class WaitingNote(msgspec.Struct, frozen=True, kw_only=True):
    """Why attempt ``attempt`` of a pending job waits."""

    job_id: JobRef
    attempt: int
    reason: PendingReason
    detail: Annotated[str, Meta(max_length=MAX_WAITING_DETAIL)] = ""


class ReportWaiting(Command, frozen=True, kw_only=True, tag="report_waiting"):
    """The scheduler's pending reasons that changed since it last reported them."""

    notes: Annotated[tuple[WaitingNote, ...], Meta(max_length=MAX_WAITING_NOTES)]


AnyCommand = SubmitJob | CancelJob | RequeueJob | HoldJob | ReleaseJob | PlaceJobs | ReportWaiting


class OptionVerdict(StrEnum):
    CHOSEN = "chosen"  # where it would run
    DEARER = "dearer"  # it has room now, but costs more than the chosen gate
    BUSY = "busy"  # it could hold the job, but not now
    TOO_SMALL = "too_small"  # too few nodes that could ever hold it
    OVER_PRICE = "over_price"  # dearer than the job's --max-price
    OVER_BUDGET = "over_budget"  # its estimated cost exceeds what a budget leaves
    NOT_REQUESTED = "not_requested"  # the job names another --gate
    DOWN = "down"  # its heartbeats stopped


class Query(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of read-only requests to core."""

    id: MessageId
    at: float


class ListJobs(Query, frozen=True, kw_only=True, tag="list_jobs"):
    """Jobs in submission order; ``after`` continues from the last job id of a page."""

    states: tuple[JobState, ...] = ()
    include_finished: bool = False
    user: UserName | None = None
    name: str | None = None
    after: JobRef | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE)] = 1000


class GetJob(Query, frozen=True, kw_only=True, tag="get_job"):
    job_id: JobRef


class ListOffers(Query, frozen=True, kw_only=True, tag="list_offers"):
    """What every gate offers: its nodes with their prices, and what active jobs hold."""


class GetUsage(Query, frozen=True, kw_only=True, tag="get_usage"):
    """Spend per user and account of the attempts that ended in [``since``, ``until``)
    (open ends: all time); ``user`` narrows it to one user (users always see their own)."""

    since: float | None = None
    until: float | None = None
    user: UserName | None = None


class PlanJob(Query, frozen=True, kw_only=True, tag="plan_job"):
    """To the scheduler: where and when would this job run if its sender submitted it now?
    Nothing is submitted or reserved."""

    spec: JobSpec


AnySchedulerQuery = PlanJob

AnyQuery = ListJobs | GetJob | ListOffers | GetUsage


class RejectCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_JOB = "unknown_job"
    INVALID_STATE = "invalid_state"
    NOT_ALLOWED = "not_allowed"
    NOT_OWNER = "not_owner"
    NOT_MEMBER = "not_member"  # of the account the job would charge
    REPLAYED = "replayed"  # this sender's command id was handled already
    STALE = "stale"  # the command's timestamp is outside core's replay window
    RATE_LIMITED = "rate_limited"  # too many requests of this kind from this sender
    INTERNAL = "internal"


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of replies; ``to`` is the id of the command or query answered."""

    to: MessageId


class Accepted(Reply, frozen=True, kw_only=True, tag="accepted"):
    job_id: JobId | None = None
    detail: str = ""


class Rejected(Reply, frozen=True, kw_only=True, tag="rejected"):
    code: RejectCode
    detail: str


class PlaceRejection(msgspec.Struct, frozen=True, kw_only=True):
    job_id: JobId
    code: RejectCode
    detail: str


class PlaceReply(Reply, frozen=True, kw_only=True, tag="place_reply"):
    accepted: tuple[JobId, ...] = ()
    rejected: tuple[PlaceRejection, ...] = ()


class JobPage(Reply, frozen=True, kw_only=True, tag="job_page"):
    jobs: tuple[JobSummary, ...]
    next_after: JobId | None = None


class JobDetail(Reply, frozen=True, kw_only=True, tag="job_detail"):
    summary: JobSummary
    spec: JobSpec
    allocation: Allocation | None = None
    outputs: tuple[StagedOutput, ...] = ()
    history: tuple[Transition, ...] = ()


class NodeOffer(msgspec.Struct, frozen=True, kw_only=True):
    """One node of a gate and what the active jobs hold of it."""

    node: NodeShape
    used_cpus: int = 0
    used_memory_mb: int = 0
    used_gpus: int = 0


class GateOffer(msgspec.Struct, frozen=True, kw_only=True):
    """A gate as core last heard of it: ``live`` while its heartbeats keep coming."""

    gate: GateName
    live: bool
    last_seen: float
    nodes: tuple[NodeOffer, ...] = ()


class OfferList(Reply, frozen=True, kw_only=True, tag="offer_list"):
    gates: tuple[GateOffer, ...] = ()


class UsageTotal(msgspec.Struct, frozen=True, kw_only=True):
    """What one user spent on one account: jobs, node-hours and their cost."""

    owner: UserName
    account: str
    jobs: int
    node_hours: float
    cost: float


class BudgetStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A spend cap and what the usage recorded in its current period has taken of it (the
    scheduler also counts the estimates of jobs still running against it)."""

    scope: str  # "user" or "account"
    name: str
    limit: float
    period: str  # total, month, week or day
    since: float  # the start of the current period (0 for total)
    spent: float


class UsageReport(Reply, frozen=True, kw_only=True, tag="usage_report"):
    since: float | None = None
    until: float | None = None
    totals: tuple[UsageTotal, ...] = ()
    budgets: tuple[BudgetStatus, ...] = ()  # the asker's own and their accounts' (admins: all)


class GateOption(msgspec.Struct, frozen=True, kw_only=True):
    """How one gate would take a job (``skyport submit --dry-run``'s alternatives)."""

    gate: GateName
    verdict: OptionVerdict
    price_per_hour: float | None = None  # of the whole job at the gate's cheapest nodes for it
    estimated_cost: float | None = None  # that × the time limit
    detail: str = ""


class PlanReport(Reply, frozen=True, kw_only=True, tag="plan_report"):
    """Where a job would run if submitted now, when, and at what cost; and the gates it
    would not take, with why. ``start_at`` is exact when it would start now or is the first
    job waiting; otherwise it is the earliest possible (``start_is_bound``): jobs ahead of it
    may push it later."""

    gate: GateName | None = None
    start_at: float | None = None
    start_is_bound: bool = False
    price_per_hour: float = 0.0
    estimated_cost: float = 0.0
    reason: PendingReason | None = None  # why it would wait, if it would
    detail: str = ""
    ahead: int = 0  # jobs the scheduler would consider before it
    options: tuple[GateOption, ...] = ()


AnyReply = (
    Accepted | Rejected | PlaceReply | JobPage | JobDetail | OfferList | UsageReport | PlanReport
)


def answers(reply: AnyReply, request_id: MessageId) -> bool:
    """Whether ``reply`` is the answer to the request ``request_id`` (a refusal of a message
    core could not read carries an empty ``to``)."""
    return reply.to == request_id or (isinstance(reply, Rejected) and reply.to == "")
