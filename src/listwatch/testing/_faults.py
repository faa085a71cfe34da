"""Fault injection: the failures a list/watch client meets in production, on demand.

A :class:`Fault` says *what* goes wrong (a status, a dropped connection, a cut stream, an
ERROR event, a malformed line, a raw line, an empty body, a slow stream, a stalled one); a
:class:`FaultRule` says *which requests* it hits (path, method, watch or not) and *how
often* (the next N matching requests, forever, or with a probability drawn from the
server's seeded RNG, so a failing run replays exactly with the same seed).

The wire shapes follow docs/kubernetes-semantics.md#expired-resource-versions,
#status-and-http-codes: APF's plain-text 429, the 504 with cause
``ResourceVersionTooLarge``, the 410 Expired a proxy or old server sends on a watch, the
200-with-empty-body of uncached resources (kubernetes/kubernetes#104171).

Two faults are what no kube-apiserver sends, but a broken or hostile proxy in front of one
can, and a client must survive: a gzip LIST body that inflates far beyond its size
(``gzip_bomb``: kube-apiserver gzips a LIST over 128 KiB, level 1, so a client reads gzip
anyway) and a LIST whose ``Content-Length`` claims more than any page holds
(``huge_content_length``). Both stream their body as the client reads it, so the fake
holds none of it.

A rule can be narrowed to the LISTs that continue a list (``continued``: page 2 and on) and
skip the first matching requests (``skip``): "a 429 on page 2" is
``inject(Fault.too_many_requests(...), watch=False, continued=True)``.

A *raw line* is a watch event the store cannot write, sent as the bytes given: the fake
serialises with orjson, which writes at most 255 levels, where kube-apiserver serves a
custom resource nested up to 10,000 (docs/kubernetes-semantics.md#size-limits); and bytes
that are not UTF-8, which no kube-apiserver sends (Go's encoder writes U+FFFD for them) but
a broken proxy or a corrupted connection might. The object is not in the store: a relist
does not list it.
"""

from __future__ import annotations

import enum
import random
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web

from listwatch.testing import _status as k8s_status


class FaultKind(enum.StrEnum):
    STATUS = "status"
    CLOSE_CONNECTION = "close-connection"
    CUT_STREAM = "cut-stream"
    ERROR_EVENT = "error-event"
    MALFORMED_LINE = "malformed-line"
    RAW_LINE = "raw-line"
    EMPTY_RESPONSE = "empty-response"
    SLOW = "slow"
    STALL = "stall"
    GZIP_BOMB = "gzip-bomb"
    HUGE_CONTENT_LENGTH = "huge-content-length"


#: Faults that only make sense inside a watch stream.
WATCH_ONLY = frozenset(
    {FaultKind.ERROR_EVENT, FaultKind.MALFORMED_LINE, FaultKind.RAW_LINE, FaultKind.STALL}
)

_DEFAULT_MESSAGES: Mapping[int, str] = {
    400: "the server rejected our request for an unknown reason",
    401: "Unauthorized",
    403: "forbidden: injected fault",
    404: "the server could not find the requested resource",
    409: "the server reported a conflict",
    410: "The resourceVersion for the provided watch is too old.",
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    502: "the server responded with the status code 502 but did not return more information",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still "
    "be processing the request",
}


