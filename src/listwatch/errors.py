"""Every exception a user of listwatch can catch, and how an API server's answer maps onto them.

The hierarchy::

    ListWatchError
    ├── FatalError                   retrying cannot help: Syncer.run() raises it at once
    │   ├── ResourceNotFound         (also an ApiError) 404; once synced, retried (no longer
    │   │                            served: its CRD was deleted; see _reflector.fatal_error)
    │   ├── InvalidRequest           (also an ApiError) 400 / 422
    │   │   └── WatchListRefused     a streaming list refused under list_strategy="stream"
    │   ├── ForbiddenBeforeSync      (also a Forbidden) 403 before the first snapshot
    │   ├── DiscoveryError           a resource name discovery cannot resolve
    │   └── EpochError               a Lease resourceVersion that is not an integer
    ├── ApiError                     kube-apiserver answered with an error status
    │   ├── ResourceExpired          410: relist
    │   ├── ResourceVersionTooLarge  504: the server is behind the RV asked for
    │   ├── TooManyRequests          429
    │   ├── ServerError              5xx
    │   └── Unauthorized             401
    │       └── Forbidden            403
    ├── ApiConnectionError           no HTTP answer at all
    ├── ResponseTooLarge             a LIST over max_list_bytes
    ├── WatchStreamError             the stream went wrong after the server accepted it
    │   ├── ConnectionLost, WatchIdle, MalformedEvent, EventTooLarge
    │   ├── IncompleteList           a streaming list that ended before its end bookmark
    │   └── VeryShortWatch           a watch that ended at once with no event
    ├── WatchListUnsupported         no streaming list here ("auto" pages instead)
    ├── ReceiverError                on_list / on_batch raised
    │   └── ReceiverTimeout          ... or ran past sync_timeout
    ├── StaleEpoch                   the fence: an older leader's write
    ├── StaleWrite                   the fence: an older write of the same sender
    ├── LimitExceeded                a write would take its cluster past a cap (objects, bytes)
    ├── LeaseError                   the server's answer is not a Lease
    ├── NotLeading                   a write refused in-process: this replica's term is over
    ├── HttpSyncError                the HTTP receiver refused a write or was unreachable
    ├── ProtocolError                a request that breaks the HTTP sync protocol (receiver side)
    ├── SinkConnectionError          (also a ConnectionError) a sink cannot reach its database
    └── SchemaError                  a database whose listwatch schema this code cannot use

The list/watch loop decides what to do next from the *type* of an error alone (the table in
``listwatch._reflector``), so every answer the API server can give is turned into one of
these classes here, in one place (``api_error_from_status``). Messages name the request and
the server's reason; they never carry a token, a password or an object's body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from listwatch._aio import MAX_MESSAGE, short

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ConnectionLost",
    "DiscoveryError",
    "EpochError",
    "EventTooLarge",
    "FatalError",
    "Forbidden",
    "ForbiddenBeforeSync",
    "HttpSyncError",
    "IncompleteList",
    "InvalidRequest",
    "LeaseError",
    "LimitExceeded",
    "ListWatchError",
    "MalformedEvent",
    "NotLeading",
    "ProtocolError",
    "ReceiverError",
    "ReceiverTimeout",
    "ResourceExpired",
    "ResourceNotFound",
    "ResourceVersionTooLarge",
    "ResponseTooLarge",
    "SchemaError",
    "ServerError",
    "SinkConnectionError",
    "StaleEpoch",
    "StaleWrite",
    "TooManyRequests",
    "Unauthorized",
    "VeryShortWatch",
    "WatchIdle",
    "WatchListRefused",
    "WatchListUnsupported",
    "WatchStreamError",
]

MAX_ERROR_BODY_BYTES = 64 * 1024
"""How much of an error response is read: enough for any Status, never an unbounded body."""


class ListWatchError(Exception):
    """Base class of every error listwatch raises."""


class FatalError(ListWatchError):
    """Retrying cannot help (wrong resource, bad selector): ``Syncer.run()`` raises it at once.

    One exception, decided by ``listwatch._reflector.fatal_error``: a ``ResourceNotFound``
    once the resource has synced is a resource that stopped being served, and is retried.
    """


# What kube-apiserver answered, or failed to answer.
class ApiError(ListWatchError):
    """The API server answered with an error status (as an HTTP status or an ERROR event).

    ``retry_after`` is the server's ``Retry-After`` (header or ``details.retryAfterSeconds``),
    in seconds, when it gave one.
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        retry_after: float | None = None,
        causes: tuple[str, ...] = (),
        request: str = "",
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.causes = causes
        self.request = request
        super().__init__(self._describe())

    @property
    def answer(self) -> str:
        """What the server answered, without the request: ``HTTP 422 Invalid: ...``."""
        reason = f" {self.reason}" if self.reason else ""
        text = f": {self.message}" if self.message else ""
        return f"HTTP {self.status}{reason}{text}"

    def _describe(self) -> str:
        where = f"{self.request}: " if self.request else ""
        return f"{where}{self.answer}"


