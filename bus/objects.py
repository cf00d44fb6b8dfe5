"""Staged files in the JetStream object store: put a local file, get one to a local path.

Callers pass confined local paths; this module only moves bytes and checks digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from schemas.subjects import FILES_BUCKET


class ObjectError(Exception):
    """A staged file is missing, or its content does not match its digest."""


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 (hex) of a local file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


async def put_file(js: JetStreamContext, key: str, path: Path) -> tuple[int, str]:
    """Upload ``path`` under ``key``; return its size and SHA-256."""
    size, digest = file_digest(path)
    store = await js.object_store(FILES_BUCKET)
    with path.open("rb") as f:
        await store.put(key, f)
    return size, digest


async def get_file(js: JetStreamContext, key: str, dest: Path, sha256: str | None = None) -> int:
    """Download ``key`` to ``dest`` (written beside, then renamed); return its size."""
    store = await js.object_store(FILES_BUCKET)
    tmp = dest.with_name(dest.name + ".skyport-part")
    try:
        with tmp.open("wb") as f:
            await store.get(key, writeinto=f)
    except (ObjectNotFoundError, NotFoundError) as exc:
        tmp.unlink(missing_ok=True)
        raise ObjectError(f"staged file {key!r} not found") from exc
    size, digest = file_digest(tmp)
    if sha256 is not None and digest != sha256:
        tmp.unlink(missing_ok=True)
        raise ObjectError(f"staged file {key!r} does not match its digest")
    tmp.replace(dest)
    return size
