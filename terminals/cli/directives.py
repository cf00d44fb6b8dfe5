"""Job script directives and submit options. Pure: text in, a request (or a DirectiveError) out.

Directives are read from the comment block at the top of a script, as ``sbatch`` does: they
stop at the first line that is neither blank nor a comment. Three spellings are understood:

* ``#SKYPORT --nodes=2 --time=1:00:00`` (Sky Port's own),
* ``#SBATCH`` with the same option names (existing Slurm scripts),
* ``#SWM <keyword> <value>`` (the original Sky Port).

Command-line options of ``skyport submit`` go through the same option table, so a value means
the same wherever it is written; they override directives. Unknown options, malformed values
and resources the schema refuses are a DirectiveError that names the line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import msgspec

from schemas.jobs import (
    MAX_PRICE,
    EnvNameError,
    JobSpec,
    StagedInput,
    StagedPathError,
    check_env_name,
    check_relative_path,
    parse_amount,
)
from terminals.cli.errors import DirectiveError

PREFIXES = ("#SKYPORT", "#SBATCH")
SWM_PREFIX = "#SWM"
COMMAND_LINE = "command line"


class ValueProblem(ValueError):
    """A value does not parse; raised by converters, turned into DirectiveError with a line."""


# -- value converters ---------------------------------------------------------------------
#
# Numbers are ASCII digits only, matched by ``[0-9]``: ``str.isdigit`` and ``\d`` also take
# '²' (which ``int`` refuses) and '٣' (which ``int`` reads as 3), and IGNORECASE without ASCII
# lets 'K' (Kelvin) match ``K``. A run of digits longer than MAX_DIGITS is refused before
# ``int``, which raises on thousands of digits; the schema refuses large values anyway.

MAX_DIGITS = 30
_MEM_RE = re.compile(r"([0-9]+)([KMGT]?)B?", re.IGNORECASE | re.ASCII)
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MEM_FACTOR_KB = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}
# The schema's rule (schemas.jobs.JobSpec), checked here too so the error names the line.


def _digits(part: str, problem: str) -> int:
    """``part`` as a number if it is ASCII digits only; else ValueProblem(``problem``)."""
    if not re.fullmatch(r"[0-9]+", part):
        raise ValueProblem(problem)
    if len(part) > MAX_DIGITS:
        raise ValueProblem(f"{part[:12]}... is too large ({len(part)} digits)")
    return int(part)


def _whole(text: str) -> int:
    """A whole number with an optional sign, in ASCII digits."""
    t = text.strip()
    sign, digits = (t[0], t[1:]) if t[:1] in ("+", "-") else ("", t)
    value = _digits(digits, f"{text!r} is not a whole number")
    return -value if sign == "-" else value


def parse_count(text: str, minimum: int = 1) -> int:
    """A whole number ≥ ``minimum``."""
    value = _whole(text)
    if value < minimum:
        raise ValueProblem(f"{value} is below the minimum of {minimum}")
    return value


def parse_nodes(text: str) -> int:
    if re.fullmatch(r"[0-9]+-[0-9]+", text.strip()):
        raise ValueProblem(f"node ranges ({text!r}) are not supported: give one number")
    return parse_count(text)


def parse_priority(text: str) -> int:
    return _whole(text)


_DEPENDENCY_KINDS = ("afterok", "afternotok", "afterany")


def parse_dependency(text: str) -> list[dict[str, str]]:
    """Slurm's ``KIND:ID[:ID...][,KIND:ID...]`` (all must hold; ``?`` for "any" is not
    supported), as the spec's dependency list."""
    found: list[dict[str, str]] = []
    if "?" in text:
        raise ValueProblem("'?' (any of) dependencies are not supported; use ',' (all of)")
    for part in text.strip().split(","):
        kind, _, ids = part.strip().partition(":")
        if kind not in _DEPENDENCY_KINDS:
            raise ValueProblem(f"{kind!r} is not one of {', '.join(_DEPENDENCY_KINDS)}")
        if not ids:
            raise ValueProblem(f"{part.strip()!r} names no job")
        for job_id in ids.split(":"):
            number = _digits(job_id, f"{job_id!r} is not a job id")
            found.append({"kind": kind, "job_id": str(number)})
    return found


def parse_max_price(text: str) -> float:
    """A price per hour for the whole job: a non-negative number."""
    try:
        return parse_amount(text.strip(), MAX_PRICE)
    except ValueError as exc:
        raise ValueProblem(str(exc)) from None


