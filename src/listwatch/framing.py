"""Newline framing of a watch stream that arrives as arbitrary chunks of bytes.

The API server writes each JSON watch event followed by ``\\n`` and flushes whenever its
event channel is empty, so one network chunk may hold several events or a part of one
(``kubernetes-list-watch.md`` section 2.2). Lines are therefore cut from a byte buffer, never
read with a line reader that has its own hidden limit, and a line that grows past the cap is
refused before it is buffered whole.

A chunk is cut with one ``bytes.split`` (C speed, one call per chunk, not per line): the watch
hot path hands the decoder a list of lines per network chunk.
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
        self.complete = complete or []
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
        lines = chunk.split(b"\n")
        tail = lines.pop()  # what follows the last newline: the start of the next line
        max_line = self._max_line
        if lines:
            if self._partial:
                first = lines[0]
                self._check(self._partial_size + len(first), first, [])
                self._partial.append(first)
                lines[0] = b"".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
            if len(chunk) > max_line:  # else no line of it can be over the cap
                for index, line in enumerate(lines):
                    if len(line) > max_line:
                        complete = [whole for whole in lines[:index] if whole]
                        raise LineTooLong(len(line), line[: self.HEAD_BYTES], complete)
            if b"" in lines:
                lines = [line for line in lines if line]
        if tail:
            self._check(self._partial_size + len(tail), tail, lines)
            self._partial.append(tail)
            self._partial_size += len(tail)
        return lines

    def _check(self, size: int, piece: bytes, complete: list[bytes]) -> None:
        if size > self._max_line:
            head = b"".join([*self._partial, piece])[: self.HEAD_BYTES]
            self._partial.clear()
            self._partial_size = 0
            raise LineTooLong(size, head, [line for line in complete if line])
