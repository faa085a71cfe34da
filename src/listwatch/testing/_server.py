"""``FakeApiServer``: a real HTTP server with the list/watch semantics of kube-apiserver.

No kube-apiserver runs on a developer machine or in CI, yet a list/watch client is only
as correct as the server it was tested against. This server speaks the real wire protocol
on 127.0.0.1 (HTTPS with a CA of its own, bearer-token auth, Status errors, chunked watch
streams) and keeps the
behaviour clients trip over: one global resourceVersion, consistent paging from history,
compaction and 410s, bookmarks, WatchList, and faults injected on demand. It is strict on
purpose: where kube-apiserver refuses a request or closes a stream, so does this server.

Compose it like this::

    async with FakeApiServer() as server:
        await server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {...}})
        async with server.api_client() as api:
            ...

The Python API changes the store through the same code paths as HTTP POST/PUT/DELETE.
``register_resource`` serves a custom resource from then on, as an established CRD;
``unregister_resource`` does what deleting the CRD does: its objects are deleted (DELETED
events), its watches end, its paths answer 404 and discovery forgets it.
``FakeApiServer(watch_list=False)`` is a server without the WatchList feature (streaming
lists refused with 422 Invalid); ``request_watch_progress=False`` one whose etcd lacks
RequestWatchProgress (before 3.4.31, or 3.5.0 to 3.5.12): streaming lists are answered
with 200 and one ERROR event, 500 InternalError, as kube-apiserver 1.36 does.
The server has the ``ShardedListAndWatch`` gate on (``shardSelector``: lists and watches of
one hash range of the uid or the namespace, the echo ``metadata.shardInfo``; ``_sharding``);
``sharding=False`` is a 1.36 server with the gate at its default, off, which ignores the
parameter.

``stop()`` then ``start()`` is a kube-apiserver restart: watches end cleanly at the stop,
connections are refused until the start, and the server comes back on the same address with
the same CA, token and objects (etcd keeps them; the Python API may change them meanwhile).
Its watch cache is fresh, as a restarted kube-apiserver's is: a watch from an RV older than
the restart is "too old resource version" (answered per ``stale_watch``), while LISTs,
exact ones and continue tokens included, are served as before. A real restart always moves
etcd's revision (the server's own Lease and Endpoints writes); here a watch from the latest
RV before the restart is still served when nothing was written meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from kubernetes_asyncio import client as k8s_client

from listwatch.testing import _kubeconfig as kubeconfig
from listwatch.testing._faults import Fault, FaultInjector, FaultRule
from listwatch.testing._handlers import ApiHandler
from listwatch.testing._namespaces import NamespaceController
from listwatch.testing._requestlog import RecordedRequest, RequestLog
from listwatch.testing._resources import (
    BUILTIN_RESOURCES,
    NAMESPACES,
    ResourceRegistry,
    ResourceType,
)
from listwatch.testing._signals import Signal
from listwatch.testing._store import JsonDict, ObjectStore, copy_json
from listwatch.testing._tls import ServerTls
from listwatch.testing._watch import ActiveWatches, StaleWatch, WatchConfig

#: Where the server listens unless told otherwise: this machine only. It authenticates by a
#: bearer token alone, and anyone who holds the token may write anything.
LOOPBACK = "127.0.0.1"

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

#: Request bodies up to this size are read. kube-apiserver refuses bodies over 3 MiB and
#: etcd objects over 1.5 MiB; the fake allows more so tests can push objects of several
#: MiB through create, list and watch.
CLIENT_MAX_SIZE = 64 * 1024 * 1024

#: How long stopping waits for in-flight handlers (watches end at once) before closing.
SHUTDOWN_TIMEOUT = 1.0


class FakeApiServer:
    """A fake Kubernetes API server on 127.0.0.1 with a random port (or ``host`` and
    ``port``: ``listwatch fake-cluster`` serves a fixed one). See the module doc."""

    def __init__(
        self,
        *,
        seed: int = 0,
        bookmark_interval: float = 60.0,
        history_limit: int | None = None,
        stale_watch: Literal["error-event", "http-410", "empty-200"] = "error-event",
        watch_list: bool = True,
        sharding: bool = True,
        request_watch_progress: bool = True,
        too_large_wait: float = 3.0,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        tls: bool = True,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        if stale_watch not in ("error-event", "http-410", "empty-200"):
            raise ValueError(f"unknown stale_watch mode {stale_watch!r}")
        if bookmark_interval <= 0:
            raise ValueError("bookmark_interval must be positive")
        # One seeded stream per concern, so e.g. creating an extra object does not change
        # which requests a probabilistic fault hits.
        fault_rng, store_rng, watch_rng = (random.Random(f"{c}:{seed}") for c in "fsw")
        self._changes = Signal()  # any observable change: wait_until re-checks on it
        notify = self._changes.notify
        self._registry = ResourceRegistry()
        self._store = ObjectStore(rng=store_rng, history_limit=history_limit, on_change=notify)
        self._faults = FaultInjector(fault_rng)
        self._log = RequestLog(on_change=notify)
        self._active = ActiveWatches(on_change=notify)
        self._connections = _ConnectionCount(on_change=notify)
        self._token = secrets.token_urlsafe(32)
        self._users: dict[str, str] = {}  # token -> name, see add_user
        self._stopping = False
        self._runner: web.ServerRunner | None = None
        self._host = host
        self._given_port = port
        self._port: int | None = None
        # One CA per server, kept across restarts so its clients keep trusting it. The CA
        # file (a public certificate, no secret) is for clients that only read files.
        self._tls = ServerTls(_certificate_hosts(host)) if tls else None
        self._ca_file: str | None = None
        if self._tls is not None:
            directory = tempfile.mkdtemp(prefix="listwatch-fake-ca-")
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
            self._ca_file = os.path.join(directory, "ca.crt")
            with open(self._ca_file, "wb") as handle:
                handle.write(self._tls.ca_pem)
        stale: StaleWatch = stale_watch
        self._handler = ApiHandler(
            registry=self._registry,
            store=self._store,
            watch_config=WatchConfig(
                bookmark_interval, stale, too_large_wait, request_watch_progress
            ),
            watch_list=watch_list,
            sharding=sharding,
            faults=self._faults,
            log=self._log,
            token=self._token,
            users=self._users,
            active=self._active,
            rng=watch_rng,
            stopping=lambda: self._stopping,
            server_address=lambda: self.url.split("://", 1)[1],
        )
        self._store.add_observer(
            NamespaceController(self._store, lambda: self._registry, NAMESPACES).observe
        )
        for name in namespaces:
            self._store.create(NAMESPACES, _namespace(name))

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on the host and port given (by default 127.0.0.1, a free port).

        After a ``stop()`` this is a restart (see the module doc): the same port, a fresh
        watch cache.
        """
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        restarting = self._port is not None
        http_server = _TrackingServer(
            self._handler.handle,
            connections=self._connections,
            request_factory=_request_factory(asyncio.get_running_loop()),
            handler_cancellation=True,  # a client that hangs up ends its watch at once
            access_log=None,
        )
        runner = web.ServerRunner(http_server, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        ssl_context = self._tls.server_context() if self._tls is not None else None
        port = self._given_port or self._port or 0  # a restart keeps the port it had
        site = web.TCPSite(runner, self._host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        if restarting:
            self._store.rebuild_watch_cache()
        self._runner = runner
        self._stopping = False
        self._port = _bound_port(runner)

    async def stop(self) -> None:
        """End every watch cleanly, then close the listener and every connection."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        self._store.wake_all()
        # Woken watches write their final chunk; a stuck one is cancelled by cleanup.
        with contextlib.suppress(TimeoutError):
            await self._changes.wait_until(lambda: self._active.count == 0, SHUTDOWN_TIMEOUT)
        await runner.cleanup()
        # A TLS connection closes with a close_notify and waits for the peer's; a client that
        # is not reading would keep it open for asyncio's 30 s shutdown timeout. What was
        # written has been flushed by now: drop what remains, as a stopping server does.
        self._connections.abort_all()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT`` (``http://`` with ``tls=False``), only while running.

        The host is the one listened on; for a wildcard (``0.0.0.0``, ``::``) it is the
        loopback address of its family, which reaches it from this machine.
        """
        if self._port is None:
            raise RuntimeError("the server has not been started")
        scheme = "https" if self._tls is not None else "http"
        host = _reachable(self._host)
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self._port}"

    @property
    def tls(self) -> bool:
        """Whether the server serves HTTPS (the default) rather than plain HTTP."""
        return self._tls is not None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client ``ssl`` context that trusts this server's CA (and no other).

        For raw clients: ``aiohttp.ClientSession().get(server.url, ssl=server.ssl_context)``.
        """
        if self._tls is None:
            raise RuntimeError("this server serves plain HTTP (tls=False): it has no CA")
        return self._tls.client_context()

    @property
    def ca_file(self) -> str | None:
        """A PEM file of the server's CA, for clients that take a path; None without TLS."""
        return self._ca_file

    @property
    def ca_pem(self) -> bytes | None:
        """The server's CA certificate (PEM); None without TLS."""
        return self._tls.ca_pem if self._tls is not None else None

    @property
    def token(self) -> str:
        """The bearer token every request must carry."""
        return self._token

    def add_user(self, name: str) -> str:
        """A bearer token for user ``name``, authenticated but bound to no role.

        Like a ServiceAccount nobody granted anything (``system:serviceaccount:ns:sa``): it
        may read discovery and ``/version``; every other request is 403 Forbidden with the
        RBAC message naming the user, verb and resource.
        """
        token = secrets.token_urlsafe(32)
        self._users[token] = name
        return token

    def api_client(self) -> k8s_client.ApiClient:
        """A ``kubernetes_asyncio`` ApiClient for this server; the caller closes it.

        Over HTTPS it verifies the server against the server's CA, as a kubeconfig would.
        """
        configuration = k8s_client.Configuration(
            host=self.url,
            api_key={"BearerToken": self._token},
            api_key_prefix={"BearerToken": "Bearer"},
        )
        if self._ca_file is not None:
            configuration.ssl_ca_cert = self._ca_file
        return k8s_client.ApiClient(configuration=configuration)

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> None:
        """Write a kubeconfig (cluster with the CA embedded, token user, context) for it."""
        ca_data = self._tls.ca_base64 if self._tls is not None else None
        kubeconfig.write_kubeconfig(path, self.url, self._token, ca_data=ca_data)

    # ------------------------------------------------------------------ objects

    async def create(self, obj: JsonDict) -> JsonDict:
        """Create ``obj``; a namespaced object without a namespace goes to ``default``.

        Stored as given, with no field manager (its ``managedFields`` are whatever ``obj``
        has): create through the API (``server.api_client()``) to have them recorded.

        Raises :class:`~listwatch.testing._status.StatusError` (409 AlreadyExists, 404 for a
        missing namespace, ...) like the API server would answer.
        """
        resource = self._resource_of(obj)
        return copy_json(self._store.create(resource, self._scoped(resource, obj)))

    async def replace(self, obj: JsonDict) -> JsonDict:
        """Replace an object as a PUT does: 404 if absent (a Lease is created instead), 409
        on a stale ``resourceVersion``, 422 without one where the resource requires it."""
        resource = self._resource_of(obj)
        stored, _ = self._store.update(resource, self._scoped(resource, obj))
        return copy_json(stored)

    async def delete(self, obj: JsonDict) -> JsonDict:
        """Delete an object; returns its final state at the deletion RV.

        With finalizers the object is only marked (``deletionTimestamp``) and returned.
        """
        resource = self._resource_of(obj)
        metadata = self._scoped(resource, obj)["metadata"]
        final, _ = self._store.delete(resource, metadata.get("namespace"), metadata["name"])
        return copy_json(final)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> JsonDict | None:
        """The current object (with ``kind``/``apiVersion``), or ``None``.

        A namespaced object is looked up in ``default`` when no namespace is given.
        """
        resource = self._registry.require_kind(api_version, kind)
        if resource.namespaced and namespace is None:
            namespace = "default"
        obj = self._store.get(resource, namespace, name)
        return None if obj is None else copy_json(obj)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JsonDict]:
        """All current objects of a kind (in one namespace if given), sorted by key."""
        resource = self._registry.require_kind(api_version, kind)
        return [copy_json(obj) for _, obj in self._store.items(resource, namespace)]

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self._store.resource_version

    def compact(self, resource_version: int | None = None) -> None:
        """Forget history up to ``resource_version`` (default: now), like etcd compaction."""
        rv = self._store.resource_version if resource_version is None else resource_version
        self._store.compact(rv)

    def register_resource(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        *,
        namespaced: bool = True,
        short_names: Sequence[str] = (),
        categories: Sequence[str] = (),
    ) -> None:
        """Serve another resource, e.g. a custom resource (items keep kind/apiVersion).

        ``short_names`` and ``categories`` appear in discovery, as a CRD's ``spec.names``.
        """
        self._registry.register(
            group,
            version,
            plural,
            kind,
            namespaced=namespaced,
            short_names=tuple(short_names),
            categories=tuple(categories),
        )

    def unregister_resource(self, group: str, version: str, plural: str) -> None:
        """Stop serving a resource registered with :meth:`register_resource`, as deleting
        its CustomResourceDefinition does: every object of it is deleted (a DELETED event
        each, to its watchers), then its open watches end cleanly after those events, its
        paths answer the generic 404 and discovery no longer lists it. Registering it again
        serves it afresh, empty, as a recreated CRD is.

        kube-apiserver's CRD finalizer waits for objects that have finalizers of their own;
        here they refuse the deletion (``ValueError``), nothing deleted. Raises ``KeyError``
        for a resource not served, ``ValueError`` for a built-in one.
        """
        resource = self._registry.by_path(group, version, plural)
        if resource is None:
            raise KeyError(f"{plural} in {group or 'core'}/{version} is not served")
        if resource in BUILTIN_RESOURCES:
            raise ValueError(f"{resource.qualified} is built in: it is always served")
        objects = [obj for _, obj in self._store.items(resource)]
        held = [obj["metadata"]["name"] for obj in objects if obj["metadata"].get("finalizers")]
        if held:
            raise ValueError(
                f"{resource.qualified} {held[0]!r} has finalizers: the CRD would stay "
                "terminating until they are removed"
            )
        for obj in objects:
            metadata = obj["metadata"]
            self._store.delete(resource, metadata.get("namespace"), metadata["name"])
        self._registry.unregister(resource, last_rv=self._store.resource_version)
        self._store.wake_all()  # idle watchers of it wake up and end

    def _resource_of(self, obj: JsonDict) -> ResourceType:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise ValueError("the object needs string apiVersion and kind")
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict) or not (
            metadata.get("name") or metadata.get("generateName")
        ):
            raise ValueError("the object needs metadata.name")
        return self._registry.require_kind(api_version, kind)

    @staticmethod
    def _scoped(resource: ResourceType, obj: JsonDict) -> JsonDict:
        metadata = obj["metadata"]
        if resource.namespaced and not metadata.get("namespace"):
            return {**obj, "metadata": {**metadata, "namespace": "default"}}
        return obj

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        fault: Fault,
        *,
        path: str | re.Pattern[str] | None = None,
        method: str | None = "GET",
        watch: bool | None = None,
        times: int | None = 1,
        probability: float | None = None,
        continued: bool | None = None,
        skip: int = 0,
    ) -> FaultRule:
        """Apply ``fault`` to matching requests; see :class:`FaultRule` for matching.

        ``continued=True`` matches only LISTs that continue a list (page 2 and on),
        ``False`` only first pages; ``skip`` serves the first matching requests normally.
        """
        rule = FaultRule(
            fault,
            path=path,
            method=method,
            watch=watch,
            times=times,
            probability=probability,
            continued=continued,
            skip=skip,
        )
        return self._faults.add(rule)

    def clear_faults(self) -> None:
        self._faults.clear()

    def cut_watches(self, *, mid_line: bool = False) -> int:
        """End every watch stream open now; returns how many were asked to end.

        Unlike an injected fault (which waits for the next watch request), this reaches
        the watches already streaming: a load balancer dropping its connections, an API
        server restarting. Each stream ends at its next step (at once when idle): with
        ``mid_line=False`` cleanly, with the final zero-length chunk, as kube-apiserver ends
        a watch on timeout or shutdown; with ``mid_line=True`` the first half of the next
        event line (a bookmark's, for an idle watch) is written and the connection dropped,
        as a connection lost in the middle of an event. Watches that start afterwards are
        untouched. Await ``wait_until(lambda s: s.active_watches == 0)`` to see them gone.
        """
        count = self._active.cut_all(mid_line=mid_line)
        self._store.wake_all()
        return count

    # ------------------------------------------------------------------ observation

    @property
    def requests(self) -> Sequence[RecordedRequest]:
        """Recent requests in arrival order (bounded)."""
        return self._log

    @property
    def request_count(self) -> int:
        """Requests received since the start; a ``start`` for :meth:`wait_for_request`."""
        return self._log.total

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool],
        *,
        start: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of the public API
    ) -> RecordedRequest:
        """The first request with arrival index ``>= start`` that matches ``predicate``.

        Raises ``TimeoutError`` if none arrives within ``timeout`` seconds.
        """
        return await self._log.wait_for(predicate, start=start, within=timeout)

    @property
    def active_watches(self) -> int:
        """Watch streams currently open (headers sent, not yet ended)."""
        return self._active.count

    @property
    def open_connections(self) -> int:
        """TCP connections currently open to the server."""
        return self._connections.count

    async def wait_for_watchers(
        self,
        count: int = 1,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of the public API
    ) -> None:
        """Wait until at least ``count`` watches are streaming (headers sent)."""
        await self._active.wait_for(count, timeout)

    async def wait_until(
        self,
        condition: Callable[[FakeApiServer], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of the public API
    ) -> None:
        """Wait until ``condition(server)`` holds, e.g. ``lambda s: s.open_connections == 0``.

        The condition is checked now and after every change the server can observe: a
        request, a write, a watch starting or ending, a connection opening or closing.
        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        await self._changes.wait_until(lambda: condition(self), timeout)


def _namespace(name: str) -> JsonDict:
    """A namespace as the API server's defaults leave it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


class _ConnectionCount:
    """Open TCP connections, counted from the server's connection callbacks."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.count = 0
        self._on_change = on_change
        self._transports: set[asyncio.Transport] = set()

    def opened(self, transport: asyncio.Transport) -> None:
        self._transports.add(transport)
        self.count += 1
        self._on_change()

    def closed(self, transport: asyncio.Transport | None) -> None:
        if transport in self._transports:
            self._transports.discard(transport)
            self.count -= 1
            self._on_change()

    def abort_all(self) -> None:
        """Close every remaining connection now; aborted sockets close on the next loop turn
        (their protocol may no longer be attached to the server, so count them here)."""
        for transport in list(self._transports):
            transport.abort()
            self.closed(transport)


class _TrackingServer(web.Server):
    """aiohttp's low-level server, counting connections as they open and close."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        connections: _ConnectionCount,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._count = connections

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._count.opened(transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        transport = handler.transport
        super().connection_lost(handler, exc)
        self._count.closed(transport)


def _request_factory(
    loop: asyncio.AbstractEventLoop,
) -> Callable[
    [RawRequestMessage, StreamReader, RequestHandler, AbstractStreamWriter, asyncio.Task[None]],
    web.BaseRequest,
]:
    """Requests whose bodies may be as large as :data:`CLIENT_MAX_SIZE`."""

    def make(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=CLIENT_MAX_SIZE
        )

    return make


#: A wildcard address listened on, and the loopback address of its family.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}

#: A name a certificate may carry (trustme encodes names with IDNA, which refuses others).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def _reachable(host: str) -> str:
    """The address a client on this machine connects to for a server listening on ``host``."""
    return _WILDCARDS.get(host, host)


def _certificate_hosts(host: str) -> tuple[str, ...]:
    """What the certificate names besides the loopback names: the address listened on, or
    for a wildcard this machine's host name (which other machines may know it by)."""
    name = socket.gethostname() if host in _WILDCARDS else host
    return (name,) if _is_ip(name) or (name and _DNS_NAME.match(name)) else ()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _bound_port(runner: web.BaseRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the server is not bound to a TCP port")
