"""Confinement of staged file names to a work directory.

Names from the bus are hostile: ``check_relative_path`` (schemas) refuses absolute names and
``..``; this module adds what only the file system knows: no component of the path may be a
symbolic link, and the resolved path must stay inside the work directory. Output patterns
are matched by walking the work directory without following symbolic links, so a job's
link loop cannot make a search endless; a search also stops after ``MAX_STAGED_FILES``
matches or at a deadline. Reads the file system, writes nothing; a search can take a while,
so callers run it in a worker thread.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple

from gates.base import StagingError
from schemas.jobs import MAX_STAGED_FILES, StagedPathError, check_relative_path

GLOB_CHARS = frozenset("*?[")


def confined(workdir: Path, name: str) -> Path:
    """The path of ``name`` inside ``workdir``; raise StagingError if it could leave it.

    Every existing component (the last one included) must be a real directory or file, not
    a symbolic link; the file itself may not exist yet.
    """
    try:
        clean = check_relative_path(name)
    except StagedPathError as exc:
        raise StagingError(name, str(exc)) from exc
    root = workdir.resolve()
    path = root
    for part in clean.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise StagingError(name, "is or goes through a symbolic link")
    full = root / clean
    if not full.resolve().is_relative_to(root):  # defence in depth: cannot happen after the above
        raise StagingError(name, "resolves outside the work directory")
    return full


class Matches(NamedTuple):
    """The names an output entry stands for, sorted; ``truncated`` says why the search
    stopped early (``None``: it did not)."""

    names: list[str]
    truncated: str | None = None


def output_matches(
    workdir: Path, name: str, *, limit: int = MAX_STAGED_FILES, deadline: float | None = None
) -> Matches:
    """The relative names an output entry stands for.

    An entry with glob characters (``*``, ``?``, ``[``) is a pattern, matched relative to the
    work directory: ``*``, ``?`` and ``[...]`` within one path component, a ``**`` component
    for any number of directories (none included); names starting with ``.`` match only a
    component that starts with ``.`` too (``**`` never spans them). Directories are not
    matched and symbolic links to directories are not entered. At most ``limit`` names;
    ``deadline`` is a ``time.monotonic()`` value. Otherwise the entry names one file.
    """
    clean = check_relative_path(name)
    if not GLOB_CHARS.intersection(name):
        return Matches([name])
    return _search(workdir, tuple(clean.split("/")), limit, deadline)


def _search(workdir: Path, pattern: tuple[str, ...], limit: int, deadline: float | None) -> Matches:
    """Walk ``workdir`` top-down, entering only directories some part of ``pattern`` can
    still match below (a set of positions in ``pattern`` per directory)."""
    found: list[str] = []
    pending = {os.fspath(workdir): ("", _closure({0}, pattern))}
    for dirpath, dirs, files in os.walk(workdir, followlinks=False):
        prefix, states = pending.pop(dirpath, ("", frozenset[int]()))
        if deadline is not None and time.monotonic() > deadline:
            return Matches(sorted(found), f"search stopped after {len(found)} match(es): too slow")
        dirs.sort()
        entered = []
        for d in dirs:
            below = _step(states, pattern, d)
            if below - {len(pattern)}:
                pending[os.path.join(dirpath, d)] = (f"{prefix}{d}/", below)
                entered.append(d)
        dirs[:] = entered
        for f in sorted(files):
            if len(pattern) in _step(states, pattern, f):
                found.append(prefix + f)
                if len(found) >= limit:
                    return Matches(sorted(found), f"search stopped at {limit} match(es)")
    return Matches(sorted(found))


def _step(states: frozenset[int], pattern: tuple[str, ...], name: str) -> frozenset[int]:
    """The positions in ``pattern`` reached from ``states`` by one path component."""
    hidden = name.startswith(".")
    reached: set[int] = set()
    for i in states:
        if i == len(pattern):
            continue
        part = pattern[i]
        if part == "**":
            if not hidden:
                reached.add(i)  # it spans this component too
        elif (not hidden or part.startswith(".")) and fnmatchcase(name, part):
            reached.add(i + 1)
    return _closure(reached, pattern)


def _closure(states: Iterable[int], pattern: tuple[str, ...]) -> frozenset[int]:
    """``states`` and what they reach by letting a ``**`` span no component."""
    out = set(states)
    todo = list(out)
    while todo:
        i = todo.pop()
        if i < len(pattern) and pattern[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return frozenset(out)


def regular_file(workdir: Path, name: str) -> Path:
    """The confined path of an existing regular file (not a symlink) to stage out."""
    path = confined(workdir, name)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError as exc:
        raise StagingError(name, "no such file") from exc
    if not stat.S_ISREG(mode):
        raise StagingError(name, "not a regular file")
    return path
