"""A "something changed" signal, so that everything waits on conditions instead of polling.

Watchers wait for the store to change, tests wait for a request to arrive or a watch to
start. Each waiter re-checks its own condition after every change, so no waiter sleeps
for a guessed time and none misses a change that happened before it started waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Signal:
    """Level-triggered change notification: each :meth:`notify` wakes every waiter once."""

    def __init__(self, on_notify: Callable[[], None] | None = None) -> None:
        self._event = asyncio.Event()
        self._on_notify = on_notify

    @property
    def event(self) -> asyncio.Event:
        """Set by the next :meth:`notify`. Take it *before* checking the condition."""
        return self._event

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()
        if self._on_notify is not None:
            self._on_notify()

    async def wait_until(self, condition: Callable[[], bool], within: float) -> None:
        """Wait until ``condition()`` holds; ``TimeoutError`` after ``within`` seconds."""
        async with asyncio.timeout(within):
            while True:
                event = self._event
                if condition():
                    return
                await event.wait()
