"""The request log: what a client sent, for tests to assert on (and to wait for).

Every request is recorded on arrival, before authentication and faults decide its fate, so
a test can check the exact query a client used for a LIST or a re-WATCH (``resourceVersion``,
``allowWatchBookmarks``, ``timeoutSeconds``...). The log is bounded; headers are not kept, so
the bearer token never lands in it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from listwatch.testing._paths import is_watch
from listwatch.testing._signals import Signal

if TYPE_CHECKING:
    from listwatch.testing._faults import Fault

DEFAULT_MAXLEN = 100_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request: ``method``, ``path`` (decoded, no query), ``query`` (first value per key).

    ``fault`` is the injected fault that hit it, if any.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict, hash=False)
    fault: Fault | None = field(default=None, compare=False)
    user_agent: str = field(default="", compare=False)
    """The client's ``User-Agent`` header, as sent (audit logs and APF key on it)."""

    @property
    def watch(self) -> bool:
        """A watch request: ``watch`` query parameter true, or a legacy ``/watch/`` path."""
        return is_watch(self.path, self.query)


class RequestLog(Sequence[RecordedRequest]):
    """A bounded, append-only sequence of requests in arrival order, awaitable."""

    def __init__(
        self, maxlen: int = DEFAULT_MAXLEN, *, on_change: Callable[[], None] | None = None
    ) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=maxlen)
        self._total = 0
        self._appended = Signal(on_change)

    @property
    def total(self) -> int:
        """Requests recorded since the start, including those the bound dropped."""
        return self._total

    def append(self, request: RecordedRequest) -> None:
        self._entries.append(request)
        self._total += 1
        self._appended.notify()

    async def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], *, start: int, within: float
    ) -> RecordedRequest:
        """The first request with arrival index ``>= start`` that matches ``predicate``."""
        async with asyncio.timeout(within):
            index = start
            while True:
                appended = self._appended.event
                dropped = self._total - len(self._entries)
                for entry in itertools.islice(self._entries, max(index - dropped, 0), None):
                    if predicate(entry):
                        return entry
                index = self._total
                await appended.wait()

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> RecordedRequest: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RecordedRequest]: ...

    def __getitem__(self, index: int | slice) -> RecordedRequest | Sequence[RecordedRequest]:
        if isinstance(index, slice):
            return list(self._entries)[index]
        return self._entries[index]
