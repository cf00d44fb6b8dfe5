"""Staged files in the JetStream object store: put a local file, get one to a local path.

Each user's files live in that user's bucket (``subjects.files_bucket``), which core creates.
Callers pass confined local paths; this module only moves bytes and checks digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore


class ObjectError(Exception):
    """A staged file is missing, or its content does not match its digest."""


class BucketMissingError(ObjectError):
    """The bucket does not exist (yet: core creates a user's bucket once it sees the user)."""


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 (hex) of a local file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


async def _bucket(js: JetStreamContext, bucket: str) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError) as exc:
        raise BucketMissingError(f"no files bucket {bucket!r}") from exc


async def put_file(js: JetStreamContext, bucket: str, key: str, path: Path) -> tuple[int, str]:
    """Upload ``path`` under ``key`` in ``bucket``; return its size and SHA-256."""
    size, digest = file_digest(path)
    store = await _bucket(js, bucket)
    with path.open("rb") as f:
        await store.put(key, f)
    return size, digest


async def get_file(
    js: JetStreamContext, bucket: str, key: str, dest: Path, sha256: str | None = None
) -> int:
    """Download ``key`` of ``bucket`` to ``dest`` (written beside, then renamed); return its
    size."""
    store = await _bucket(js, bucket)
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
