"""Where fetched outputs may be written. Reads the file system, writes nothing.

A staged-out name comes from the bus and is treated as hostile: it must be a plain relative
name (``schemas.jobs.check_relative_path``), and no existing component of its path under the
destination may be a symbolic link, so a job cannot make ``fetch`` write outside ``dest``.
"""

from __future__ import annotations

from pathlib import Path

from schemas.jobs import StagedPathError, check_relative_path
from terminals.client.errors import StagingError

PART_SUFFIX = ".skyport-part"  # bus.objects.get_file writes beside the target, then renames


def confined_target(dest: Path, name: str) -> Path:
    """The path of output ``name`` under ``dest``; StagingError if it could escape ``dest``."""
    try:
        clean = check_relative_path(name)
    except StagedPathError as exc:
        raise StagingError(f"refusing output {name!r}: {exc}") from exc
    root = dest.resolve()
    target = root / clean
    current = root
    for part in Path(clean).parts:
        current = current / part
        if current.is_symlink():
            raise StagingError(f"refusing output {name!r}: {current} is a symbolic link")
    part_file = target.with_name(target.name + PART_SUFFIX)
    if part_file.is_symlink():
        raise StagingError(f"refusing output {name!r}: {part_file} is a symbolic link")
    if root not in target.resolve().parents:
        raise StagingError(f"refusing output {name!r}: it leaves {root}")
    if target.is_dir():
        raise StagingError(f"refusing output {name!r}: {target} is a directory")
    return target


def prepare_target(dest: Path, name: str) -> Path:
    """``confined_target``, with its parent directories created (each checked again)."""
    target = confined_target(dest, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    return confined_target(dest, name)
