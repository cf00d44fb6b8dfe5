"""Tailing a run's output files into log chunks: byte offsets in, UTF-8 text out.

A chunk is at most 64 KiB of the file, and one read at most ``MAX_READ`` bytes, so a job
that writes gigabytes between two polls costs the gate a bounded amount of memory. Reading
does not move the offset: the caller moves it past a chunk once the chunk is published, so
what failed to go out is read again. Text is cut on character boundaries (an incomplete
UTF-8 sequence at the end waits for the next read, or is replaced at the end of the run);
invalid bytes become U+FFFD. ``decode_prefix`` is pure; ``OutputTail`` reads the file.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import NamedTuple

MAX_CHUNK = 64 * 1024
MAX_READ = 1024 * 1024


class Chunk(NamedTuple):
    offset: int
    text: str
    nbytes: int

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


def decode_prefix(data: bytes, final: bool) -> tuple[str, int]:
    """The text of the longest prefix of ``data`` that ends on a character boundary (all of
    it when ``final``) and the number of bytes that prefix has."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final)
    pending = len(decoder.getstate()[0])
    return text, len(data) - pending


class OutputTail:
    """Reads a growing file from ``offset`` on, chunk by chunk."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def pending(self, final: bool, limit: int = MAX_READ) -> list[Chunk]:
        """The chunks after ``offset``, at most ``limit`` bytes of them; ``final``: the file
        will not grow, so an incomplete character at its very end is replaced, not held back.
        Does not move ``offset`` (see ``advance``)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        out: list[Chunk] = []
        at, left = self.offset, limit
        try:
            while left > 0:
                want = min(MAX_CHUNK, left)
                data = os.pread(fd, want, at)
                if not data:
                    break
                at_end = len(data) < want  # of the file, as it is now
                text, used = decode_prefix(data, final and at_end)
                if used == 0:  # only the start of a character: the rest comes later
                    break
                out.append(Chunk(at, text, used))
                at += used
                left -= used
        finally:
            os.close(fd)
        return out

    def advance(self, chunk: Chunk) -> None:
        """``chunk`` went out: read on after it."""
        self.offset = max(self.offset, chunk.end)
