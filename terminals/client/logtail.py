"""De-duplication of log chunks. Pure.

A gate restarted mid-run may resend a chunk that overlaps what was already sent; ``LogTail``
keeps, per attempt and stream, the byte offset shown so far and trims what is old.
"""

from __future__ import annotations

from schemas.gate import LogChunk
from schemas.subjects import LogStream


class LogTail:
    """Remembers how far each (attempt, stream) has been shown."""

    def __init__(self) -> None:
        self._shown: dict[tuple[int, LogStream], int] = {}

    def new_part(self, chunk: LogChunk) -> LogChunk | None:
        """The part of ``chunk`` not shown yet (None if nothing is new)."""
        key: tuple[int, LogStream] = (chunk.attempt, chunk.stream)
        if chunk.stream is LogStream.SYSTEM:
            if chunk.offset < self._shown.get(key, 0):
                return None
            self._shown[key] = chunk.offset + 1
            return chunk
        shown = self._shown.get(key, 0)
        raw = chunk.data.encode()
        end = chunk.offset + len(raw)
        if end <= shown:
            return None
        self._shown[key] = end
        if chunk.offset >= shown:
            return chunk
        fresh = raw[shown - chunk.offset :].decode(errors="replace")
        return _with_data(chunk, shown, fresh)


def _with_data(chunk: LogChunk, offset: int, data: str) -> LogChunk:
    return LogChunk(
        job_id=chunk.job_id,
        attempt=chunk.attempt,
        stream=chunk.stream,
        offset=offset,
        data=data,
        at=chunk.at,
    )