@dataclass(frozen=True)
class Fault:
    """One kind of failure. Build it with the classmethods, e.g. ``Fault.gone()``."""

    kind: FaultKind
    code: int = 0
    reason: str | None = None
    message: str | None = None
    retry_after: int | None = None
    plain_text: bool = False
    after_events: int = 0
    mid_line: bool = False
    delay: float = 0.0
    too_large: bool = False
    size: int = 0
    line: bytes = b""

    # ------------------------------------------------------------ constructors

    @classmethod
    def status(
        cls,
        code: int,
        *,
        reason: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        plain_text: bool = False,
    ) -> Fault:
        """Answer at once with ``code`` and a Status body (or APF's plain-text body).

        ``retry_after`` adds the ``Retry-After`` header and ``details.retryAfterSeconds``.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"a fault status must be 4xx or 5xx, got {code}")
        return cls(
            FaultKind.STATUS,
            code=code,
            reason=reason,
            message=message,
            retry_after=retry_after,
            plain_text=plain_text,
        )

    @classmethod
    def too_many_requests(cls, retry_after: int = 1, *, plain_text: bool = False) -> Fault:
        """429: as APF sends it (``plain_text``) or as a not-ready watch cache (Status)."""
        return cls.status(
            429, reason="TooManyRequests", retry_after=retry_after, plain_text=plain_text
        )

    @classmethod
    def too_large_resource_version(cls) -> Fault:
        """The 504 Timeout with cause ResourceVersionTooLarge and ``Retry-After: 1``
        (docs/kubernetes-semantics.md#status-and-http-codes)."""
        return cls(FaultKind.STATUS, code=504, reason="Timeout", retry_after=1, too_large=True)

    @classmethod
    def gone(cls) -> Fault:
        """HTTP 410 with reason Expired, as proxies and old servers answer a watch
        (docs/kubernetes-semantics.md#expired-resource-versions)."""
        return cls.status(410, reason="Expired")

    @classmethod
    def close_connection(cls) -> Fault:
        """Close the TCP connection before any response header."""
        return cls(FaultKind.CLOSE_CONNECTION)

    @classmethod
    def cut_stream(cls, after_events: int = 0, *, mid_line: bool = False) -> Fault:
        """Drop the connection after ``after_events`` events (no clean chunked end).

        With ``mid_line``, the first half of the next event's line is written first. On a
        non-watch response the body is cut in half instead.
        """
        _check_count(after_events)
        return cls(FaultKind.CUT_STREAM, after_events=after_events, mid_line=mid_line)

    @classmethod
    def error_event(cls, after_events: int = 0, code: int = 410) -> Fault:
        """After ``after_events`` events, an ERROR event with a real Status, then the end."""
        _check_count(after_events)
        if not 400 <= code <= 599:
            raise ValueError(f"an ERROR event carries a 4xx or 5xx status, got {code}")
        return cls(FaultKind.ERROR_EVENT, code=code, after_events=after_events)

    @classmethod
    def malformed_line(cls, after_events: int = 0) -> Fault:
        """After ``after_events`` events, one line that is not JSON; the stream goes on."""
        _check_count(after_events)
        return cls(FaultKind.MALFORMED_LINE, after_events=after_events)

    @classmethod
    def raw_line(cls, line: bytes, after_events: int = 0) -> Fault:
        """After ``after_events`` events, ``line`` as one more line (an event the store
        cannot write: the module's docs); the stream goes on."""
        _check_count(after_events)
        if b"\n" in line or not line.strip():
            raise ValueError("a raw line is one line: not empty, without a newline")
        return cls(FaultKind.RAW_LINE, after_events=after_events, line=line)

    @classmethod
    def empty_response(cls) -> Fault:
        """200 with headers and an empty body (uncached resources on a stale RV,
        docs/kubernetes-semantics.md#expired-resource-versions)."""
        return cls(FaultKind.EMPTY_RESPONSE)

    @classmethod
    def stall(cls, after_events: int = 0) -> Fault:
        """After ``after_events`` events the stream goes silent and stays open, past its
        ``timeoutSeconds`` too, until the client hangs up or the server stops: a server that
        is alive at TCP level (the kernel still answers) but stuck, as a SIGSTOPped
        kube-apiserver or a wedged proxy."""
        _check_count(after_events)
        return cls(FaultKind.STALL, after_events=after_events)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Delay each watch event, or the whole response of another request, by ``delay``."""
        if delay < 0:
            raise ValueError("delay must not be negative")
        return cls(FaultKind.SLOW, delay=delay)

    @classmethod
    def gzip_bomb(cls, inflated: int) -> Fault:
        """200 with a ``Content-Encoding: gzip`` list that inflates to about ``inflated``
        bytes (blanks inside its ``items``) from about a thousandth of that on the wire."""
        if inflated < 1:
            raise ValueError("inflated must be positive")
        return cls(FaultKind.GZIP_BOMB, size=inflated)

    @classmethod
    def huge_content_length(cls, declared: int) -> Fault:
        """200 with ``Content-Length: declared`` and a list body of blanks that goes on
        for as long as the client reads (up to ``declared`` bytes)."""
        if declared < 1:
            raise ValueError("declared must be positive")
        return cls(FaultKind.HUGE_CONTENT_LENGTH, size=declared)

    # ------------------------------------------------------------ wire shapes

    @property
    def watch_only(self) -> bool:
        return self.kind in WATCH_ONLY

    def status_error(self, *, requested_rv: int = 0, current_rv: int = 0) -> k8s_status.StatusError:
        """The refusal a STATUS fault answers with (RVs fill the TooLarge message)."""
        if self.too_large:
            return k8s_status.too_large_resource_version(requested_rv, current_rv)
        reason = (
            self.reason if self.reason is not None else k8s_status.REASON_FOR_CODE.get(self.code)
        )
        message = self.message or _DEFAULT_MESSAGES.get(self.code, f"injected fault {self.code}")
        return k8s_status.failure(self.code, message, reason=reason, retry_after=self.retry_after)

    def error_event_status(self, requested_rv: int, current_rv: int) -> k8s_status.StatusError:
        """The Status an ERROR event of this fault carries (docs/kubernetes-semantics.md#watch)."""
        if self.code == 410:
            return k8s_status.too_old_resource_version(requested_rv, current_rv)
        if self.code == 500:
            return k8s_status.internal_error("injected fault")
        return Fault.status(self.code).status_error()


_LIST_HEAD = b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":['
_LIST_TAIL = b"]}"
_BLANKS = b" " * (1 << 20)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def gzip_bomb_body(inflated: int) -> Iterator[bytes]:
    """A gzip member of a list whose items are ``inflated`` bytes of blanks (rounded up to
    a MiB), a piece at a time and cheaply: a MiB of blanks is deflated once after a full
    flush, which leaves no reference to what came before it, so the same bytes are valid
    again and again (about a thousand-fold: deflate's limit)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    yield _GZIP_HEADER + compressor.compress(_LIST_HEAD) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(_BLANKS) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(_LIST_HEAD)
    blocks = -(-inflated // len(_BLANKS))
    for _ in range(blocks):
        yield block
        crc = zlib.crc32(_BLANKS, crc)
    crc = zlib.crc32(_LIST_TAIL, crc)
    size = len(_LIST_HEAD) + blocks * len(_BLANKS) + len(_LIST_TAIL)
    tail = compressor.compress(_LIST_TAIL) + compressor.flush()
    yield tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


async def stream_oversized(request: web.BaseRequest, fault: Fault) -> web.StreamResponse:
    """The answer of a GZIP_BOMB or HUGE_CONTENT_LENGTH fault, written as the client reads
    it; a client that hangs up ends it."""
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    if fault.kind is FaultKind.GZIP_BOMB:
        response.headers["Content-Encoding"] = "gzip"
        response.enable_chunked_encoding()
        pieces: Iterator[bytes] = gzip_bomb_body(fault.size)
    else:
        response.content_length = fault.size
        pieces = _blank_list(fault.size)
    await response.prepare(request)
    try:
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client hung up: what it did not read was never made
    return response


def _blank_list(size: int) -> Iterator[bytes]:
    """``size`` bytes: a list's head, then blanks (never a whole list: no client reads it)."""
    yield _LIST_HEAD[:size]
    left = size - min(size, len(_LIST_HEAD))
    while left > 0:
        piece = _BLANKS[: min(left, len(_BLANKS))]
        left -= len(piece)
        yield piece


def _check_count(after_events: int) -> None:
    if after_events < 0:
        raise ValueError("after_events must not be negative")


class FaultRule:
    """Where and how often a :class:`Fault` fires. ``hits`` counts the requests it hit."""

    def __init__(
        self,
        fault: Fault,
        *,
        path: str | re.Pattern[str] | None,
        method: str | None,
        watch: bool | None,
        times: int | None,
        probability: float | None,
        continued: bool | None = None,
        skip: int = 0,
    ) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for no limit")
        if skip < 0:
            raise ValueError("skip must not be negative")
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if fault.watch_only and watch is False:
            raise ValueError(f"a {fault.kind} fault only applies to watch requests")
        self.fault = fault
        self.path = path
        self.method = method.upper() if method is not None else None
        self.watch = watch
        self.times = times
        self.probability = probability
        self.continued = continued
        self.skip = skip
        self.hits = 0
        self.skipped = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(
        self, method: str, path: str, watch: bool, query: Mapping[str, str] | None = None
    ) -> bool:
        if self.exhausted:
            return False
        if self.method is not None and method.upper() != self.method:
            return False
        if self.watch is not None and watch != self.watch:
            return False
        if self.fault.watch_only and not watch:
            return False
        if self.continued is not None:
            continues = not watch and bool((query or {}).get("continue"))
            if continues != self.continued:
                return False
        if self.path is None:
            return True
        if isinstance(self.path, str):
            return path == self.path
        return self.path.fullmatch(path) is not None

    def fire(self, rng: random.Random) -> bool:
        """Decide (with the seeded RNG) whether this matching request is hit; the first
        ``skip`` matching requests never are."""
        if self.skipped < self.skip:
            self.skipped += 1
            return False
        if self.probability is not None and rng.random() >= self.probability:
            return False
        self.hits += 1
        return True

    def __repr__(self) -> str:
        return (
            f"FaultRule({self.fault.kind}, path={self.path!r}, method={self.method!r}, "
            f"watch={self.watch}, continued={self.continued}, skip={self.skip}, "
            f"times={self.times}, probability={self.probability}, hits={self.hits})"
        )


class FaultInjector:
    """The active rules, tried in the order they were injected; the first that fires wins."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        self._rules.append(rule)
        return rule

    def clear(self) -> None:
        self._rules.clear()

    def pick(
        self, method: str, path: str, watch: bool, query: Mapping[str, str] | None = None
    ) -> Fault | None:
        for rule in self._rules:
            if rule.matches(method, path, watch, query) and rule.fire(self._rng):
                self._rules = [r for r in self._rules if not r.exhausted]
                return rule.fault
        return None