class ResourceExpired(ApiError):
    """410: the requested resourceVersion (or continue token) was compacted away.

    Servers before 1.18 said reason ``Gone``, later ones ``Expired``; proxies may send a bare
    HTTP 410. All of them mean the same thing: relist.
    """


class ResourceVersionTooLarge(ApiError):
    """504 with cause ResourceVersionTooLarge: the server has not caught up to the RV asked for."""


class TooManyRequests(ApiError):
    """429: priority-and-fairness, max-inflight, shutdown or an unready watch cache."""


class ServerError(ApiError):
    """5xx: the server (or etcd behind it) failed."""


class Unauthorized(ApiError):
    """401 or 403. Retried with backoff: credentials rotate and RBAC gets fixed."""


class Forbidden(Unauthorized):
    """403: authenticated, but RBAC does not allow the request."""


class ForbiddenBeforeSync(Forbidden, FatalError):
    """403 before the first snapshot: this identity may not list the resource at all.

    Once a resource has synced, a 403 is retried like any error (RBAC being rolled out, a
    token rotating); before that, it is a configuration error that retrying would only
    hide, and it stops the Syncer (and a supervisor with it), as controller-runtime's
    manager stops when a cache cannot sync.
    """


class ResourceNotFound(ApiError, FatalError):
    """404: the server does not serve this resource (wrong name, group or version).

    Fatal before the resource's first snapshot. After it, the resource has stopped being
    served (its CustomResourceDefinition was deleted, its aggregated API went away): the
    Syncer reports it and retries with backoff, and syncs again once it is served again.
    """


class InvalidRequest(ApiError, FatalError):
    """400 or 422: the server refused the request's parameters (for example a bad selector)."""


class WatchListRefused(InvalidRequest):
    """``list_strategy="stream"``, and the server refused the streaming list with 400 or
    422: it does not serve streaming lists (the WatchList feature is off, or it predates
    it). ``status``, ``reason`` and ``message`` are the server's; the advice names the
    option to change (a command maps it to its own flag)."""

    ADVICE = "this server does not serve streaming lists; use list_strategy='auto' or 'paged'"

    def _describe(self) -> str:
        return f"{super()._describe()}; {self.ADVICE}"


