"""The exceptions a user can catch, and how an API server's answer maps onto them.

The list/watch loop decides what to do next from the *type* of an error alone (see
``listwatch._reflector``), so every answer the API server can give is turned into one of these
classes here, in one place. Messages name the request and the server's reason; they never
carry a token or an object's body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

MAX_ERROR_BODY_BYTES = 64 * 1024
"""How much of an error response is read: enough for any Status, never an unbounded body."""


class ListWatchError(Exception):
    """Base class of every error listwatch raises."""


class FatalError(ListWatchError):
    """Retrying cannot help (wrong resource, bad selector): ``Syncer.run()`` raises it at once."""


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

    def _describe(self) -> str:
        where = f"{self.request}: " if self.request else ""
        reason = f" {self.reason}" if self.reason else ""
        text = f": {self.message}" if self.message else ""
        return f"{where}HTTP {self.status}{reason}{text}"


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


class ResourceNotFound(ApiError, FatalError):
    """404: the server does not serve this resource (wrong name, group or version)."""


class InvalidRequest(ApiError, FatalError):
    """400 or 422: the server refused the request's parameters (for example a bad selector)."""


class ApiConnectionError(ListWatchError):
    """The request got no HTTP answer at all.

    ``refused`` tells a connection that was refused (server not listening, a restart in
    progress) from one that was reset or timed out.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        self.refused = refused
        super().__init__(message)


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


class ResponseTooLarge(ListWatchError):
    """A LIST response is larger than ``max_list_bytes``."""


class ReceiverError(ListWatchError):
    """``on_list`` or ``on_batch`` raised; the cause is chained."""


class ReceiverTimeout(ReceiverError):
    """``on_list`` or ``on_batch`` ran longer than ``sync_timeout``."""


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


def _truncate(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


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
    message_text = _truncate(message) if isinstance(message, str) else ""
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
        text = body[:300].decode("utf-8", "replace").strip()
        status = {"code": http_status, "message": text}
    return api_error_from_status(
        status, http_status=http_status, retry_after_header=retry_after_header, request=request
    )
