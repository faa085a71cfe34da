"""Newline framing of a watch stream that arrives as arbitrary chunks of bytes.

The API server writes each JSON watch event followed by ``\\n`` and flushes whenever its
event channel is empty, so one network chunk may hold several events or a part of one
(docs/kubernetes-semantics.md#watch). Lines are therefore cut from a byte buffer, never
read with a line reader that has its own hidden limit, and a line that grows past the cap is
refused before it is buffered whole.

The lines of a chunk come back as one list: the watch hot path decodes a chunk at a time. They
are cut with ``bytes.find`` (memchr) and slicing, not ``bytes.split``, which scans byte by
byte and took five times as long on 7 KB lines (benchmarks/results/issue13).
"""

from __future__ import annotations


class LineTooLong(Exception):
    """The current line passed the cap; ``head`` is its first bytes, to name the object.

    ``complete`` holds the lines of the same chunk that came before it, whole and in order:
    they are events like any other, to be handled before the error.
    """

    def __init__(self, size: int, head: bytes, complete: list[bytes] | None = None) -> None:
        self.size = size
        self.head = head
        self.complete = complete if complete is not None else []
        super().__init__(f"line of at least {size} bytes")


class LineFramer:
    """Feed chunks, get complete lines (without the ``\\n``); empty lines are skipped."""

    HEAD_BYTES = 4096

    __slots__ = ("_max_line", "_partial", "_partial_size")

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max_line = max_line
        self._partial: list[bytes] = []
        self._partial_size = 0

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return self._partial_size

    def feed(self, chunk: bytes) -> list[bytes]:
        """Split ``chunk``; return every line it completes, in order."""
        lines: list[bytes] = []
        append, find, max_line = lines.append, chunk.find, self._max_line
        start = 0
        end = find(b"\n")
        if end != -1 and self._partial:
            self._check(self._partial_size + end, chunk[:end], lines)
            self._partial.append(chunk[:end])
            line = b"".join(self._partial)
            self._partial.clear()
            self._partial_size = 0
            if line:
                append(line)
            start = end + 1
            end = find(b"\n", start)
        while end != -1:
            if end - start > max_line:
                head = chunk[start : min(end, start + self.HEAD_BYTES)]
                raise LineTooLong(end - start, head, lines)
            if end > start:
                append(chunk[start:end])
            start = end + 1
            end = find(b"\n", start)
        if start < len(chunk):
            self._check(self._partial_size + len(chunk) - start, chunk[start:], lines)
            self._partial.append(chunk[start:])
            self._partial_size += len(chunk) - start
        return lines

    def _check(self, size: int, piece: bytes, complete: list[bytes]) -> None:
        if size > self._max_line:
            head = b"".join([*self._partial, piece])[: self.HEAD_BYTES]
            self._partial.clear()
            self._partial_size = 0
            raise LineTooLong(size, head, complete)