class ApiConnectionError(ListWatchError):
    """The request got no HTTP answer at all.

    ``refused`` tells a connection that was refused (server not listening, a restart in
    progress) from one that was reset or timed out.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        self.refused = refused
        super().__init__(message)


class ResponseTooLarge(ListWatchError):
    """A LIST response is larger than ``max_list_bytes``.

    ``read`` is how many bytes of it were read (as inflated) before it was refused: at most
    the cap and one byte, 0 when its ``Content-Length`` said so before any was read.
    """

    def __init__(self, message: str, *, read: int = 0) -> None:
        super().__init__(message)
        self.read = read


class WatchStreamError(ListWatchError):
    """The watch stream itself went wrong after the server accepted the request."""


class ConnectionLost(WatchStreamError):
    """The stream ended without a clean end: a reset, an EOF mid-chunk, or a line cut short."""


class WatchIdle(WatchStreamError):
    """No byte arrived for longer than the idle limit: the connection is presumed dead."""


class MalformedEvent(WatchStreamError):
    """A line of the watch stream is not a watch event."""


class EventTooLarge(WatchStreamError):
    """One watch event is larger than ``max_event_bytes``."""


class IncompleteList(WatchStreamError):
    """A streaming list ended (or went quiet) before the bookmark that marks the end of its
    initial events: what was streamed is not a whole snapshot."""


class VeryShortWatch(WatchStreamError):
    """The watch ended within a second without a single event."""


class WatchListUnsupported(ListWatchError):
    """The server did not serve a streaming list: it refused it, or streamed without the
    bookmark that ends the initial events. With ``list_strategy="auto"`` the loop pages.

    ``refused`` is set when the server answered 400/422: it does not know the parameters
    (the WatchList feature is off, or the server predates it). ``reason`` says why in a
    few words that stay the same from one attempt to the next (the message may count
    objects): what a log line and ``SyncerStatus.paged_because`` show.
    """

    def __init__(self, message: str, *, refused: bool = False, reason: str = "") -> None:
        self.refused = refused
        self.reason = reason or message
        super().__init__(message)


class DiscoveryError(FatalError):
    """A resource name that discovery cannot resolve to one listable, watchable resource
    (unknown to the server, ambiguous, or without list and watch): asking again would get
    the same answer, so a Syncer whose source cannot be resolved stops."""


# The receiver (on_list / on_batch) failed.
class ReceiverError(ListWatchError):
    """``on_list`` or ``on_batch`` raised; the cause is chained."""


class ReceiverTimeout(ReceiverError):
    """``on_list`` or ``on_batch`` ran longer than ``sync_timeout``."""


# A receiver's fence refused a write.
class StaleEpoch(ListWatchError):
    """A receiver refused a write whose epoch is older than the one it has recorded.

    The epoch is the leader's fencing token: a receiver that has seen epoch E never applies
    a write of an epoch below E, so a leader that was paused or cut off, and woke up after
    another replica took over, cannot overwrite the new leader's state.
    """

    def __init__(self, resource: str, epoch: int, recorded: int) -> None:
        self.resource = resource
        self.epoch = epoch
        self.recorded = recorded
        super().__init__(
            f"{resource}: refused a write of epoch {epoch}: the receiver has recorded epoch "
            f"{recorded} (a newer leader has written)"
        )


class StaleWrite(ListWatchError):
    """A receiver refused a write that would go back in time within one sender's session
    (an older generation, a batch without its snapshot, a batch after a missing one), or a
    snapshot that another write overtook while it was staged."""


class LimitExceeded(ListWatchError):
    """A receiver refused a write that would take its cluster past one of its caps.

    ``limit`` names the cap (``max_objects`` or ``max_bytes``), ``maximum`` its value and
    ``would`` what the cluster would hold after the write. Only a write that grows the
    cluster is refused: one that shrinks a cluster already over a lowered cap applies.
    """

    def __init__(self, cluster: str, resource: str, limit: str, maximum: int, would: int) -> None:
        self.cluster = cluster
        self.resource = resource
        self.limit = limit
        self.maximum = maximum
        self.would = would
        unit = "objects" if limit == "max_objects" else "bytes of objects"
        super().__init__(
            f"cluster {cluster!r}: {resource}: refused a write that would make the cluster hold "
            f"{would} {unit}, over its {limit} of {maximum}"
        )


# Leader election.
class LeaseError(ListWatchError):
    """The server answered with something that is not a Lease (retried like an API error)."""


class EpochError(FatalError):
    """The resourceVersion of the acquiring write is not an integer: no epoch can be derived.

    listwatch's fencing epoch is that resourceVersion, which kube-apiserver takes from
    etcd's cluster-wide revision. Kubernetes calls resourceVersions opaque; a server whose
    RVs are not integers breaks that assumption, and the elector refuses to lead rather than
    hand out epochs it cannot order.
    """


class NotLeading(ListWatchError):
    """A write was refused before it left the process: this replica's term is over."""


