"""``HttpSink``: a receiver that sends every snapshot and batch to a server over HTTP.

The seed project sent each full sync as one gRPC message holding every pod of the cluster
(its server's limit had to grow from 4 MB to 64 MB), gave each call 3 s, and only logged a
failed sync. This sink speaks the HTTP sync protocol (``listwatch.httpsync._wire``,
``docs/http-sync-protocol.md``) instead:

* a snapshot is **one streamed request**: its pages are encoded and gzip-compressed as the
  Syncer lists them (chunked transfer), so the sender holds one page, never the cluster,
  and any size fits; the request ends with a commit record, and a request cut short (a list
  error mid-stream, a dropped connection) commits nothing on the server. Beyond the page
  being read, the body in flight is bounded in bytes (``SEND_CHUNK_BYTES``), not in pages;
* objects go as the JSON bytes the API server sent (a ``transform`` re-serialises);
* every failure raises: the receiver answered an error, refused the write (409: a stale
  epoch, a stale generation), or could not be reached in time. The Syncer then restarts
  the generation with backoff, and the next snapshot brings the server up to date: at
  least once, nothing lost.

TLS is verified unless ``verify=False`` is given; credentials are a bearer token (given, or
read from a file at every request, so a rotated token is picked up) and/or a client
certificate. Neither appears in a log line or an error message: a URL with a user or
password (or a query, or a fragment, where secrets also hide) is refused, since the URL
names every request in errors, logs and ``/readyz``; and of a receiver's error answer only
a Status message is shown, capped, without the token (``_wire.error_from_answer``).

While a snapshot's listing is slow (a LIST page that takes long, a 429's wait), the body
carries a blank line every ``HEARTBEAT`` seconds: the receiver's idle timeout then ends only
a sender that is gone or stopped, never a slow API server.

Several receivers may be given (``ReceiverUrls``): the sender uses one at a time and moves
to the next when the one in use cannot be reached, does not answer in time, or answers 5xx
(the rules, each with its reason, are ``ReceiverUrls``'s). A batch is sent again at once
to the next receiver; a snapshot, which is read from the API server as it is sent, is not:
its failure ends the generation and the next one's snapshot goes to the next receiver.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from listwatch._aio import OpenedOnEnter, cancel_and_join
from listwatch._models import Batch, GroupVersionResource, Item, Snapshot
from listwatch.errors import HttpSyncError
from listwatch.httpsync import _wire as protocol
from listwatch.httpsync._wire import Header

__all__ = ["HttpSink", "HttpSyncError", "ReceiverUrls"]

logger = logging.getLogger("listwatch")

MAX_RESPONSE_BYTES = 64 * 1024
HEARTBEAT = 5.0
"""Seconds without a chunk of a snapshot after which a blank line is sent (the receiver's
idle timeout is 30 s by default)."""
KEEPALIVE = 5.0
"""Seconds an idle connection is kept for the next request: below a receiver's header
timeout (10 s by default), after which it closes the connection, so a request is never sent
on a connection the receiver is closing."""

SEND_CHUNK_BYTES = 1024 * 1024
"""A snapshot's body goes to aiohttp in chunks of about this many bytes (before
compression), each at least one whole record; two wait for the writer while the next is
filled. So what the sender holds of a snapshot beyond the page being read is about 3 MiB,
or three records of the largest objects, whatever the page size (it was three whole pages,
857 MiB with ConfigMaps of ~900 KB). A MiB per write keeps the socket busy."""

_QUEUED_CHUNKS = 2


class ReceiverUrls:
    """The receivers a sender may write to, in order of preference, and the one in use.

    ::

        receivers = ReceiverUrls(["https://sync-a:8443", "https://sync-b:8443"])
        pods = HttpSink(receivers, token_file=path, resource="pods")
        nodes = HttpSink(receivers, token_file=path, resource="nodes")

    Sinks given one ``ReceiverUrls`` move together: a receiver one of them found dead is
    left by all, with one WARNING. The rules, each for a reason:

    * **The first URL first.** The order is the operator's preference (the nearer
      receiver, or an order per agent that spreads a fleet over the receivers); a sender
      that started on a random one could not be told where to write.
    * **Move on only for what another receiver may not share**: no connection, no answer
      (or no reading of the body) within the sink's ``timeout``, or a 5xx (the receiver's
      own store or pool failed, or a proxy in front of it). A 4xx is never failed over: it
      is the sender's fault (a bad token, a malformed record) or the fence's answer (409),
      and every receiver of the same store gives the same one.
    * **Stay on the receiver that works**: a receiver the sender left is not tried again
      until the others have failed, so a receiver that comes back does not pull every
      sender back at once, and a flapping one is not hit at every recovery.
    * **Round the list**: after the last URL comes the first again (a receiver that
      restarted serves again); with one URL there is nothing to move to.
    * **A failure moves on only from the receiver it came from**: requests in flight on
      the same dead receiver (several resources, a batch and a snapshot) move the sender
      once, not once each, and never past a receiver that has not failed.

    Sending a write again to another receiver is safe because every receiver of one store
    judges it by the same fence in the store's own transaction: a batch another receiver
    already applied is answered 200 and changes nothing (same stamp), and a snapshot cut
    short applied nothing where it was staged (an abandoned staging is dropped later).
    """

    def __init__(self, urls: str | Sequence[str]) -> None:
        given = [urls] if isinstance(urls, str) else list(urls)
        if not given:
            raise ValueError("give at least one receiver URL")
        checked = tuple(receiver_url(url) for url in given)
        for index, url in enumerate(checked):
            if url in checked[:index]:  # checked: nothing secret in it, so it may be named
                raise ValueError(f"the receiver URL {url} is given twice")
        self._urls = checked
        self._at = 0

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    @property
    def current(self) -> str:
        """The receiver the next request goes to."""
        return self._urls[self._at]

    def __len__(self) -> int:
        return len(self._urls)

    def failed(self, url: str, error: HttpSyncError) -> None:
        """``url`` failed a request with ``error``: the next request goes to the next
        receiver, unless ``url`` is no longer the one in use (see the rules above)."""
        if len(self._urls) == 1 or self._urls[self._at] != url:
            return
        self._at = (self._at + 1) % len(self._urls)
        logger.warning(
            "%s; failing over from %s to %s",
            error,
            url,
            self.current,
            extra={"receiver": url, "next_receiver": self.current},
        )

    def __repr__(self) -> str:
        return f"ReceiverUrls({list(self._urls)!r})"


class _Unavailable(Exception):
    """A request failed in a way another receiver may not share: ``error`` is what the
    caller raises (never this class, which no user sees), once it has moved on."""

    def __init__(self, error: HttpSyncError) -> None:
        super().__init__(str(error))
        self.error = error


class HttpSink(OpenedOnEnter):
    """Send snapshots and batches of one resource to ``url`` (the receiver's base URL).

    ::

        async with HttpSink("https://mirror.example:8443", token_file=path) as sink:
            syncer = Syncer(source, on_list=sink.on_list, on_batch=sink.on_batch)

    ``url`` may also be several receivers' URLs, or a ``ReceiverUrls`` shared with other
    sinks: the sink writes to one and fails over to the next as ``ReceiverUrls`` says; a
    batch that failed that way is sent again at once to the next receiver, each receiver
    at most once per batch (so a batch may take up to one ``timeout`` per receiver).
    Credentials and TLS settings are the same for every receiver.

    ``timeout`` bounds a batch request; during a snapshot (which may stream for as long as
    the listing takes; bound it whole with the Syncer's ``sync_timeout``) it bounds the
    connect, the wait for the answer, and a receiver that takes none of the body while
    it is ready to be sent. ``resource`` names the row set when snapshots carry no resource.
    """

    def __init__(
        self,
        url: str | Sequence[str] | ReceiverUrls,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        ca_file: str | Path | None = None,
        verify: bool = True,
        timeout: float = 30.0,
        compress_level: int = 1,
        resource: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if token is not None and token_file is not None:
            raise ValueError("give a token or a token_file, not both")
        if (client_cert is None) != (client_key is None):
            raise ValueError("a client certificate needs its key, and the other way round")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if not 0 <= compress_level <= 9:
            raise ValueError("compress_level is 0 (no gzip) to 9")
        self._urls = url if isinstance(url, ReceiverUrls) else ReceiverUrls(url)
        self._token = token
        self._token_file = Path(token_file) if token_file is not None else None
        self._ssl = _ssl_context(ca_file, client_cert, client_key, verify)
        self._timeout = timeout
        self._compress_level = compress_level
        self._resource = resource
        self._session = session
        self._owns_session = session is None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, keepalive_timeout=KEEPALIVE),
                auto_decompress=True,
            )
            self._owns_session = True

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    # -- the receiver protocol -------------------------------------------------------------

    async def on_list(self, snapshot: Snapshot) -> None:
        """Stream ``snapshot`` as one request; returns once the receiver committed it."""
        resource = self._name(snapshot.resource)
        header = self._header("snapshot", snapshot, resource, sequence=0)
        timeout = aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=self._timeout)
        # The snapshot is read and encoded by a task of ours, not by aiohttp's body writer:
        # when the request fails (the receiver died mid-stream), aiohttp only *cancels* its
        # writer, and a snapshot still being read there could not be closed by the Syncer.
        # Ours is cancelled and awaited here, so on_list never returns with it running.
        chunks: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(maxsize=_QUEUED_CHUNKS)
        taken = _Progress()
        path = f"/sync/{resource}/snapshot"
        url = self._urls.current
        encoder = asyncio.create_task(
            self._encode_snapshot(header, snapshot, chunks, taken),
            name=f"encode {resource} snapshot",
        )
        post = asyncio.create_task(self._post(url, path, _drain(chunks, taken), timeout, header))
        try:
            answer = await self._watch_progress(url, post, chunks, taken, path)
        except _Unavailable as unavailable:
            # Not sent again here: its pages were read from the API server as they went.
            # The generation ends; the next one's snapshot goes to the next receiver.
            if taken.cut is None:  # else we cut it (the listing failed): not the receiver
                self._urls.failed(url, unavailable.error)
            raise unavailable.error from None
        finally:
            await _stop(post)
            await _stop(encoder)
        if snapshot.failure is not None:
            raise snapshot.failure  # the stream failed while it was sent: not committed
        _report_quarantined(snapshot, answer)

    def _header(
        self, kind: protocol.Kind, write: Snapshot | Batch, resource: str, *, sequence: int
    ) -> Header:
        """A request's header record: what it writes, and the stamp the fence judges."""
        return Header(
            kind,
            self._gvr(write.resource, resource),
            write.epoch,
            write.session,
            write.generation,
            sequence,
            write.resource_version,
            None if write.shard is None or write.shard.everything else write.shard,
        )

    async def on_batch(self, batch: Batch) -> None:
        """Send ``batch`` as one request, its events in order."""
        resource = self._name(batch.resource)
        header = self._header("batch", batch, resource, sequence=max(batch.sequence, 1))
        # Compressed record by record: the batch (bounded by the merger's max_batch_bytes)
        # is held once as objects and once as the body, never also as its uncompressed text.
        encoder = _Encoder(self._compress_level)
        parts = [encoder.encode(protocol.encode_header(header))]
        parts += [
            encoder.encode(protocol.encode_event(key, event)) for key, event in batch.events.items()
        ]
        parts.append(
            encoder.encode(protocol.encode_commit(len(batch.events), batch.resource_version))
        )
        parts.append(encoder.flush())
        body = b"".join(parts)
        del parts
        path = f"/sync/{resource}/batch"
        for attempt in range(1, len(self._urls) + 1):
            url = self._urls.current
            try:
                answer = await self._post(
                    url, path, body, aiohttp.ClientTimeout(total=self._timeout), header
                )
            except _Unavailable as unavailable:
                # Sent again to the next receiver, as it is: the fence applies it once
                # (one that the failed receiver did apply is a duplicate, answered 200),
                # and the generation goes on without a fresh snapshot.
                self._urls.failed(url, unavailable.error)
                if attempt == len(self._urls):
                    raise unavailable.error from None
            else:
                _report_quarantined(batch, answer)
                return

    # -- sending ---------------------------------------------------------------------------

    async def _watch_progress(
        self,
        url: str,
        post: asyncio.Task[bytes],
        chunks: asyncio.Queue[bytes | Exception | None],
        taken: _Progress,
        path: str,
    ) -> bytes:
        """Await ``post``; fail it when the receiver stops taking the body.

        aiohttp bounds the wait for the answer (``sock_read``), but not the writing: a
        receiver that stops reading mid-snapshot (its disk is full, it hangs) would stall
        the sender forever. Stalled means the body's next chunks are ready (the queue is
        full) and none was taken for ``timeout``; a slow *listing* (the queue waits for the
        API server) is not the receiver's fault and never counts.
        """
        while True:
            done, _ = await asyncio.wait([post], timeout=self._timeout)
            if done:
                return post.result()
            if chunks.full() and time.monotonic() - taken.at > self._timeout:
                raise _Unavailable(
                    HttpSyncError(
                        f"POST {url}{path}: the receiver took no data for {self._timeout:g} s"
                    )
                )

    async def _encode_snapshot(
        self,
        header: Header,
        snapshot: Snapshot,
        chunks: asyncio.Queue[bytes | Exception | None],
        progress: _Progress,
    ) -> None:
        """Fill ``chunks`` with the body; a list error goes in too, to cut the request."""
        try:
            async for chunk in self._snapshot_body(header, snapshot):
                await chunks.put(chunk)
        except Exception as exc:  # handed to the body, which raises it in aiohttp's writer
            progress.cut = exc
            await chunks.put(exc)
        else:
            await chunks.put(None)

    async def _snapshot_body(self, header: Header, snapshot: Snapshot) -> AsyncIterator[bytes]:
        """The body in chunks of about ``SEND_CHUNK_BYTES`` of records: a page of big
        objects is encoded a record at a time, never whole. The header goes at once (the
        receiver judges the fence before the objects), and what a page encoded goes before
        the next page is listed (a slow LIST is not a silent request)."""
        encoder = _Encoder(self._compress_level)
        yield encoder.encode(protocol.encode_header(header)) + encoder.sync()
        parts: list[bytes] = []
        filled = 0
        count = 0
        async for page in _with_heartbeats(snapshot.pages(), HEARTBEAT):
            if page is None:  # the listing is slow: a blank line says the sender is alive
                yield encoder.encode(b"\n") + encoder.sync()
                continue
            count += len(page)
            for index in range(len(page)):  # no item left bound to pin the page's body
                record = protocol.encode_object(page[index])
                filled += len(record)
                parts.append(encoder.encode(record))
                del record
                if filled >= SEND_CHUNK_BYTES:
                    chunk = b"".join(parts)
                    parts, filled = [], 0
                    if chunk:
                        yield chunk
                    del chunk
            del page  # not held while the next page is listed
            if filled:
                chunk = b"".join(parts) + encoder.sync()
                parts, filled = [], 0
                yield chunk
                del chunk
        parts.append(encoder.encode(protocol.encode_commit(count, snapshot.resource_version)))
        parts.append(encoder.flush())
        yield b"".join(parts)

    async def _post(
        self,
        url: str,
        path: str,
        body: bytes | AsyncIterator[bytes],
        limits: aiohttp.ClientTimeout,
        header: Header,
    ) -> bytes:
        """The 200 answer of ``url``; raises ``_Unavailable`` for what another receiver may
        not share (no connection, no answer in time, a 5xx, a receiver too old for the
        header's version), any other error itself."""
        session = self._session
        if session is None:
            raise RuntimeError("HttpSink is not open: use 'async with HttpSink(...)'")
        headers = {"Content-Type": protocol.CONTENT_TYPE, "Accept": "application/json"}
        if self._compress_level:
            headers["Content-Encoding"] = "gzip"
        token = self._read_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        where = f"POST {url}{path}"
        try:
            async with session.post(
                url + path, data=body, headers=headers, timeout=limits
            ) as response:
                answer = await _read_answer(response.content)
                status = response.status
        except TimeoutError:
            failure = f"no answer within {self._timeout:g} s"
            raise _Unavailable(HttpSyncError(f"{where}: {failure}")) from None
        except aiohttp.ClientConnectorError as exc:
            failure = f"cannot connect ({type(exc.os_error).__name__})"
            raise _Unavailable(HttpSyncError(f"{where}: {failure}")) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Unavailable(HttpSyncError(f"{where}: {type(exc).__name__}")) from None
        if status == 200:
            return answer
        older = protocol.older_receiver(status, answer, header)
        if older is not None:  # another receiver of the list may be upgraded already
            raise _Unavailable(HttpSyncError(f"{where}: {older}"))
        error = protocol.error_from_answer(
            status, answer, where, secrets=(token,) if token is not None else ()
        )
        if status >= 500 and isinstance(error, HttpSyncError):
            raise _Unavailable(error)
        raise error

    def _read_token(self) -> str | None:
        if self._token_file is None:
            return self._token
        try:
            token = self._token_file.read_text().strip()
        except OSError as exc:
            raise HttpSyncError(
                f"cannot read token file {self._token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise HttpSyncError(f"token file {self._token_file} is empty")
        return token

    def _name(self, resource: GroupVersionResource | None) -> str:
        if resource is not None:
            return resource.qualified
        if self._resource is None:
            raise ValueError("this snapshot names no resource: give HttpSink(resource=...)")
        return self._resource

    @staticmethod
    def _gvr(resource: GroupVersionResource | None, name: str) -> GroupVersionResource:
        if resource is not None:
            return resource
        plural, _, group = name.partition(".")
        return GroupVersionResource(group, "", plural)

    def __repr__(self) -> str:
        urls = self._urls.urls
        return f"HttpSink({urls[0] if len(urls) == 1 else list(urls)!r})"


class _Encoder:
    """Records in, the body's bytes out: gzip-compressed as they come, or as they are."""

    def __init__(self, level: int) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31) if level else None

    def encode(self, record: bytes) -> bytes:
        return self._compressor.compress(record) if self._compressor is not None else record

    def sync(self) -> bytes:
        """What is buffered, so far, made readable by the receiver (a deflate sync point)."""
        compressor = self._compressor
        return compressor.flush(zlib.Z_SYNC_FLUSH) if compressor is not None else b""

    def flush(self) -> bytes:
        return self._compressor.flush() if self._compressor is not None else b""


class _Progress:
    """When the request body last took a chunk (aiohttp asks for the next one only once
    the previous one is written, or buffered within its limit), and the error with which
    the sender cut it, if it did."""

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.cut: Exception | None = None


async def _drain(
    chunks: asyncio.Queue[bytes | Exception | None], taken: _Progress
) -> AsyncIterator[bytes]:
    """The request body aiohttp writes: what the encoder queued. An exception (the list
    failed mid-snapshot) is raised in aiohttp's writer, which then cuts the request short:
    the receiver sees no commit record and applies nothing."""
    while True:
        chunk = await chunks.get()
        taken.at = time.monotonic()
        if chunk is None:
            return
        if isinstance(chunk, Exception):
            raise chunk
        yield chunk


def receiver_url(url: str) -> str:
    """``url`` as the base of every request, or a ValueError that does not repeat it: an
    http(s) URL with a host and nothing that could be a secret (no user or password, no
    query, no fragment), since it names every request in errors, logs and probes."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises for one that is not a number
    except ValueError:
        raise ValueError("the receiver URL cannot be parsed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the receiver URL must be http(s)://HOST[:PORT][/PATH]")
    if "@" in parts.netloc:
        raise ValueError(
            "the receiver URL must not hold a user or password: a receiver authenticates "
            "with a bearer token (HttpSink's token_file, mirror's --http-token-file) or a "
            "client certificate"
        )
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ValueError("the receiver URL must not have a query or a fragment")
    return url.strip().rstrip("/")


async def _with_heartbeats(
    pages: AsyncIterator[Sequence[Item]], every: float
) -> AsyncIterator[Sequence[Item] | None]:
    """``pages``, and ``None`` whenever the next page takes longer than ``every`` seconds.

    The next page is awaited in a task of its own, so that waiting with a timeout never
    cancels the listing; that task is cancelled and awaited if the caller stops early."""
    while True:
        step = asyncio.ensure_future(anext(pages))
        try:
            while not (await asyncio.wait([step], timeout=every))[0]:
                yield None
        finally:
            await cancel_and_join(step)
        try:
            yield step.result()
        except StopAsyncIteration:
            return


async def _read_answer(content: aiohttp.StreamReader) -> bytes:
    """The answer's body, up to ``MAX_RESPONSE_BYTES``: whole, however it was cut into
    pieces on the way (a 200 that names quarantined objects is parsed)."""
    answer = b""
    while len(answer) < MAX_RESPONSE_BYTES:
        piece = await content.read(MAX_RESPONSE_BYTES - len(answer))
        if not piece:
            break
        answer += piece
    return answer


def _report_quarantined(write: Snapshot | Batch, answer: bytes) -> None:
    """What the receiver's store kept as bytes rather than as JSON, as an in-process sink
    says it (``Snapshot.quarantine``); a 200 names the first ``MAX_QUARANTINED_NAMED``."""
    named, count = protocol.quarantined_in(answer)
    for key, why in named.items():
        write.quarantine(key, why)
    if count > len(named):
        logger.warning(
            "the receiver quarantined %d more objects of %s than its answer names (its "
            "store's rows say which)",
            count - len(named),
            write.resource.qualified if write.resource is not None else "a resource",
        )


async def _stop(task: asyncio.Task[Any]) -> None:
    """``cancel_and_join(task)``, and its error not raised: ``post``'s was raised already by
    ``_watch_progress``, the encoder hands its errors to the body instead."""
    try:
        await cancel_and_join(task)
    finally:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not log it as lost


def _ssl_context(
    ca_file: str | Path | None,
    client_cert: str | Path | None,
    client_key: str | Path | None,
    verify: bool,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None and client_key is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context
