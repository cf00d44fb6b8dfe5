"""Stage files between the object store and a run's work directory (I/O).

Inputs: every name is confined (``gates.confine``) before anything is written; the download
is checked against its SHA-256. Outputs: each entry of ``spec.outputs`` is a relative name or
a glob pattern (``gates.confine.output_matches``); only regular files inside the work
directory are uploaded, under ``jobs/<job_id>/<name>``; what is missing or refused is listed,
never fatal. Regular files under the checkpoint directory are staged out too, as
``checkpoint/<path>``. At most ``MAX_STAGED_FILES`` files of each kind, found within
``SEARCH_S`` (the searches run in a worker thread); what was cut short is listed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from pathlib import Path
from typing import NamedTuple

from bus import objects
from bus.connection import Bus
from gates.base import RunPaths, StagingError
from gates.confine import GLOB_CHARS, Matches, confined, output_matches, regular_file
from schemas import subjects
from schemas.jobs import MAX_STAGED_FILES, StagedInput, StagedOutput


async def stage_in(bus: Bus, owner: str, inputs: tuple[StagedInput, ...], workdir: Path) -> None:
    """Download every input, from its owner's bucket, to its confined place; raise
    StagingError naming the file."""
    bucket = subjects.files_bucket(owner)
    for inp in inputs:
        dest = confined(workdir, inp.name)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            confined(workdir, inp.name)  # the directories just made are ours, re-check anyway
            await objects.get_file(bus.js, bucket, inp.obj, dest, inp.sha256)
        except TimeoutError:
            raise  # the bus, not the file (an OSError too): the run is resumed, not failed
        except (objects.ObjectError, OSError) as exc:
            raise StagingError(inp.name, str(exc)) from exc


SEARCH_S = 30.0


class StageOut(NamedTuple):
    """What was staged out, what was missing or refused, and which searches were cut short."""

    staged: list[StagedOutput]
    problems: list[str]
    truncated: list[str]


def _checkpoint_names(paths: RunPaths, deadline: float) -> Matches:
    root = paths.checkpoint
    if not root.is_dir() or root.is_symlink():
        return Matches([])
    names: list[str] = []
    for dirpath, dirs, files in os.walk(root):  # os.walk does not follow symlinked dirs
        if time.monotonic() > deadline:
            return Matches(sorted(names), "search stopped: too slow")
        dirs.sort()
        for f in sorted(files):
            full = Path(dirpath) / f
            if stat.S_ISREG(os.lstat(full).st_mode):
                names.append(full.relative_to(paths.workdir).as_posix())
                if len(names) >= MAX_STAGED_FILES:
                    return Matches(sorted(names), f"search stopped at {MAX_STAGED_FILES} files")
    return Matches(sorted(names))


def _wanted(
    outputs: tuple[str, ...], paths: RunPaths
) -> tuple[list[tuple[str, bool]], list[str], list[str]]:
    """The names to stage out (with whether they came from a pattern), the entries that
    matched nothing, and the searches cut short; in a worker thread."""
    deadline = time.monotonic() + SEARCH_S
    wanted: list[tuple[str, bool]] = []
    problems: list[str] = []
    truncated: list[str] = []
    for entry in outputs:
        found = output_matches(paths.workdir, entry, deadline=deadline)
        if not found.names and found.truncated is None:
            problems.append(f"{entry}: no match")
        if found.truncated is not None:
            truncated.append(f"{entry}: {found.truncated}")
        is_pattern = bool(GLOB_CHARS.intersection(entry))
        wanted.extend((name, is_pattern) for name in found.names)
    if len(wanted) > MAX_STAGED_FILES:
        truncated.append(f"only the first {MAX_STAGED_FILES} of {len(wanted)} output files")
        del wanted[MAX_STAGED_FILES:]
    checkpoint = _checkpoint_names(paths, deadline)
    if checkpoint.truncated is not None:
        truncated.append(f"checkpoint: {checkpoint.truncated}")
    wanted.extend((name, True) for name in checkpoint.names)
    return wanted, problems, truncated


def has_checkpoint(paths: RunPaths) -> bool:
    """Whether the run left anything in its checkpoint directory."""
    root = paths.checkpoint
    return root.is_dir() and not root.is_symlink() and any(root.iterdir())


async def stage_out(
    bus: Bus, owner: str, job_id: str, outputs: tuple[str, ...], paths: RunPaths
) -> StageOut:
    """Upload the outputs into the owner's bucket; say what was staged, what was missing or
    refused, what was cut short."""
    bucket = subjects.files_bucket(owner)
    staged: list[StagedOutput] = []
    done: set[str] = set()
    prefix = subjects.job_files_prefix(job_id)
    if outputs:  # a pattern search is bounded but may take a while: off the event loop
        wanted, problems, truncated = await asyncio.to_thread(_wanted, outputs, paths)
    else:
        wanted, problems, truncated = _wanted(outputs, paths)
    for name, is_pattern in wanted:
        if name in done:
            continue
        done.add(name)
        try:
            path = regular_file(paths.workdir, name)
        except StagingError as err:
            if not (is_pattern and (paths.workdir / name).is_dir()):
                problems.append(err.detail)
            continue
        try:
            size, digest = await objects.put_file(bus.js, bucket, prefix + name, path)
        except TimeoutError:
            raise  # the bus, not the file (an OSError too): the run is resumed, not failed
        except (objects.ObjectError, OSError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        staged.append(StagedOutput(name=name, obj=prefix + name, size=size, sha256=digest))
    return StageOut(staged, problems, truncated)


def prepare_workdir(paths: RunPaths) -> None:
    """A fresh, empty work directory with its checkpoint directory."""
    try:
        paths.workdir.mkdir()
    except FileExistsError:  # staging again after a gate restart: start from scratch
        shutil.rmtree(paths.workdir)
        paths.workdir.mkdir()
    paths.checkpoint.mkdir()
