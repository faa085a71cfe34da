"""Exponential backoff with jitter and reset, as client-go's Reflector does it.

A fleet of clients that all lose their watch at once (an API server restart) must not come
back in lockstep, and a client that keeps failing must settle at a low request rate. client-go
targets about 0.22 requests/s under failure: delays of 0.8 s doubling to a 30 s cap, each
multiplied by a random factor in [1, 2), so the steady state is one try every 30-60 s. After
two minutes without a failure the delay starts again from 0.8 s.
Source: ``tools/cache/reflector.go`` (defaultBackoffInit/Max/Reset/Factor/Jitter); see
docs/kubernetes-semantics.md#reflector.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for consecutive failures; ``next_delay()`` once per failure.

    ``reset_after``: when the previous failure is older than this, the streak is over and the
    delay starts from ``initial`` again (client-go's backoff manager before v0.36).
    """

    initial: float = 0.8
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 1.0
    reset_after: float = 120.0
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _base: float = field(default=0.0, init=False, repr=False)
    _last_failure: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < self.initial:
            raise ValueError("backoff needs 0 <= initial <= cap")
        if self.factor < 1 or self.jitter < 0 or self.reset_after < 0:
            raise ValueError("backoff needs factor >= 1, jitter >= 0 and reset_after >= 0")

    def next_delay(self) -> float:
        """The delay before the next try after one more failure."""
        now = self.clock()
        if self._last_failure is None or now - self._last_failure > self.reset_after:
            self._base = self.initial
        self._last_failure = now
        base = self._base
        self._base = min(self._base * self.factor, self.cap)
        return base * (1.0 + self.rng.random() * self.jitter)

    def reset(self) -> None:
        """Forget the streak: the next failure waits ``initial`` again."""
        self._last_failure = None

    async def wait(self, at_least: float = 0.0) -> float:
        """Sleep for ``max(at_least, next_delay())`` (``at_least`` is a server's Retry-After)."""
        delay = max(at_least, self.next_delay())
        await self.sleep(delay)
        return delay

    async def sleep(self, delay: float) -> None:
        """Sleep for a delay ``next_delay()`` gave (a hook for tests that gate backoffs).

        ``asyncio.sleep``: the Syncer is asyncio-native throughout (its task groups are
        asyncio's, see ``syncer.py``)."""
        await asyncio.sleep(delay)
