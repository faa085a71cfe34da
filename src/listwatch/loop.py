"""The list-then-watch rules: when to retry a request, re-watch, or give up and relist.

Every rule of the loop lives here, next to the reason for it; the names follow the
Kubernetes docs and client-go's Reflector (``kubernetes-list-watch.md`` sections 3 and 4).
The Syncer calls ``list_snapshot`` then ``watch_from``; an exception out of either ends the
generation, and the Syncer backs off and relists (or, for a ``FatalError``, stops).

| what happened                                    | rule                                   |
|--------------------------------------------------|----------------------------------------|
| 429, or 5xx with Retry-After                     | wait max(Retry-After, backoff), retry  |
|                                                  | the same request                       |
| LIST page 2+ answered 410 (continue expired)     | restart the list from the first page   |
| watch closed cleanly, timed out, reset, or idle  | re-watch from the last RV at once      |
| ... within 1 s and with no event (very short)    | back off, relist                       |
| watch connection refused                         | back off, re-watch                     |
| 410 Expired / Gone (ERROR event or HTTP status)  | relist                                 |
| 404, 400, 422                                    | fatal: ``Syncer.run()`` raises         |
| anything else (401/403, 5xx, malformed, too big) | back off, relist                       |
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import NoReturn, TypeVar

from listwatch.backoff import Backoff
from listwatch.errors import (
    ApiConnectionError,
    ConnectionLost,
    ListWatchError,
    ResourceExpired,
    ServerError,
    TooManyRequests,
    WatchIdle,
    WatchStreamError,
)
from listwatch.events import Event, JsonObject, Snapshot, Transform
from listwatch.source import ListOptions, ListWatch, WatchOptions

logger = logging.getLogger("listwatch")

T = TypeVar("T")
Emit = Callable[[Event], Awaitable[None]]

WATCH_TIMEOUT_SECONDS = (300, 600)
"""client-go's watch timeout is random in [5 min, 10 min] so that a fleet of clients does not
re-watch in lockstep (kubernetes/kubernetes#6770)."""

VERY_SHORT_WATCH_SECONDS = 1.0
"""A watch that ends this soon with no event did not really start: a stale RV on a resource
without a watch cache answers with an empty 200 (kubernetes/kubernetes#104171). Re-watching
would loop; client-go's ``VeryShortWatchError`` relists after a backoff."""

MAX_SAME_REQUEST_RETRIES = 10
"""client-go's REST layer retries a 429 or Retry-After 5xx up to 10 times (``maxRetries``)."""

MAX_LIST_RESTARTS = 3
"""Continue tokens expired this many times in a row: paging is slower than compaction, and
the generation fails (and backs off) instead of paging forever."""


class VeryShortWatch(WatchStreamError):
    """The watch ended within a second without a single event."""


def _retry_after(exc: ListWatchError) -> float | None:
    """The wait before the same request again, or None if this error is not retried so.

    A 429 is always retried (Retry-After or not); a 5xx only when the server said when.
    """
    if isinstance(exc, TooManyRequests):
        return exc.retry_after or 0.0
    if isinstance(exc, ServerError) and exc.retry_after is not None:
        return exc.retry_after
    return None


async def retrying(request: Callable[[], Awaitable[T]], backoff: Backoff, what: str) -> T:
    """``request()``, repeated on 429 / Retry-After 5xx, at most ``MAX_SAME_REQUEST_RETRIES``."""
    attempt = 0
    while True:
        try:
            return await request()
        except (TooManyRequests, ServerError) as exc:
            wait = _retry_after(exc)
            attempt += 1
            if wait is None or attempt > MAX_SAME_REQUEST_RETRIES:
                raise
            delay = await backoff.wait(at_least=wait)
            logger.info("%s: %s; retried the same request after %.1f s", what, exc, delay)


async def list_snapshot(
    source: ListWatch,
    *,
    page_size: int,
    backoff: Backoff,
    transform: Transform | None = None,
) -> Snapshot:
    """A complete, consistent LIST at RV "" (most recent), paged with ``limit``/``continue``.

    All pages are served at the first page's resourceVersion, so together they are one
    snapshot. When a continue token expires (etcd compacted its revision, 410), the pages
    already read cannot be completed consistently: start again from the first page.
    """
    restarts = 0
    while True:
        items: list[JsonObject] = []
        token: str | None = None
        resource_version = ""
        try:
            while True:
                options = ListOptions(limit=page_size, continue_token=token)
                page = await retrying(functools.partial(source.list, options), backoff, "list")
                if transform is None:
                    items.extend(page.items)
                else:
                    items.extend(transform(item) for item in page.items)
                resource_version = resource_version or page.resource_version
                token = page.continue_token
                if token is None:
                    return Snapshot(items, resource_version)
        except ResourceExpired:
            if token is None or restarts >= MAX_LIST_RESTARTS:
                raise
            restarts += 1
            logger.info(
                "list %s: continue token expired after %d items; listing again from the start",
                source.description,
                len(items),
            )


async def watch_from(
    source: ListWatch,
    resource_version: str,
    emit: Emit,
    *,
    backoff: Backoff,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> NoReturn:
    """Watch from ``resource_version`` for ever, re-watching from the last RV seen.

    Returns only by raising: a relist is needed (410, very short watch, anything unexpected)
    or the error is fatal. Every event, bookmarks included, goes to ``emit``; bookmarks move
    the resume point too, so a quiet resource does not fall behind compaction.
    """
    rng = rng or random.Random()
    while True:
        started = clock()
        received = 0
        options = WatchOptions(
            resource_version, timeout_seconds=rng.randint(*WATCH_TIMEOUT_SECONDS)
        )
        try:
            async with aclosing(source.watch(options)) as stream:
                async for event in stream:
                    received += 1
                    resource_version = event.resource_version or resource_version
                    await emit(event)
            how = "closed"
        except (ConnectionLost, WatchIdle) as exc:
            # A reset, an EOF mid-stream or a silent connection is a normal close for
            # client-go's StreamWatcher: resume where we are.
            how = str(exc)
        except ApiConnectionError as exc:
            if not exc.refused:
                raise
            # Refused: the server is restarting. Our RV is still good; wait and re-watch.
            delay = await backoff.wait()
            logger.info("%s; re-watching after %.1f s", exc, delay)
            continue
        except (TooManyRequests, ServerError) as exc:
            wait = _retry_after(exc)
            if wait is None:
                raise
            delay = await backoff.wait(at_least=wait)
            logger.info("%s; re-watching after %.1f s", exc, delay)
            continue
        if received == 0 and clock() - started < VERY_SHORT_WATCH_SECONDS:
            raise VeryShortWatch(
                f"watch {source.description} from resourceVersion {resource_version} ended "
                f"within {VERY_SHORT_WATCH_SECONDS:g} s without an event ({how})"
            )
        logger.debug(
            "watch %s %s after %d events; re-watching from %s",
            source.description,
            how,
            received,
            resource_version,
        )
