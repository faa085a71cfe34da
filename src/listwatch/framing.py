"""Newline framing of a watch stream that arrives as arbitrary chunks of bytes.

The API server writes each JSON watch event followed by ``\\n`` and flushes whenever its
event channel is empty, so one network chunk may hold several events or a part of one
(``kubernetes-list-watch.md`` section 2.2). Lines are therefore cut from a byte buffer, never
read with a line reader that has its own hidden limit, and a line that grows past the cap is
refused before it is buffered whole.
"""

from __future__ import annotations

from collections.abc import Iterator


class LineTooLong(Exception):
    """The current line passed the cap; ``head`` is its first bytes, to name the object."""

    def __init__(self, size: int, head: bytes) -> None:
        self.size = size
        self.head = head
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

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Split ``chunk``; yield every line it completes."""
        start = 0
        end = chunk.find(b"\n")
        while end != -1:
            if self._partial:
                self._check(self._partial_size + end - start, chunk[start:end])
                self._partial.append(chunk[start:end])
                line = b"".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
            else:
                self._check(end - start, chunk[start:end])
                line = chunk[start:end]
            if line:
                yield line
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            self._check(self._partial_size + len(chunk) - start, chunk[start:])
            self._partial.append(chunk[start:])
            self._partial_size += len(chunk) - start

    def _check(self, size: int, piece: bytes) -> None:
        if size > self._max_line:
            head = b"".join([*self._partial, piece])[: self.HEAD_BYTES]
            self._partial.clear()
            self._partial_size = 0
            raise LineTooLong(size, head)
