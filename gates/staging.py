"""Stage files between the object store and a run's work directory (I/O).

Inputs: every name is confined (``gates.confine``) before anything is written; the download
is checked against its SHA-256. Outputs: each entry of ``spec.outputs`` is a relative name or
a glob pattern (``gates.confine.output_matches``); only regular files inside the work
directory are uploaded, under ``jobs/<job_id>/<name>``; what is missing or refused is listed,
never fatal. Regular files under the checkpoint directory are staged out too, as
``checkpoint/<path>``.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from bus import objects
from bus.connection import Bus
from gates.base import RunPaths, StagingError
from gates.confine import GLOB_CHARS, confined, output_matches, regular_file
from schemas import subjects
from schemas.jobs import MAX_STAGED_FILES, StagedInput, StagedOutput


async def stage_in(bus: Bus, inputs: tuple[StagedInput, ...], workdir: Path) -> None:
    """Download every input to its confined place; raise StagingError naming the file."""
    for inp in inputs:
        dest = confined(workdir, inp.name)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            confined(workdir, inp.name)  # the directories just made are ours, re-check anyway
            await objects.get_file(bus.js, inp.obj, dest, inp.sha256)
        except (objects.ObjectError, OSError) as exc:
            raise StagingError(inp.name, str(exc)) from exc


def _checkpoint_names(paths: RunPaths) -> list[str]:
    root = paths.checkpoint
    if not root.is_dir() or root.is_symlink():
        return []
    names: list[str] = []
    for dirpath, _dirs, files in os.walk(root):  # os.walk does not follow symlinked dirs
        for f in files:
            full = Path(dirpath) / f
            if stat.S_ISREG(os.lstat(full).st_mode):
                names.append(full.relative_to(paths.workdir).as_posix())
    return sorted(names)[:MAX_STAGED_FILES]


def has_checkpoint(paths: RunPaths) -> bool:
    """Whether the run left anything in its checkpoint directory."""
    root = paths.checkpoint
    return root.is_dir() and not root.is_symlink() and any(root.iterdir())


async def stage_out(
    bus: Bus, job_id: str, outputs: tuple[str, ...], paths: RunPaths
) -> tuple[list[StagedOutput], list[str]]:
    """Upload the outputs; return what was staged and what was missing or refused."""
    staged: list[StagedOutput] = []
    problems: list[str] = []
    done: set[str] = set()
    prefix = subjects.job_files_prefix(job_id)
    wanted: list[tuple[str, bool]] = []
    for entry in outputs:
        matches = output_matches(paths.workdir, entry)
        if not matches:
            problems.append(f"{entry}: no match")
        is_pattern = bool(GLOB_CHARS.intersection(entry))
        wanted.extend((name, is_pattern) for name in matches)
    wanted.extend((name, True) for name in _checkpoint_names(paths))
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
            size, digest = await objects.put_file(bus.js, prefix + name, path)
        except OSError as exc:
            problems.append(f"{name}: {exc}")
            continue
        staged.append(StagedOutput(name=name, obj=prefix + name, size=size, sha256=digest))
    return staged, problems


def prepare_workdir(paths: RunPaths) -> None:
    """A fresh, empty work directory with its checkpoint directory."""
    try:
        paths.workdir.mkdir()
    except FileExistsError:  # staging again after a gate restart: start from scratch
        shutil.rmtree(paths.workdir)
        paths.workdir.mkdir()
    paths.checkpoint.mkdir()
