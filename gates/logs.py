"""Tailing a run's output files into log chunks: byte offsets in, UTF-8 text out.

A chunk is at most 64 KiB of the file. Text is cut on character boundaries (an incomplete
UTF-8 sequence at the end waits for the next read, or is replaced at the end of the run);
invalid bytes become U+FFFD. ``decode_prefix`` is pure; ``OutputTail`` reads the file.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

MAX_CHUNK = 64 * 1024


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

    def chunks(self, final: bool) -> list[tuple[int, str, int]]:
        """New ``(offset, text, bytes)`` chunks since the last call; advances ``offset``."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        out: list[tuple[int, str, int]] = []
        try:
            while True:
                data = os.pread(fd, MAX_CHUNK, self.offset)
                if not data:
                    break
                last = len(data) < MAX_CHUNK
                text, used = decode_prefix(data, final and last)
                if used == 0:
                    if last:
                        break
                    text, used = decode_prefix(data, True)  # 64 KiB without a boundary
                out.append((self.offset, text, used))
                self.offset += used
        finally:
            os.close(fd)
        return out
