"""Job value objects: the spec a user submits, states, reasons, allocations, summaries. Pure.

Constraints live in the types (msgspec ``Meta``) and in ``__post_init__`` so that the same
rules hold when a spec is built in Python and when one is decoded from the bus.
"""

from __future__ import annotations

import posixpath
import re
from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.ids import GateName, JobId, UserName

KiB = 1024
MAX_SCRIPT_BYTES = 512 * KiB
MAX_NAME_CHARS = 255
MAX_PATH_CHARS = 1024
MAX_ENV_VARS = 512
MAX_STAGED_FILES = 1000
MAX_TIME_LIMIT_S = 366 * 24 * 3600
MAX_ENV_BYTES = 256 * KiB
MAX_SPEC_BYTES = 1024 * KiB  # encoded: every message that carries a spec stays far below
# the server's 4 MiB message limit (a JSON-escaped script can be 6x its length)
MAX_NODE_CPUS = 16_384

Count = Annotated[int, Meta(ge=1, le=4096)]
Nodes = Annotated[int, Meta(ge=1, le=1024)]
Gpus = Annotated[int, Meta(ge=0, le=64)]
MemoryMb = Annotated[int, Meta(ge=0, le=64 * 1024 * 1024)]
MAX_PRICE = 1_000_000.0
Price = Annotated[float, Meta(ge=0, le=MAX_PRICE)]  # per node-hour; NaN and ∞ are refused


def parse_amount(text: str, top: float, what: str = "a price") -> float:
    """An amount of money from a command line, 0 to ``top``; ValueError saying why not."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0 <= value <= top:  # also refuses NaN
        raise ValueError(f"{text} is not {what} between 0 and {top:g}")
    return value


def parse_price(text: str) -> float:
    """A price per node-hour from a command line; ValueError saying why not."""
    return parse_amount(text, MAX_PRICE)


Seconds = Annotated[int, Meta(ge=1, le=MAX_TIME_LIMIT_S)]
Priority = Annotated[int, Meta(ge=-10_000, le=10_000)]
JobName = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
Account = Annotated[str, Meta(pattern="^[A-Za-z0-9_-]{1,64}$")]
Script = Annotated[str, Meta(max_length=MAX_SCRIPT_BYTES)]

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
RESERVED_ENV_PREFIX = "SKYPORT_"
# bash's read-only variables: a job's shell cannot take them from the environment
SHELL_READONLY = frozenset({"SHELLOPTS", "BASHOPTS", "EUID", "UID", "PPID", "BASH_VERSINFO"})


class EnvNameError(ValueError):
    """An environment variable name a job may not set."""


def check_env_name(name: str) -> str:
    """Return name if a job may set it, else raise EnvNameError (with the rule in its text)."""
    if not _ENV_NAME_RE.fullmatch(name):
        raise EnvNameError(
            f"invalid environment variable name {name!r} (letters, digits and _, "
            "not starting with a digit, at most 128 characters)"
        )
    if name.startswith(RESERVED_ENV_PREFIX):
        raise EnvNameError(f"environment variable {name!r} is reserved ({RESERVED_ENV_PREFIX}*)")
    if name in SHELL_READONLY:
        raise EnvNameError(f"environment variable {name!r} is read-only in the job's shell")
    return name


class StagedPathError(ValueError):
    """A staged file name would leave the job's work directory or is not a plain name."""


def check_relative_path(name: str) -> str:
    """Return name if it is a safe path inside a work directory, else raise StagedPathError.

    Refused: empty names, NUL bytes, absolute paths, backslashes, ``..`` components, names
    that normalise to the directory itself, and over-long names. Symbolic links are checked
    where the files are (by the gate), since only the file system knows them.
    """
    if not name or len(name) > MAX_PATH_CHARS:
        raise StagedPathError(f"staged name must have 1-{MAX_PATH_CHARS} characters")
    if "\x00" in name or "\\" in name:
        raise StagedPathError(f"staged name {name!r} contains NUL or backslash")
    if name.startswith("/"):
        raise StagedPathError(f"staged name {name!r} is absolute")
    parts = name.split("/")
    if ".." in parts:
        raise StagedPathError(f"staged name {name!r} contains '..'")
    if posixpath.normpath(name) in (".", ""):
        raise StagedPathError(f"staged name {name!r} names the work directory itself")
    if any(len(p) > MAX_NAME_CHARS for p in parts):
        raise StagedPathError(f"staged name {name!r} has a component over {MAX_NAME_CHARS} chars")
    return posixpath.normpath(name)


class JobState(StrEnum):
    """Lifecycle states, named as Slurm users know them."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROVISIONING = "provisioning"
    STAGING_IN = "staging_in"
    RUNNING = "running"
    STAGING_OUT = "staging_out"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(
    {
        JobState.SCHEDULED,
        JobState.PROVISIONING,
        JobState.STAGING_IN,
        JobState.RUNNING,
        JobState.STAGING_OUT,
    }
)


class PendingReason(StrEnum):
    """Why a pending job is not running yet."""

    PRIORITY = "priority"  # behind the reservation of a job that comes first
    RESOURCES = "resources"  # what it needs is busy; it runs when that frees
    DEPENDENCY = "dependency"  # a job it depends on has not ended yet
    DEPENDENCY_NEVER = "dependency_never"  # a job it depends on ended the wrong way
    BUDGET = "budget"  # its estimated cost exceeds what is left of a budget
    NO_GATE = "no_gate"  # no live gate can ever hold it (size, gate, maximum price)
    HELD = "held"


class FailReason(StrEnum):
    """Typed reason of a failed job."""

    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    NODE_FAILURE = "node_failure"
    PREEMPTED = "preempted"
    PROVISIONING = "provisioning"
    STAGING = "staging"
    TIMEOUT = "timeout"
    BUDGET = "budget"
    LAUNCH = "launch"


class RunOutcome(StrEnum):
    """How one run of a job on a gate ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DependencyKind(StrEnum):
    """When a dependency is satisfied (Slurm's names)."""

    AFTEROK = "afterok"  # the other job completed
    AFTERNOTOK = "afternotok"  # it failed or was cancelled
    AFTERANY = "afterany"  # it ended, however