# Sinks and the HTTP sync protocol.
class HttpSyncError(ListWatchError):
    """The receiver answered with an error, or could not be reached."""


class ProtocolError(ListWatchError):
    """A request that does not follow the protocol; ``code`` is the HTTP status to answer."""

    def __init__(self, message: str, *, code: int = 400, reason: str = "BadRequest") -> None:
        self.code = code
        self.reason = reason
        super().__init__(message)


class SinkConnectionError(ListWatchError, ConnectionError):
    """The sink could not connect to PostgreSQL (the message never holds a password)."""


class SchemaError(ListWatchError):
    """The database, or the listwatch schema in it, is not one this code can use (the message
    says why: a newer schema version, foreign tables, a server too old, not UTF-8)."""


_STATUS_CLASSES: Mapping[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: ResourceNotFound,
    410: ResourceExpired,
    422: InvalidRequest,
    429: TooManyRequests,
}


def _parse_retry_after(value: object) -> float | None:
    """Retry-After as seconds; the HTTP-date form is ignored, as client-go ignores it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        try:
            seconds = int(value.strip())
        except ValueError:
            return None
        return float(seconds) if seconds >= 0 else None
    return None


def _classify(code: int, causes: tuple[str, ...], message: str) -> type[ApiError]:
    if code == 504 and (
        "ResourceVersionTooLarge" in causes or "Too large resource version" in message
    ):
        return ResourceVersionTooLarge
    if code in _STATUS_CLASSES:
        return _STATUS_CLASSES[code]
    if code >= 500:
        return ServerError
    return ApiError


def api_error_from_status(
    status: Mapping[str, Any],
    *,
    http_status: int | None = None,
    retry_after_header: str | None = None,
    request: str = "",
) -> ApiError:
    """Build the error for a ``metav1.Status`` (from an error response or an ERROR event)."""
    code_value = status.get("code")
    code = code_value if isinstance(code_value, int) and code_value > 0 else (http_status or 500)
    reason = status.get("reason")
    message = status.get("message")
    details = status.get("details")
    details = details if isinstance(details, Mapping) else {}
    raw_causes = details.get("causes")
    causes = tuple(
        str(cause.get("reason", ""))
        for cause in (raw_causes if isinstance(raw_causes, list) else [])
        if isinstance(cause, Mapping)
    )
    retry_after = _parse_retry_after(retry_after_header)
    if retry_after is None:
        retry_after = _parse_retry_after(details.get("retryAfterSeconds"))
    if retry_after == 0:
        retry_after = None
    message_text = short(message) if isinstance(message, str) else ""
    reason_text = reason if isinstance(reason, str) else ""
    if reason_text in ("Expired", "Gone"):
        code = 410
    cls = _classify(code, causes, message_text)
    return cls(
        code, reason_text, message_text, retry_after=retry_after, causes=causes, request=request
    )


def api_error_from_response(
    http_status: int,
    body: bytes | bytearray,
    *,
    retry_after_header: str | None = None,
    request: str = "",
) -> ApiError:
    """Build the error for a non-2xx response: a Status JSON body, or plain text as APF sends."""
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        # The HTTP status is authoritative should a Status body disagree with it.
        status: Mapping[str, Any] = {**decoded, "code": http_status}
    else:
        text = body[:MAX_MESSAGE].decode("utf-8", "replace").strip()
        status = {"code": http_status, "message": text}
    return api_error_from_status(
        status, http_status=http_status, retry_after_header=retry_after_header, request=request
    )
