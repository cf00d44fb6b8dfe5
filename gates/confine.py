"""Confinement of staged file names to a work directory.

Names from the bus are hostile: ``check_relative_path`` (schemas) refuses absolute names and
``..``; this module adds what only the file system knows: no component of the path may be a
symbolic link, and the resolved path must stay inside the work directory. Reads the file
system, writes nothing.
"""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from gates.base import StagingError
from schemas.jobs import StagedPathError, check_relative_path

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


def output_matches(workdir: Path, name: str) -> list[str]:
    """The relative names an output entry stands for.

    An entry with glob characters (``*``, ``?``, ``[``) is a pattern, matched relative to the
    work directory (``**`` spans directories; hidden files match only explicitly); otherwise
    it names one file. Matches are sorted; a pattern that matches nothing gives no names.
    """
    check_relative_path(name)
    if not GLOB_CHARS.intersection(name):
        return [name]
    return sorted(glob.glob(name, root_dir=workdir, recursive=True))


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