class Dependency(msgspec.Struct, frozen=True, kw_only=True):
    """This job may start only once job ``job_id`` has ended as ``kind`` says."""

    kind: DependencyKind
    job_id: Annotated[JobId, Meta(pattern="^[1-9][0-9]{0,17}$")]

    def satisfied_by(self, ended_as: JobState) -> bool:
        """Whether the other job ending as ``ended_as`` satisfies this dependency."""
        match self.kind:
            case DependencyKind.AFTEROK:
                return ended_as is JobState.COMPLETED
            case DependencyKind.AFTERNOTOK:
                return ended_as in (JobState.FAILED, JobState.CANCELLED)
            case DependencyKind.AFTERANY:
                return ended_as in TERMINAL_STATES


MAX_DEPENDENCIES = 64  # core loads each one's job when the submission is decided


class StagedInput(msgspec.Struct, frozen=True, kw_only=True):
    """A file staged into the work directory: ``name`` there, ``obj`` in the object store."""

    name: str
    obj: Annotated[str, Meta(min_length=1, max_length=MAX_PATH_CHARS)]
    size: Annotated[int, Meta(ge=0)]
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]

    def __post_init__(self) -> None:
        check_relative_path(self.name)


class JobSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user asks for. Resources are per node; the script runs on the first node."""

    script: Script
    name: JobName = "job"
    nodes: Nodes = 1
    tasks_per_node: Count = 1
    cpus_per_task: Count = 1
    memory_mb_per_node: MemoryMb = 0
    gpus_per_node: Gpus = 0
    time_limit_s: Seconds = 3600
    env: dict[str, Annotated[str, Meta(max_length=32 * KiB)]] = {}
    inputs: tuple[StagedInput, ...] = ()
    outputs: tuple[str, ...] = ()
    gate: GateName | None = None
    priority: Priority = 0
    account: Account | None = None  # whose budget pays (Slurm's --account); None: the user's
    dependencies: Annotated[tuple[Dependency, ...], Meta(max_length=MAX_DEPENDENCIES)] = ()
    max_price_per_hour: Price | None = None  # of the whole job (all its nodes' shares)

    def __post_init__(self) -> None:
        if len(self.env) > MAX_ENV_VARS:
            raise ValueError(f"at most {MAX_ENV_VARS} environment variables")
        if sum(len(k) + len(v) for k, v in self.env.items()) > MAX_ENV_BYTES:
            raise ValueError(f"the environment is larger than {MAX_ENV_BYTES // KiB} KiB")
        for key in self.env:
            check_env_name(key)
        if len({d.job_id for d in self.dependencies}) < len(self.dependencies):
            raise ValueError("a job is named twice in the dependencies")
        if len(self.inputs) > MAX_STAGED_FILES or len(self.outputs) > MAX_STAGED_FILES:
            raise ValueError(f"at most {MAX_STAGED_FILES} inputs and outputs")
        names = [check_relative_path(i.name) for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError("two inputs have the same name")
        for out in self.outputs:
            check_relative_path(out)
        size = len(msgspec.json.encode(self))
        if size > MAX_SPEC_BYTES:
            raise ValueError(f"the job is {size} bytes encoded; at most {MAX_SPEC_BYTES} allowed")

    @property
    def cpus_per_node(self) -> int:
        return self.tasks_per_node * self.cpus_per_task


class NodeShape(msgspec.Struct, frozen=True, kw_only=True):
    """One node a gate offers: a name unique in the gate, its resources, and its price per
    node-hour (in the deployment's currency unit; 0 for a node that costs nothing)."""

    name: str
    cpus: Annotated[int, Meta(ge=1, le=MAX_NODE_CPUS)]
    memory_mb: MemoryMb
    gpus: Gpus = 0
    host: str = "localhost"
    price_per_hour: Price = 0.0


class NodeAllocation(msgspec.Struct, frozen=True, kw_only=True):
    """The share of one node given to a job."""

    node: str
    host: str
    cpus: int
    memory_mb: int
    gpus: tuple[int, ...] = ()


def node_share(node: NodeShape, cpus: int, memory_mb: int, gpus: int) -> float:
    """The part of ``node`` a share of it takes, for billing: its largest fraction of the
    node's cpus, memory or GPUs (as Slurm's TRES billing), at most the whole node. A job
    on half a node's cpus pays half the node's price."""
    parts = [cpus / node.cpus]
    if node.memory_mb:
        parts.append(memory_mb / node.memory_mb)
    if node.gpus:
        parts.append(gpus / node.gpus)
    return min(1.0, max(parts))


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """Where one attempt of a job runs: a gate and one share per node (rank order)."""

    gate: GateName
    nodes: tuple[NodeAllocation, ...]


class StagedOutput(msgspec.Struct, frozen=True, kw_only=True):
    """A file a run staged out: its name in the work directory and its object key."""

    name: str
    obj: str
    size: int
    sha256: str


class JobSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One row of a job listing."""

    job_id: JobId
    owner: UserName
    name: str
    state: JobState
    reason: str = ""
    detail: str = ""
    gate: GateName | None = None
    nodes: int = 1
    priority: int = 0
    restart_count: int = 0
    exit_code: int | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a job's history: the event, the state after it, reason and detail."""

    seq: int
    at: float
    event: str
    state: JobState
    reason: str = ""
    detail: str = ""
