"""The list-then-watch rules: how a snapshot is listed, when to retry, re-watch, relist or stop.

Every rule of the loop lives here, next to the reason for it; the names follow the
Kubernetes docs and client-go's Reflector (``docs/kubernetes-semantics.md#reflector``;
where listwatch departs from it, and why:
``docs/kubernetes-semantics.md#where-listwatch-deliberately-differs-from-client-go``).
A generation opens its snapshot with ``ListingPolicy.open``, hands the pages to the
receiver as a ``Snapshot`` (which must be read to its end: ``Snapshot.ensure_read``), then
calls ``watch_from``. An exception out of any of them ends the generation; ``fatal_error``
decides whether the Syncer stops, and otherwise it backs off and relists.

| what happened                                    | rule                                   |
|--------------------------------------------------|----------------------------------------|
| 429, or 5xx with Retry-After                     | wait max(Retry-After up to 60 s,       |
|                                                  | backoff), retry the same request (a    |
|                                                  | list: 10 times); a WARNING before a    |
|                                                  | wait of 5 s or more                    |
| a LIST page or the stream fails mid-snapshot     | raised into the receiver's iteration;  |
| (continue token expired, cut, 5xx, ...)          | back off, relist                       |
| on_list returns before the end of the snapshot   | ``ReceiverError``: back off, relist    |
| streaming list refused (400/422, 5xx, ERROR)     | "auto": page this generation instead,  |
|                                                  | say why once (``ListingPolicy``);      |
|                                                  | "stream": 400/422 is fatal             |
|                                                  | (``WatchListRefused``)                 |
| streaming list ends before initial-events-end    | back off, relist (no fallback)         |
| ... or goes quiet without that bookmark          | back off; "auto" pages the next list   |
| watch closed cleanly, timed out, reset, or       | re-watch from the last RV at once      |
| silent past its timeoutSeconds (``WatchIdle``)   |                                        |
| ... within 1 s and with no event (very short)    | back off, relist                       |
| no answer at all (``ApiConnectionError``:        | reconnect backoff (capped at 2 s),     |
| refused, reset, DNS, TLS, connect timeout)       | then the same step: a watch re-watches |
|                                                  | from its RV, a generation relists      |
| 410 Expired / Gone (ERROR event or HTTP status)  | back off, relist                       |
| a resource name that discovery cannot resolve    | fatal: ``DiscoveryError`` (resolved    |
| (unknown, ambiguous, no list/watch)              | once, before the first LIST)           |
| 404 once the resource has synced (no longer      | deliver what the watch received, back  |
| served: its CRD was deleted)                     | off, relist until it is served again;  |
|                                                  | reported (``SyncerStatus.served``)     |
| 404 before that, 400, 422                        | fatal: ``Syncer.run()`` raises         |
| 403 before the receiver ever took a snapshot     | fatal: ``ForbiddenBeforeSync``         |
| anything else (401, 403 once synced, 5xx,        | back off, relist                       |
| malformed, too big, a receiver error)            |                                        |
| ``resync_period`` elapsed                        | relist at once (not a failure)         |

"Back off" is the relist backoff (client-go's), whose streak grows while generations fail
one after another; the reconnect backoff is a streak of its own that ends as soon as the
server answers anything (``Waits``). Every wait is logged before it begins.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn, Protocol, Self, TypeVar, runtime_checkable

from listwatch._backoff import Backoff
from listwatch._models import PAGE_BYTES, Event, EventType, Item, Page, PageStream
from listwatch._source import ListWatch
from listwatch._types import ListOptions, WatchOptions
from listwatch.errors import (
    ApiConnectionError,
    ApiError,
    ConnectionLost,
    FatalError,
    ForbiddenBeforeSync,
    IncompleteList,
    InvalidRequest,
    ListWatchError,
    MalformedEvent,
    ResourceNotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
    VeryShortWatch,
    WatchIdle,
    WatchListRefused,
    WatchListUnsupported,
)
from listwatch.observe import _events as observe

logger = logging.getLogger("listwatch")

T = TypeVar("T")
Emit = Callable[[list[Event]], Awaitable[None]]
"""Takes the events of one network chunk (or one event, from a source that yields them so)."""
EventStream = AsyncGenerator[Event, None]


@runtime_checkable
class ChunkedEventStream(Protocol):
    """A watch stream that can hand over each network chunk's events at once.

    ``ListWatch.from_client``'s streams are (``apiclient.WatchStream``); the loop reads them
    so, and a custom source's plain async generator one event at a time.
    """

    def event_lists(self) -> AsyncGenerator[list[Event], None]: ...


async def _one_by_one(stream: EventStream) -> AsyncGenerator[list[Event], None]:
    async for event in stream:
        yield [event]


WATCH_TIMEOUT_SECONDS = (300, 600)
"""client-go's watch timeout is random in [5 min, 10 min] so that a fleet of clients does not
re-watch in lockstep (kubernetes/kubernetes#6770)."""

VERY_SHORT_WATCH_SECONDS = 1.0
"""A watch that ends this soon with no event did not really start: a stale RV on a resource
without a watch cache answers with an empty 200 (kubernetes/kubernetes#104171). Re-watching
would loop; client-go's ``VeryShortWatchError`` relists after a backoff."""

MAX_SAME_REQUEST_RETRIES = 10
"""client-go's REST layer retries a 429 or Retry-After 5xx up to 10 times (``maxRetries``)."""

MAX_RETRY_AFTER_SECONDS = 60.0
"""The longest a server's ``Retry-After`` is honoured; a longer one waits this long.
kube-apiserver never asks for more than 32 s (APF's cap; a watch cache that is not ready
says 1-30 s: docs/kubernetes-semantics.md#priority-and-fairness), and it gives a request no
more than 60 s itself (``--request-timeout``, the 504 of a non-watch request). client-go
bounds the same wait only by the request's context (``rest.Config.Timeout``,
kubectl's ``--request-timeout``): a Retry-After of days from a proxy or a broken server
would hold a snapshot open, and the receiver's copy stale, for days. With
``MAX_SAME_REQUEST_RETRIES`` a request waits 10 minutes at most before its generation ends."""

LOUD_WAIT_SECONDS = 5.0
"""A wait at least this long is logged at WARNING before it starts (naming the request and
the server's answer), so a stalled sync is never silent; shorter ones, APF's usual 1 s,
at INFO. An outage is made of short waits (``RECONNECT_CAP``): each re-watch is at WARNING
once the server has not answered for this long."""

INITIAL_EVENTS_QUIET_SECONDS = 10.0
"""A streaming list whose server sends nothing for this long before the initial-events-end
bookmark is not a streaming list: a server (or mock, or aggregated API) that ignores
``sendInitialEvents`` sends the ADDEDs and then just watches, and a client waiting for the
bookmark hangs for ever (kubernetes/kubernetes#135895). kube-apiserver writes the initial
events back to back from its cache; 10 s is client-go's "awaiting required bookmark" tick.
Only time spent waiting on the network counts: a slow receiver is not a quiet server."""


class ListStrategy(enum.StrEnum):
    """How a generation lists its snapshot."""

    AUTO = "auto"
    """Stream where the server can (the WatchList feature, on by default since 1.34), else
    page; tried again at every relist, as client-go does."""
    STREAM = "stream"
    """Always a streaming list: one watch with ``sendInitialEvents=true``."""
    PAGED = "paged"
    """Always a paged LIST at resourceVersion "" (a consistent read)."""


def watch_timeout_seconds(watch_timeout: float | None, rng: random.Random) -> int:
    """The ``timeoutSeconds`` of the next watch: client-go's random [300, 600] s by default."""
    if watch_timeout is None:
        return rng.randint(*WATCH_TIMEOUT_SECONDS)
    return max(1, round(watch_timeout))


def _retry_after(exc: ListWatchError) -> float | None:
    """The wait before the same request again, or None if this error is not retried so.

    A 429 is always retried (Retry-After or not); a 5xx only when the server said when.
    Either waits at most ``MAX_RETRY_AFTER_SECONDS``.
    """
    if isinstance(exc, TooManyRequests):
        return min(exc.retry_after or 0.0, MAX_RETRY_AFTER_SECONDS)
    if isinstance(exc, ServerError) and exc.retry_after is not None:
        return min(exc.retry_after, MAX_RETRY_AFTER_SECONDS)
    return None


RECONNECT_CAP = 2.0
"""The longest wait (before jitter) to try again a server that did not answer at all.

Trying again only asks "is it back?": a refused or unanswered connection costs the server
nothing, so a restarted kube-apiserver is found within a few seconds (at most twice this,
with jitter) of being ready, instead of after a backoff that grew for as long as it was
down. The jitter stays, so that a fleet of clients does not reconnect in lockstep; what the
server then answers (a 410, a 429) is paced by the ordinary rules."""


class Waits:
    """How long to wait after a failure, by whether the server answered it.

    Two streaks, so that an outage does not grow the backoff of relists:

    * the server answered with a failure (a 410, a 5xx, a broken stream, a receiver's
      error, ...): the *relist* backoff (the Syncer's ``backoff``, client-go's curve), whose
      streak grows while generations fail one after another, so a real relist storm backs
      off towards 30-60 s;
    * the server did not answer at all (``ApiConnectionError``: refused, reset before an
      answer, DNS, TLS, a connect timeout): the *reconnect* backoff, the same curve capped at
      ``RECONNECT_CAP``. Its streak ends as soon as the server answers anything.

    A restarted kube-apiserver answers the re-watch of an RV older than its fresh watch
    cache with a 410 (``docs/kubernetes-semantics.md#reflector``); that relist waits the
    relist backoff as it stood before the outage, not one grown by every refused connection.
    Every wait sleeps through ``backoff.sleep`` (the hook a test gates).
    """

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.unanswered_since: float | None = None
        """When the current streak of unanswered tries began (``backoff.clock``)."""
        cap = min(backoff.cap, RECONNECT_CAP)
        self._reconnect = Backoff(
            initial=min(backoff.initial, cap),
            cap=cap,
            factor=backoff.factor,
            jitter=backoff.jitter,
            reset_after=backoff.reset_after,
            clock=backoff.clock,
            rng=backoff.rng,
        )

    def after(self, exc: BaseException, *, at_least: float = 0.0) -> float:
        """The delay before the next try after ``exc`` (at least a server's Retry-After),
        counted in the streak ``exc`` belongs to."""
        if isinstance(exc, ApiConnectionError):
            if self.unanswered_since is None:
                self.unanswered_since = self.backoff.clock()
            return max(at_least, self._reconnect.next_delay())
        self.answered()
        return max(at_least, self.backoff.next_delay())

    def answered(self) -> None:
        """The server answered: the reconnect streak is over."""
        self._reconnect.reset()
        self.unanswered_since = None

    def unanswered_for(self) -> float:
        """Seconds the server has not answered any try (0 when it answered the last)."""
        since = self.unanswered_since
        return 0.0 if since is None else self.backoff.clock() - since

    async def sleep(self, delay: float) -> None:
        await self.backoff.sleep(delay)


def _ignore(event: observe.SyncEvent) -> None:
    pass


async def retrying(
    request: Callable[[], Awaitable[T]],
    backoff: Backoff,
    what: str,
    *,
    verb: observe.Verb = "list",
    notify: observe.Observer = _ignore,
) -> T:
    """``request()``, repeated on 429 / Retry-After 5xx, at most ``MAX_SAME_REQUEST_RETRIES``.

    Each attempt is reported to ``notify`` as a ``RequestDone`` of ``verb``.
    """
    attempt = 0
    while True:
        try:
            result = await request()
        except ListWatchError as exc:
            notify(observe.RequestDone(verb, type(exc).__name__))
            if not isinstance(exc, TooManyRequests | ServerError):
                raise
            wait = _retry_after(exc)
            attempt += 1
            if wait is None or attempt > MAX_SAME_REQUEST_RETRIES:
                raise
            delay = max(wait, backoff.next_delay())
            _announce_wait(what, exc, delay, attempt)
            await backoff.sleep(delay)
            continue
        if verb == "list":
            notify(observe.RequestDone(verb, "ok"))
        return result


def _announce_wait(what: str, exc: ListWatchError, delay: float, attempt: int) -> None:
    """Say, before it starts, how long the same request waits and why; loudly when long."""
    asked = exc.retry_after if isinstance(exc, ApiError) else None
    capped = (
        f" (the server asked for {asked:g} s; at most {MAX_RETRY_AFTER_SECONDS:g} s is honoured)"
        if asked is not None and asked > MAX_RETRY_AFTER_SECONDS
        else ""
    )
    level = logging.WARNING if delay >= LOUD_WAIT_SECONDS else logging.INFO
    answer = str(exc)
    logger.log(
        level,
        "%s; retrying the same request in %.1f s%s, attempt %d of %d",
        answer if answer.startswith(f"{what} ") else f"{what}: {answer}",  # "list /api/v1/..."
        delay,
        capped,
        attempt,
        MAX_SAME_REQUEST_RETRIES,
    )


# -- listing ---------------------------------------------------------------------------------


@dataclass
class Listing:
    """An opened snapshot: its pages, and (after a streaming list) the watch that goes on.

    The first request has been answered when a ``Listing`` exists, so an unknown resource or
    a refused streaming list fails before the receiver is called. ``pages`` is read while the
    receiver consumes the snapshot. After a streaming list, ``take_watch()`` hands the same
    stream on to the generation's watch; a listing closes whatever it still owns on exit.
    """

    pages: PageStream
    resource_version: str
    stream: EventStream | None = None
    """A streaming list's watch (None after paging), closed on exit unless taken."""
    paged_because: str | None = None
    """Why this snapshot is paged (None for a streaming list): ``ListingPolicy``'s reason."""

    @property
    def streamed(self) -> bool:
        return self.stream is not None

    def take_watch(self) -> EventStream | None:
        """The streaming list's open watch, now the caller's to close (None after paging)."""
        stream, self.stream = self.stream, None
        return stream

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if getattr(self.pages, "ag_running", False):  # not in the typing protocol
                # The receiver returned while a task it started still reads the snapshot
                # (the generation has failed for it: ``Snapshot.ensure_read``). The stream
                # cannot be closed from here: it is that task's to finish.
                logger.warning("the snapshot is still being read by another task (%s)", exc)
            else:
                await self.pages.aclose()
        finally:
            stream = self.take_watch()
            if stream is not None:
                await stream.aclose()


class ListingPolicy:
    """Which way the next snapshot is listed; remembers a server that cannot stream.

    ``auto`` tries a streaming list at every relist and pages when the server refuses, as
    client-go's Reflector does ("Falling back to regular list"); a server that accepted the
    request but streamed without the end bookmark costs one failed generation, and the next
    list pages before streaming is tried again.

    Paging instead of streaming costs the server more (each relist a paged read, from etcd
    where the watch cache cannot serve it), so the operator is told why, with the server's
    own answer: one WARNING when snapshots start being paged for a reason, another only
    when the reason changes, and an INFO line once a streamed snapshot is whole again; not
    one per relist. Every ``Listing`` carries the reason (``SyncerStatus.paged_because``).
    """

    def __init__(self, strategy: ListStrategy | str, source: ListWatch) -> None:
        self.strategy = ListStrategy(strategy)
        if self.strategy is ListStrategy.STREAM and not source.watch_list:
            raise ValueError(
                f"list_strategy='stream' needs a source that supports streaming lists; "
                f"{source.description} does not declare watch_list=True"
            )
        self._source = source
        self._chosen: str | None = None  # paged by choice: nothing to warn about
        if self.strategy is ListStrategy.PAGED:
            self._chosen = "list_strategy is 'paged'"
        elif not source.watch_list:
            self._chosen = f"{source.description} does not serve streaming lists"
        self._page_next: str | None = None  # why the next list pages (a streamed one failed)
        self._warned: str | None = None  # the reason last logged; None while streaming works

    async def open(
        self,
        *,
        page_size: int,
        backoff: Backoff,
        watch_timeout: int,
        notify: observe.Observer = _ignore,
    ) -> Listing:
        """Open the next snapshot by this policy; every request is reported to ``notify``."""
        paged = functools.partial(
            open_paged_list, self._source, page_size=page_size, backoff=backoff, notify=notify
        )
        if self._chosen is not None:
            return _paged_because(await paged(), self._chosen)
        if self._page_next is not None:
            reason, self._page_next = self._page_next, None
            self._paging(reason)
            return _paged_because(await paged(), reason)
        try:
            return await open_streaming_list(
                self._source,
                page_size=page_size,
                backoff=backoff,
                watch_timeout=watch_timeout,
                notify=notify,
            )
        except WatchListUnsupported as exc:
            if self.strategy is ListStrategy.STREAM:
                refusal = exc.__cause__
                if exc.refused and isinstance(refusal, InvalidRequest):
                    # Asked for streaming explicitly, and the server cannot: the server's
                    # own code and words, and the option that would make it work.
                    raise WatchListRefused(
                        refusal.status,
                        refusal.reason,
                        refusal.message,
                        causes=refusal.causes,
                        request=refusal.request,
                    ) from exc
                raise
            logger.debug("%s; falling back to a paged LIST", exc)
            self._paging(exc.reason)
            return _paged_because(await paged(), exc.reason)

    def _paging(self, reason: str) -> None:
        if reason != self._warned:
            self._warned = reason
            logger.warning(
                "snapshots are paged LISTs, not streaming lists: %s; a streaming list is "
                "tried again at every relist",
                reason,
            )

    def failed(self, exc: BaseException) -> None:
        """A generation ended with ``exc``: page the next list if streaming did not work."""
        if self.strategy is ListStrategy.AUTO and isinstance(exc, WatchListUnsupported):
            self._page_next = exc.reason

    def delivered(self, *, streamed: bool) -> None:
        """A snapshot reached the receiver whole; ``streamed`` if it was a streaming list."""
        if streamed and self._warned is not None:
            self._warned = None
            logger.info("snapshots are streaming lists again")


def _paged_because(listing: Listing, reason: str) -> Listing:
    listing.paged_because = reason
    return listing


async def open_paged_list(
    source: ListWatch, *, page_size: int, backoff: Backoff, notify: observe.Observer = _ignore
) -> Listing:
    """A consistent LIST at RV "" (most recent), paged with ``limit``/``continue``.

    All pages are served at the first page's resourceVersion, so together they are one
    snapshot. The first page is fetched now: its RV is the snapshot's, known before the
    receiver is called. The rest are fetched one by one as the receiver asks for them. A
    continue token that expires meanwhile (etcd compacted its revision, 410) cannot be
    completed consistently; the error is raised into the receiver's iteration and the
    generation lists again (client-go's pager would re-list without a limit, holding the
    whole cluster at once: the very thing a streamed snapshot avoids).
    """

    def fetch(token: str | None) -> Awaitable[Page]:
        options = ListOptions(limit=page_size, continue_token=token)
        return retrying(functools.partial(source.list, options), backoff, "list", notify=notify)

    first = await fetch(None)

    # The first page is handed in, not captured: a closure would keep it alive (page_size
    # objects) for as long as the receiver reads the snapshot.
    async def pages(page: Page) -> PageStream:
        read = 0
        while True:
            read += len(page.items)
            token = page.continue_token
            yield page
            if token is None:
                return
            try:
                page = await fetch(token)
            except ListWatchError as exc:
                logger.info("list %s failed after %d items: %s", source.description, read, exc)
                raise

    return Listing(pages(first), first.resource_version)


async def open_streaming_list(
    source: ListWatch,
    *,
    page_size: int,
    backoff: Backoff,
    watch_timeout: int,
    notify: observe.Observer = _ignore,
) -> Listing:
    """A streaming list (WatchList, KEP-3157): one watch that opens with the snapshot.

    ``sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true``
    at RV "" asks for a consistent snapshot (RV "0" would allow any stale cache state), sent
    as an ADDED event per object, then a BOOKMARK annotated ``k8s.io/initial-events-end``
    whose RV is the snapshot's. The same stream then goes on as the generation's watch. The
    server keeps no per-client list in memory, and neither do we: the events are grouped
    into pages of ``page_size`` events and at most ``PAGE_BYTES`` as the receiver reads them.

    The first event is read now, so a server that refuses the request (422 from servers
    without the WatchList feature, an ERROR event when etcd lacks RequestWatchProgress;
    ``docs/kubernetes-semantics.md#streaming-lists``) fails here, before the receiver is
    called, as ``WatchListUnsupported``.
    """
    options = WatchOptions(
        "", timeout_seconds=watch_timeout, allow_bookmarks=True, send_initial_events=True
    )
    what = f"streaming list {source.description}"

    async def first_event() -> tuple[EventStream, Event | None]:
        stream = source.watch(options)
        try:
            return stream, await anext(stream, None)
        except BaseException:
            await stream.aclose()
            raise

    try:
        stream, first = await retrying(first_event, backoff, what, verb="watch", notify=notify)
    except (ResourceNotFound, Unauthorized):
        raise  # about the resource or the credentials, not the list form: paging fails too
    except InvalidRequest as exc:
        raise WatchListUnsupported(
            f"{what}: refused ({exc})",
            refused=True,
            reason=f"the server refused a streaming list ({_answer(exc)})",
        ) from exc
    except (ServerError, MalformedEvent) as exc:
        raise WatchListUnsupported(
            f"{what}: failed ({exc})", reason=f"a streaming list failed ({_answer(exc)})"
        ) from exc
    except ApiError as exc:
        if isinstance(exc, FatalError) or exc.status < 400 or exc.status == 410:
            raise
        raise WatchListUnsupported(
            f"{what}: refused ({exc})",
            reason=f"the server refused a streaming list ({_answer(exc)})",
        ) from exc
    return Listing(_initial_pages(stream, first, page_size, what, notify), "", stream)


def _answer(exc: ListWatchError) -> str:
    """What the server said, without the request (the same at every attempt)."""
    return exc.answer if isinstance(exc, ApiError) else str(exc)


async def _initial_pages(
    stream: EventStream, first: Event | None, page_size: int, what: str, notify: observe.Observer
) -> PageStream:
    """The initial events as pages; the last one carries the end bookmark's RV.

    The request is reported (``RequestDone``) only if it ends here; after the end bookmark
    it goes on as the watch, which reports it when it ends.
    """
    events = _initial_events(stream, first, page_size, what)
    del first  # held by _initial_events only until it has been paged
    try:
        async for page in events:
            yield page
    except ListWatchError as exc:
        notify(observe.RequestDone("watch", type(exc).__name__))
        raise


async def _initial_events(
    stream: EventStream,
    event: Event | None,
    page_size: int,
    what: str,
    page_bytes: int = PAGE_BYTES,
) -> PageStream:
    """The initial events in pages of at most ``page_size`` events and ``page_bytes`` bytes
    (a single larger event makes a page of its own): what is held while the receiver
    writes a page is bounded by bytes, whatever the objects' sizes."""
    page: list[Item] = []
    size = 0
    read = 0
    while True:
        if event is None:
            raise IncompleteList(
                f"{what} ended after {read} objects, before the initial-events-end bookmark"
            )
        if event.type is EventType.BOOKMARK:
            if event.initial_events_end:
                yield Page(page, event.resource_version)
                return
        elif event.type is EventType.DELETED:
            # KEP-3157 allowed changes before the end bookmark; kube-apiserver sends none.
            # A delete cannot be taken back out of a snapshot already half written.
            raise WatchListUnsupported(
                f"{what}: a DELETED event for {event.key} before the initial-events-end bookmark",
                reason="the server sent a DELETED event inside a streaming list's initial events",
            )
        else:  # ADDED, or a MODIFIED that a server sent before the end: the latest state
            if page and size + event.nbytes > page_bytes:
                yield Page(page, "")
                page, size = [], 0
            page.append(event)
            size += event.nbytes
            read += 1
            if len(page) >= page_size:
                yield Page(page, "")
                page, size = [], 0
        try:
            async with asyncio.timeout(INITIAL_EVENTS_QUIET_SECONDS):
                event = await anext(stream, None)
        except TimeoutError:
            raise WatchListUnsupported(
                f"{what}: no initial-events-end bookmark and nothing received for "
                f"{INITIAL_EVENTS_QUIET_SECONDS:g} s after {read} objects; the server does not "
                "seem to serve streaming lists",
                reason="a streaming list never sent its initial-events-end bookmark",
            ) from None


# -- watching --------------------------------------------------------------------------------


async def watch_from(
    source: ListWatch,
    resource_version: str,
    emit: Emit,
    *,
    waits: Waits,
    clock: Callable[[], float] = time.monotonic,
    timeout_seconds: Callable[[], int],
    first_stream: EventStream | None = None,
    notify: observe.Observer = _ignore,
) -> NoReturn:
    """Watch from ``resource_version`` for ever, re-watching from the last RV seen.

    Returns only by raising: a relist is needed (410, very short watch, anything unexpected)
    or the error is fatal. Every event, bookmarks included, goes to ``emit``, in order, a
    network chunk's worth at a time when the stream allows it; bookmarks move the resume
    point too, so a quiet resource does not fall behind compaction.
    ``first_stream`` is a streaming list's watch, already open past its initial events.
    Every watch request is reported to ``notify`` when it ends (``RequestDone``).
    """
    stream = first_stream
    while True:
        started = clock()
        received = 0
        # A streaming list's watch already delivered the initial events: never "very short"
        # (not even when it ends after a single event: a relist would drop that event).
        listed_first = stream is not None
        try:
            if stream is None:
                options = WatchOptions(resource_version, timeout_seconds=timeout_seconds())
                stream = source.watch(options)
            async with aclosing(stream) as opened:
                stream = None
                chunks = (
                    opened.event_lists()
                    if isinstance(opened, ChunkedEventStream)
                    else _one_by_one(opened)
                )
                async with aclosing(chunks):
                    async for events in chunks:
                        received += len(events)
                        for event in reversed(events):
                            if event.resource_version:
                                resource_version = event.resource_version
                                break
                        await emit(events)
            how = "closed"
            notify(observe.RequestDone("watch", "ok"))
            waits.answered()
        except ListWatchError as exc:
            notify(observe.RequestDone("watch", type(exc).__name__))
            resumed = await _after_watch_error(exc, waits)
            if resumed is None:
                continue
            how = resumed
        if received == 0 and not listed_first and clock() - started < VERY_SHORT_WATCH_SECONDS:
            raise VeryShortWatch(
                f"watch {source.description} from resourceVersion {resource_version} ended "
                f"within {VERY_SHORT_WATCH_SECONDS:g} s without an event ({how})"
            )
        # The record is named by its Syncer's resource (``_syncer.current_resource``).
        logger.debug(
            "watch %s after %d events; re-watching from %s", how, received, resource_version
        )


def _announce_rewatch(exc: ListWatchError, delay: float, *, unanswered_for: float = 0.0) -> None:
    """Say, before it starts, how long the re-watch waits; loudly when the wait, or the
    outage it is part of, is long (as ``_announce_wait`` does for the same request)."""
    loud = max(delay, unanswered_for) >= LOUD_WAIT_SECONDS
    outage = f" (no answer for {unanswered_for:.0f} s)" if loud and unanswered_for else ""
    logger.log(
        logging.WARNING if loud else logging.INFO,
        "%s%s; re-watching in %.1f s",
        exc,
        outage,
        delay,
    )


async def _after_watch_error(exc: ListWatchError, waits: Waits) -> str | None:
    """What a watch error means: a normal close to resume from (how it ended), a wait then
    a re-watch (None), or a relist (the error is raised)."""
    if isinstance(exc, ApiConnectionError):
        # No answer at all (refused: the server is restarting; reset, unreachable): our RV
        # is still good as far as we know. Wait by the reconnect streak, and re-watch; a
        # server that has forgotten the RV meanwhile says so with a 410.
        delay = waits.after(exc)
        # Each wait is short (``RECONNECT_CAP``); an outage is long: it is loud once the
        # server has not answered for ``LOUD_WAIT_SECONDS``, as a long wait is.
        _announce_rewatch(exc, delay, unanswered_for=waits.unanswered_for())
        await waits.sleep(delay)
        return None
    waits.answered()
    if isinstance(exc, ConnectionLost | WatchIdle):
        # A reset, an EOF mid-stream or a dead connection is a normal close for
        # client-go's StreamWatcher: resume where we are.
        return f"ended by {type(exc).__name__}"
    if isinstance(exc, TooManyRequests | ServerError):
        wait = _retry_after(exc)
        if wait is not None:
            delay = waits.after(exc, at_least=wait)
            _announce_rewatch(exc, delay)
            await waits.sleep(delay)
            return None
    raise exc


# -- the end of a generation -----------------------------------------------------------------


def fatal_error(exc: BaseException, *, has_synced: bool) -> FatalError | None:
    """The ``FatalError`` that stops the Syncer after a generation ended with ``exc``, or None
    to back off and relist. ``has_synced``: a receiver has taken a whole snapshot before.

    A 403 before any snapshot was taken means this identity may not list the resource: a
    configuration error that retrying would only hide, so it stops the Syncer, as
    controller-runtime's manager stops when a cache cannot sync. Once synced, a 403 is RBAC
    being rolled out or a token rotating: retried, as client-go retries every 401 and 403.

    A 404 before any snapshot is a name the server does not serve (discovery resolved it
    moments before, or it was given with its version): fatal. Once synced, a 404 means the
    resource stopped being served: its CustomResourceDefinition was deleted (its objects
    first, as DELETED events, then its watches end and its paths answer 404;
    ``docs/kubernetes-semantics.md#status-and-http-codes``) or its aggregated API went
    away. That is one resource's news, not a reason to stop every other resource under the
    same Supervisor, and it can be served again (the CRD recreated): retried with backoff,
    and reported (``SyncerStatus.served``, not ready).
    """
    if isinstance(exc, ResourceNotFound) and has_synced:
        return None
    if isinstance(exc, FatalError):
        return exc
    if isinstance(exc, Unauthorized) and exc.status == 403 and not has_synced:
        return ForbiddenBeforeSync(exc.status, exc.reason, exc.message, request=exc.request)
    return None
