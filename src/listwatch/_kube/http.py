"""Every request listwatch makes to kube-apiserver, and what its failures become.

LIST, WATCH, discovery and the Lease all go through :func:`send`: the user's
``kubernetes_asyncio`` ``ApiClient.call_api`` (so its kubeconfig, exec auth with token
refresh, TLS and proxies apply), asked for the raw ``aiohttp`` response with
``_preload_content=False`` so that bodies are read incrementally, capped, and parsed by the
caller (orjson/msgspec into plain values, never kubernetes_asyncio's models).

The one mapping from the transport to ``listwatch.errors``, so that the layers above decide
from an error's type alone (the table in ``listwatch._reflector``):

* no HTTP answer at all (refused, reset before the status line, DNS, TLS, a connect
  timeout) -> ``ApiConnectionError``; ``refused=True`` when the server refused the
  connection: nothing listens (an API server restarting), which is worth telling apart from
  a network that drops packets;
* an answer whose body then breaks -> ``ConnectionLost`` (also what TCP keepalive turns a
  vanished peer into, :func:`keep_alive`), or goes silent for longer than the read timeout
  -> ``WatchIdle``: the server did answer, so these are not connection errors, and a watch
  resumes after them as client-go's StreamWatcher does;
* a non-2xx answer -> the ``ApiError`` subclass its status and ``metav1.Status`` body say
  (``errors.api_error_from_response``); at most ``MAX_ERROR_BODY_BYTES`` of it is read;
* a body past the caller's cap -> ``ResponseTooLarge``: counted in bytes as inflated, so a
  gzip body that inflates far beyond its size fails at the cap (aiohttp from 3.13.3 inflates
  only as the body is read, a read buffer ahead: CVE-2025-69223), and a body whose
  ``Content-Length`` already says it is larger is refused before a byte of it is read.

Every message starts with the request's name (``list /api/v1/pods``,
``discovery /apis``, ``GET lease ns/name``) and never holds a token or an object's body.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING

import aiohttp

from listwatch._version import USER_AGENT
from listwatch.errors import (
    MAX_ERROR_BODY_BYTES,
    ApiConnectionError,
    ConnectionLost,
    ResponseTooLarge,
    WatchIdle,
    api_error_from_response,
)

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

JSON = "application/json"

_GENERATED_USER_AGENT = "OpenAPI-Generator/"
"""How kubernetes_asyncio's default User-Agent begins (``OpenAPI-Generator/33.3.0+...``)."""

READ_CHUNK = 256 * 1024
"""The most one read takes off the socket: one watch chunk's events are decoded together."""

KEEPALIVE_IDLE = 30
"""Seconds a connection is idle before TCP keepalive probes it: client-go's dialer's
``KeepAlive`` (``k8s.io/client-go/transport``), which is how it finds a dead watch peer."""
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 3
"""Unanswered probes, ``KEEPALIVE_INTERVAL`` s apart, after which the kernel ends the
connection: a peer that vanished (its host gone, a partition, a NAT entry dropped) is found
about a minute after the last byte (Go's 9 probes 30 s apart take 5 min)."""


async def send(
    api_client: ApiClient,
    method: str,
    path: str,
    *,
    request: str,
    query: Sequence[tuple[str, str]] = (),
    accept: str = JSON,
    body: object = None,
    limits: aiohttp.ClientTimeout | None = None,
) -> aiohttp.ClientResponse:
    """Send one request; a 2xx response comes back open, its body unread.

    The caller reads it (:func:`chunks`, :func:`read_body`) and releases or closes it.
    ``request`` names the request in every error. ``limits`` are aiohttp's per-socket
    limits (connect, and the longest silence while reading); ``None`` sets none, for a
    caller that bounds the whole call itself.
    """
    if (api_client.user_agent or _GENERATED_USER_AGENT).startswith(_GENERATED_USER_AGENT):
        # kubernetes_asyncio puts its default headers over the request's own, so the
        # client's is set: only while it is still the generated default, never one the
        # user chose.
        api_client.user_agent = USER_AGENT
    try:
        response: aiohttp.ClientResponse = await api_client.call_api(
            path,
            method,
            query_params=list(query),
            header_params={"Accept": accept},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=limits,
        )
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        why = "refused" if refused else type(exc.os_error).__name__
        raise ApiConnectionError(f"{request}: cannot connect ({why})", refused=refused) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ApiConnectionError(f"{request}: {type(exc).__name__}") from None
    if 200 <= response.status < 300:
        return response
    try:
        error_body = await read_body(response, MAX_ERROR_BODY_BYTES, request=request, truncate=True)
    except (ConnectionLost, WatchIdle):
        error_body = bytearray()  # the status alone still says what went wrong
    finally:
        response.release()
    raise api_error_from_response(
        response.status,
        error_body,
        retry_after_header=response.headers.get("Retry-After"),
        request=request,
    )