def parse_account(text: str) -> str:
    """An account name: letters, digits, ``_`` and ``-``, at most 64 of them."""
    name = text.strip()
    if not _ACCOUNT_RE.fullmatch(name):
        raise ValueProblem(f"{text!r} is not an account name (letters, digits, _ and -)")
    return name


def parse_memory_mb(text: str) -> int:
    """Slurm memory: a number with an optional K/M/G/T suffix; no suffix means megabytes."""
    match = _MEM_RE.fullmatch(text.strip())
    if not match:
        raise ValueProblem(f"{text!r} is not a memory size (e.g. 512M, 4G)")
    number = _digits(match.group(1), f"{text!r} is not a memory size")
    unit = (match.group(2) or "M").upper()
    kb = number * _MEM_FACTOR_KB[unit]
    return -(-kb // 1024)  # round up to whole megabytes


def parse_time_s(text: str) -> int:
    """Slurm time limits: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; in seconds."""
    t = text.strip()
    days = 0
    if "-" in t:
        day_text, _, t = t.partition("-")
        days = _time_part(day_text, text)
        parts = [_time_part(p, text) for p in t.split(":")]
        if not 1 <= len(parts) <= 3:
            raise ValueProblem(f"{text!r} is not a time (D-HH[:MM[:SS]])")
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:
        parts = [_time_part(p, text) for p in t.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        elif len(parts) == 3:
            hours, minutes, seconds = parts
        else:
            raise ValueProblem(f"{text!r} is not a time (MM, MM:SS, HH:MM:SS, D-HH:MM:SS)")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueProblem(f"time limit {text!r} must be positive")
    return total


def _time_part(part: str, whole: str) -> int:
    return _digits(part, f"{whole!r} is not a time (MM, MM:SS, HH:MM:SS, D-HH:MM:SS)")


def parse_gres(text: str) -> int:
    """``gpu:N`` (the only generic resource Sky Port knows) → N."""
    match = re.fullmatch(r"gpu:([0-9]+)", text.strip())
    if not match:
        raise ValueProblem(f"{text!r} is not supported: use gpu:N")
    return _digits(match.group(1), f"{text!r} is not supported: use gpu:N")


def _env_name(name: str) -> str:
    try:
        return check_env_name(name)
    except EnvNameError as err:
        raise ValueProblem(str(err)) from err


def parse_env_pairs(text: str) -> dict[str, str]:
    """``VAR=VALUE[,VAR=VALUE...]`` (Slurm's --export with explicit values)."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ValueProblem(f"{item!r} is not VAR=VALUE (ALL, NONE and bare names unsupported)")
        pairs[_env_name(name)] = value
    return pairs


def parse_env_one(text: str) -> dict[str, str]:
    """``VAR=VALUE``; the value may contain commas."""
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise ValueProblem(f"{text!r} is not VAR=VALUE")
    return {_env_name(name): value}


@dataclass(frozen=True)
class InputFile:
    """A local file to stage in, and its name in the job's work directory."""

    local: str
    name: str


def parse_input(text: str) -> InputFile:
    """``LOCAL[:NAME]``; NAME defaults to the base name of LOCAL."""
    local, colon, name = text.partition(":")
    if not local:
        raise ValueProblem(f"{text!r} names no local file")
    target = name if colon else PurePosixPath(local).name
    try:
        return InputFile(local, check_relative_path(target))
    except StagedPathError as exc:
        raise ValueProblem(str(exc)) from exc


def parse_output(text: str) -> str:
    try:
        return check_relative_path(text.strip())
    except StagedPathError as exc:
        raise ValueProblem(str(exc)) from exc


# -- the option table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option: its spec field, how its value parses, and how repeats combine."""

    long: str
    field: str
    convert: Callable[[str], Any]
    short: str = ""
    repeat: str = "replace"  # "replace" | "append" | "merge"
    help: str = ""


OPTIONS: tuple[Option, ...] = (
    Option("nodes", "nodes", parse_nodes, "N", help="number of nodes"),
    Option("ntasks-per-node", "tasks_per_node", parse_count, help="tasks per node"),
    Option("cpus-per-task", "cpus_per_task", parse_count, "c", help="CPUs per task"),
    Option("mem", "memory_mb_per_node", parse_memory_mb, help="memory per node (K/M/G/T, MB)"),
    Option("gpus-per-node", "gpus_per_node", lambda t: parse_count(t, 0), help="GPUs per node"),
    Option("gres", "gpus_per_node", parse_gres, help="gpu:N, same as --gpus-per-node=N"),
    Option("time", "time_limit_s", parse_time_s, "t", help="time limit (Slurm formats)"),
    Option("job-name", "name", str.strip, "J", help="job name"),
    Option("input", "inputs", parse_input, repeat="append", help="LOCAL[:NAME] to stage in"),
    Option("output", "outputs", parse_output, repeat="append", help="NAME to stage back"),
    Option("export", "env", parse_env_pairs, repeat="merge", help="VAR=VALUE[,VAR=VALUE]"),
    Option("env", "env", parse_env_one, repeat="merge", help="VAR=VALUE (repeatable)"),
    Option("gate", "gate", str.strip, help="run on this gate only"),
    Option("priority", "priority", parse_priority, help="priority, -10000..10000"),
    Option("account", "account", parse_account, "A", help="account to charge (default: you)"),
    Option(
        "max-price",
        "max_price_per_hour",
        parse_max_price,
        help="run only where the whole job costs at most this per hour",
    ),
    Option(
        "dependency",
        "dependencies",
        parse_dependency,
        "d",
        help="afterok|afternotok|afterany:JOB[:JOB...][,...]: start only after those jobs",
    ),
)
BY_LONG = {o.long: o for o in OPTIONS}
BY_SHORT = {o.short: o for o in OPTIONS if o.short}

# Options Slurm has with a meaning Sky Port does not share: reported, not applied.
SLURM_STDIO = {"output", "error", "o", "e"}

# Legacy ``#SWM keyword value`` → option.
SWM_KEYWORDS: dict[str, str] = {
    "nodes": "nodes",
    "cpus": "cpus-per-task",
    "ncpus": "cpus-per-task",
    "mem": "mem",
    "memory": "mem",
    "gpus": "gpus-per-node",
    "time": "time",
    "walltime": "time",
    "name": "job-name",
    "job-name": "job-name",
    "input": "input",
    "output": "output",
    "gate": "gate",
    "priority": "priority",
}


@dataclass
class Request:
    """What a script and its options ask for, before inputs are uploaded.

    ``values`` holds JobSpec fields; ``origin`` says where each was set (for error messages);
    ``warnings`` are things reported but not applied.
    """

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> list[InputFile]:
        found: list[InputFile] = self.values.get("inputs", [])
        return found

    def apply(self, option: Option, text: str, where: str) -> None:
        """Set ``option`` from ``text``; raise DirectiveError naming ``where`` if malformed."""
        try:
            value = option.convert(text)
        except ValueError as exc:  # ValueProblem, StagedPathError, or a converter's slip
            raise DirectiveError(where, f"--{option.long}: {exc}") from None
        if option.repeat == "append":
            self.values[option.field] = [*self.values.get(option.field, []), value]
        elif option.repeat == "merge":
            self.values[option.field] = {**self.values.get(option.field, {}), **value}
        else:
            self.values[option.field] = value
        self.origin[option.field] = where

    def override(self, other: Request) -> Request:
        """A new request where ``other`` wins: its options replace these, except that
        environment variables are merged one by one (``other`` wins for a variable in both)."""
        values = {**self.values, **other.values}
        if "env" in self.values and "env" in other.values:
            values["env"] = {**self.values["env"], **other.values["env"]}
        return Request(
            values=values,
            origin={**self.origin, **other.origin},
            warnings=[*self.warnings, *other.warnings],
        )


# -- reading scripts -----------------------------------------------------------------------


def directive_lines(script: str) -> Iterable[tuple[int, str, str]]:
    """(line number, prefix, rest) of each directive in the leading comment block."""
    for lineno, raw in enumerate(script.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            return
        head, *rest = line.split(None, 1)
        if head in PREFIXES or head == SWM_PREFIX:
            yield lineno, head, rest[0] if rest else ""


def parse_script(script: str) -> Request:
    """Read the directives of ``script``; raise DirectiveError naming the first bad line."""
    request = Request()
    for lineno, prefix, rest in directive_lines(script):
        where = f"line {lineno}: {prefix} {rest}".rstrip()
        if prefix == SWM_PREFIX:
            _apply_swm(request, rest, where)
        else:
            _apply_tokens(request, _split(rest, where), where, slurm=prefix == "#SBATCH")
    return request


def parse_options(pairs: Iterable[tuple[str, str]]) -> Request:
    """Command-line options as (long name, value) pairs, in the order given."""
    request = Request()
    for long, text in pairs:
        request.apply(BY_LONG[long], text, f"{COMMAND_LINE} --{long}")
    return request


def _split(rest: str, where: str) -> list[str]:
    try:
        return shlex.split(rest, comments=True)
    except ValueError as exc:
        raise DirectiveError(where, f"cannot split the line: {exc}") from None


def _apply_swm(request: Request, rest: str, where: str) -> None:
    tokens = _split(rest, where)
    if not tokens:
        raise DirectiveError(where, "#SWM needs a keyword and a value")
    keyword = tokens[0].lower()
    if keyword not in SWM_KEYWORDS:
        raise DirectiveError(where, f"unknown #SWM keyword {tokens[0]!r}")
    if len(tokens) != 2:
        raise DirectiveError(where, f"#SWM {keyword} needs exactly one value")
    request.apply(BY_LONG[SWM_KEYWORDS[keyword]], tokens[1], where)


def _apply_tokens(request: Request, tokens: list[str], where: str, slurm: bool) -> None:
    i = 0
    while i < len(tokens):
        name, value, used = _next_option(tokens, i, where)
        i += used
        if slurm and name in SLURM_STDIO:
            request.warnings.append(
                f"{where}: ignored: Slurm's stdout/stderr file; Sky Port streams them "
                "to 'skyport logs' (use #SKYPORT --output=NAME to stage a file back)"
            )
            continue
        option = BY_LONG.get(name) or (BY_SHORT.get(name) if len(name) == 1 else None)
        if option is None:
            raise DirectiveError(where, f"unknown option {_spelled(name)}")
        if value is None:
            raise DirectiveError(where, f"{_spelled(name)} needs a value")
        request.apply(option, value, where)


def _next_option(tokens: list[str], i: int, where: str) -> tuple[str, str | None, int]:
    """(name without dashes, value or None, tokens consumed) of the option at ``i``."""
    token = tokens[i]
    following = tokens[i + 1] if i + 1 < len(tokens) else None
    takes_next = following is not None and not following.startswith("-")
    if token.startswith("--") and len(token) > 2:
        name, eq, value = token[2:].partition("=")
        if eq:
            return name, value, 1
        return name, following if takes_next else None, 2 if takes_next else 1
    if token.startswith("-") and len(token) >= 2 and token[1] != "-":
        name, attached = token[1], token[2:].removeprefix("=")
        if attached:
            return name, attached, 1
        return name, following if takes_next else None, 2 if takes_next else 1
    raise DirectiveError(where, f"expected an option, found {token!r}")


def _spelled(name: str) -> str:
    return f"-{name}" if len(name) == 1 else f"--{name}"


# -- the job spec --------------------------------------------------------------------------

_FIELD_OPTION = {o.field: o.long for o in OPTIONS}


def build_spec(script: str, request: Request, inputs: tuple[StagedInput, ...] = ()) -> JobSpec:
    """The JobSpec of ``request``, validated by the schema; errors name where a field was set."""
    values = {k: v for k, v in request.values.items() if k != "inputs"}
    values["script"] = script
    values["inputs"] = [msgspec.to_builtins(i) for i in inputs]
    if "outputs" in values:
        values["outputs"] = list(values["outputs"])
    try:
        return msgspec.convert(values, JobSpec)
    except msgspec.ValidationError as exc:
        raise DirectiveError(_where_of(str(exc), request), _explain(str(exc))) from None


# Whole-spec checks (JobSpec.__post_init__) name no field; these words say which one.
_MESSAGE_FIELD = (("environment", "env"), ("two inputs", "inputs"))


def _where_of(message: str, request: Request) -> str:
    match = re.search(r"\$\.(\w+)", message)
    if match and match.group(1) in request.origin:
        return request.origin[match.group(1)]
    for words, name in _MESSAGE_FIELD:
        if not match and words in message and name in request.origin:
            return request.origin[name]
    if match and match.group(1) == "script":
        return "script"
    return "job"


def _explain(message: str) -> str:
    match = re.search(r"\$\.(\w+)", message)
    if match and match.group(1) == "script" and "length" in message:
        return f"the script is too large ({message})"
    if match and match.group(1) in _FIELD_OPTION:
        return f"--{_FIELD_OPTION[match.group(1)]}: {message}"
    return message
