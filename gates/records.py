"""Run records: what a gate knows about each run, on disk, so that a restarted gate resumes.

One directory per run, ``<gate dir>/runs/<job_id>-<attempt>/`` (``RunPaths``), holding
``run.json`` (the record: the StartRun, the phase, the handle of the process, the stop in
progress, the exit status), the output files, and the work directory. Records are replaced
atomically (write beside, rename). This module is the only writer of records.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import msgspec

from gates.base import ExitStatus, RunHandle, RunPaths
from gates.outcome import StopCause
from schemas.gate import StartRun, StopRun
from schemas.ids import check_token


class Phase(StrEnum):
    """Where a run is; each phase is resumed as such after a gate restart."""

    STAGING_IN = "staging_in"  # resumed: ask the gate whether the run was started (it stays
    # in this phase on disk while it runs); if not, stage in again from scratch and launch
    RUNNING = "running"  # resumed: watch the process, or read its exit status
    STAGING_OUT = "staging_out"  # kept in memory only: a RUNNING record with an exit status
    # on disk resumes here (stage out and report again; the ids de-duplicate)
    ENDED = "ended"  # nothing left to do


class StopInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A stop in progress: SIGTERM sent at ``term_at``, SIGKILL due ``grace_s`` later."""

    cause: StopCause
    why: str
    grace_s: float
    term_at: float


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    start: StartRun
    phase: Phase
    handle: RunHandle | None = None
    started_at: float | None = None
    stop: StopInfo | None = None
    exit: ExitStatus | None = None


_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(RunRecord)
_stop_decoder = msgspec.json.Decoder(StopRun)
_offsets_decoder = msgspec.json.Decoder(dict[str, int])


def run_key(job_id: str, attempt: int) -> str:
    """The name of a run (and of its directory); refuses ids that are not subject tokens."""
    if attempt < 0:
        raise ValueError(f"invalid attempt {attempt}")
    return f"{check_token('job id', job_id)}-{attempt}"


def runs_dir(gate_dir: Path) -> Path:
    return gate_dir / "runs"


def run_paths(gate_dir: Path, job_id: str, attempt: int) -> RunPaths:
    return RunPaths(runs_dir(gate_dir) / run_key(job_id, attempt))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` keeping its inode (created atomically if it is missing); a crash
    may leave it torn, which its readers must survive."""
    try:
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate(len(data))
    except FileNotFoundError:
        _write_atomic(path, data)


def create(paths: RunPaths, record: RunRecord) -> None:
    """Record a new run (its directory may exist already, holding a stop mark)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    save(paths, record)


def save(paths: RunPaths, record: RunRecord) -> None:
    _write_atomic(paths.record, _encoder.encode(record))


def save_ended(paths: RunPaths, record: RunRecord) -> None:
    """Record that a run is over, overwriting the record in place.

    Every report of the run is acknowledged by then, so a write torn by a crash costs
    nothing: the damaged record is skipped at adoption, as an ended one would be. Replacing
    the file instead would free an inode per run, and on an ext4 without a journal every
    inode allocation for the next 30 s scans past the ones freed recently: at hundreds of
    runs a second that made creating a run's files several times slower."""
    _write_in_place(paths.record, _encoder.encode(record))


def load(paths: RunPaths) -> RunRecord | None:
    """The record of a run, or None if there is none (a damaged record raises)."""
    try:
        return _record_decoder.decode(paths.record.read_bytes())
    except FileNotFoundError:
        return None


def all_runs(gate_dir: Path) -> list[RunPaths]:
    """Every run directory that has a record, in name order."""
    root = runs_dir(gate_dir)
    if not root.is_dir():
        return []
    return [RunPaths(p.parent) for p in sorted(root.glob("*/run.json"))]


def mark_stop(paths: RunPaths, cmd: StopRun) -> None:
    """Remember a StopRun durably before it is acknowledged (also for a run not started yet)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    _write_atomic(paths.stop_mark, _encoder.encode(cmd))


def stop_mark(paths: RunPaths) -> StopRun | None:
    try:
        return _stop_decoder.decode(paths.stop_mark.read_bytes())
    except FileNotFoundError:
        return None


def save_log_offsets(paths: RunPaths, offsets: dict[str, int]) -> None:
    """How far each output file has been published (a small file, written often, so in
    place: see ``save_ended``; a torn write only means output is published again)."""
    _write_in_place(paths.log_offsets, _encoder.encode(offsets))


def log_offsets(paths: RunPaths) -> dict[str, int]:
    """The saved offsets; none if there are none or a crash tore the last write (the output
    is then published again from the start, under the same message ids)."""
    try:
        return _offsets_decoder.decode(paths.log_offsets.read_bytes())
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return {}