def keep_alive(response: aiohttp.ClientResponse) -> None:
    """Turn TCP keepalive on for the connection ``response`` holds (a long-lived watch).

    A watch of a quiet resource carries no byte for minutes: kube-apiserver sends a bookmark
    only when the resourceVersion moved (docs/kubernetes-semantics.md#bookmarks). Silence is
    therefore no sign of a dead peer; an unanswered keepalive probe is, and the kernel then
    fails the read (``ConnectionLost``). The timings are set where the platform has them
    (Linux, macOS); elsewhere the system's apply. A peer that is alive at TCP level but
    stuck answers the probes: the watch's silence bound finds that one
    (``listwatch._kube.resource``).
    """
    connection = response.connection
    transport = connection.transport if connection is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # macOS names the idle time TCP_KEEPALIVE.
    idle = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))
    for option, value in (
        (idle, KEEPALIVE_IDLE),
        (getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL),
        (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
    ):
        if option is not None:
            with contextlib.suppress(OSError):  # a platform that names but refuses it
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def chunks(response: aiohttp.ClientResponse, *, request: str) -> AsyncGenerator[bytes, None]:
    """The body as it arrives, a network chunk (at most ``READ_CHUNK`` bytes) at a time."""
    while chunk := await _read(response, READ_CHUNK, request):
        yield chunk


async def read_body(
    response: aiohttp.ClientResponse,
    cap: int,
    *,
    request: str,
    cap_name: str | None = None,
    truncate: bool = False,
) -> bytearray:
    """The whole body, of at most ``cap`` bytes; one byte more raises ``ResponseTooLarge``.

    No more than ``cap + 1`` bytes are ever held, counted as inflated (a gzip body's bytes
    after inflating: what memory holds). A body that declares a larger ``Content-Length``
    (not compressed) is refused before it is read. ``truncate`` returns the first ``cap``
    bytes instead (an error body: its start holds the Status). ``cap_name`` is the setting
    the message names (``max_list_bytes``), when the cap is the user's.
    """
    limit = f"{cap_name}={cap}" if cap_name else f"{cap} bytes"
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    declared = response.content_length
    if not truncate and encoding == "identity" and declared is not None and declared > cap:
        raise ResponseTooLarge(
            f"{request}: response of {declared} bytes (its Content-Length) is larger than "
            f"{limit}; not read",
            read=0,
        )
    body = bytearray()
    while len(body) <= cap:
        chunk = await _read(response, min(READ_CHUNK, cap + 1 - len(body)), request)
        if not chunk:
            return body
        body += chunk
    if truncate:
        return body[:cap]
    read = len(body)
    del body  # not kept alive by the traceback while the caller handles the error
    # aiohttp counts the bytes it took off the wire for a compressed body (from 3.13.3).
    wire = getattr(response.content, "total_compressed_bytes", None)
    inflated = (
        f", inflated from {wire} bytes of {encoding}"
        if encoding != "identity" and isinstance(wire, int)
        else ""
    )
    raise ResponseTooLarge(
        f"{request}: response larger than {limit} (read {read} bytes{inflated})", read=read
    )


async def _read(response: aiohttp.ClientResponse, size: int, request: str) -> bytes:
    """Up to ``size`` bytes of the body (``b""`` at its end); a break or silence is typed."""
    try:
        return await response.content.read(size)
    except TimeoutError:
        raise WatchIdle(f"{request}: no data for too long") from None
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
        raise ConnectionLost(f"{request}: {type(exc).__name__}") from None


async def fetch(
    api_client: ApiClient,
    method: str,
    path: str,
    *,
    request: str,
    cap: int,
    cap_name: str | None = None,
    query: Sequence[tuple[str, str]] = (),
    accept: str = JSON,
    body: object = None,
    limits: aiohttp.ClientTimeout | None = None,
) -> bytearray:
    """:func:`send`, then the body through :func:`read_body`, the connection released."""
    response = await send(
        api_client,
        method,
        path,
        request=request,
        query=query,
        accept=accept,
        body=body,
        limits=limits,
    )
    try:
        return await read_body(response, cap, request=request, cap_name=cap_name)
    finally:
        response.release()
