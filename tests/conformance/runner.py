"""Runs a group's script over HTTP against one server, keeping every raw answer.

The same code runs against kube-apiserver (``record.py``) and against ``FakeApiServer``
(``test_replay.py``); only a :class:`Target` differs: where the server is, how to trust it,
and the few things a script cannot do through the API (see ``script.py``). Requests go out
as raw aiohttp requests so that the status line, the headers and the body are seen exactly
as the server sent them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from listwatch._shard import fnv1a64
from tests.conformance.script import (
    USER_AGENTS,
    Compact,
    Exchange,
    Group,
    PrepareNamespace,
    Ref,
    ShardAround,
    Value,
    WatchRead,
)

#: The longest event line read (a Pod is a few KiB; a Table row more).
MAX_LINE = 4 * 1024 * 1024


class Target(Protocol):
    """A server to run a script against."""

    @property
    def base_url(self) -> str: ...

    @property
    def ssl_context(self) -> ssl.SSLContext: ...

    @property
    def token(self) -> str: ...

    @property
    def address(self) -> str:
        """``host:port`` as the server names itself in ``/api`` (normalized away)."""
        ...

    async def prepare_namespace(self, session: aiohttp.ClientSession, namespace: str) -> None: ...

    async def identity_token(
        self, session: aiohttp.ClientSession, namespace: str, name: str
    ) -> str: ...

    async def compact(self, session: aiohttp.ClientSession) -> None: ...


@dataclass
class Raw:
    """One exchange as it went over the wire (values resolved, answer undecoded beyond JSON)."""

    request: dict[str, Any]
    status: int
    headers: dict[str, str]
    body: Any = None
    events: list[Any] | None = None
    #: For a watch: ``closed`` when the server ended the stream, ``stopped`` when the
    #: reader stopped (its ``until`` condition met).
    end: str | None = None
    chunked: bool = False


@dataclass
class Run:
    """A script's run: its namespace, and the raw answer of every step by name."""

    namespace: str
    identity: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Raw] = field(default_factory=dict)


def new_namespace() -> str:
    return f"lw-conformance-{secrets.token_hex(3)}"


async def run_group(group: Group, target: Target, namespace: str | None = None) -> Run:
    """Run every step of ``group`` in order; raises when a step cannot be carried out."""
    run = Run(namespace or new_namespace())
    connector = aiohttp.TCPConnector(ssl=target.ssl_context)
    async with aiohttp.ClientSession(
        target.base_url, connector=connector, read_bufsize=2**16, max_line_size=MAX_LINE
    ) as session:
        for step in group.steps:
            if isinstance(step, Compact):
                await target.compact(session)
            elif isinstance(step, PrepareNamespace):
                await target.prepare_namespace(session, run.namespace)
            else:
                run.answers[step.name] = await _exchange(session, target, run, step)
    return run


async def _exchange(
    session: aiohttp.ClientSession, target: Target, run: Run, exchange: Exchange
) -> Raw:
    deadline = time.monotonic() + (exchange.read.within if exchange.read else 60.0)
    while True:
        raw = await _send(session, target, run, exchange)
        if exchange.until_status is None or raw.status == exchange.until_status:
            return raw
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{exchange.name}: still HTTP {raw.status}, not {exchange.until_status}"
            )
        await asyncio.sleep(1.0)  # the real server notices a compaction within 15 s


async def _send(
    session: aiohttp.ClientSession, target: Target, run: Run, exchange: Exchange
) -> Raw:
    request = render(exchange, run)
    headers = {"Accept": exchange.accept, "User-Agent": USER_AGENTS[exchange.client]}
    if exchange.content_type:
        headers["Content-Type"] = exchange.content_type
    headers["Authorization"] = f"Bearer {await _token(session, target, run, exchange)}"
    data = None if request["body"] is None else json.dumps(request["body"]).encode()
    response = await session.request(
        exchange.method,
        request["path"],
        params=request["query"],
        headers=headers,
        data=data,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=60.0),
    )
    try:
        raw = Raw(
            request=request,
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            chunked=response.headers.get("Transfer-Encoding", "").lower() == "chunked",
        )
        if exchange.read is None or response.status != 200:
            raw.body = _decode(await response.read(), raw.headers)
            return raw
        for step in exchange.during:
            answer = await _send(session, target, run, step)
            if answer.status >= 300:
                raise AssertionError(f"{exchange.name}: {step.name} got HTTP {answer.status}")
        raw.events, raw.end = await _read_events(response, exchange.read, exchange.name)
        return raw
    finally:
        response.close()


async def _token(
    session: aiohttp.ClientSession, target: Target, run: Run, exchange: Exchange
) -> str:
    if exchange.as_user == "admin":
        return target.token
    if exchange.as_user == "invalid":
        return "conformance-" + secrets.token_hex(16)
    if "nobody" not in run.identity:
        run.identity["nobody"] = await target.identity_token(session, run.namespace, "nobody")
    return run.identity["nobody"]


async def _read_events(
    response: aiohttp.ClientResponse, read: WatchRead, name: str
) -> tuple[list[Any], str]:
    events: list[Any] = []
    try:
        async with asyncio.timeout(read.within):
            while True:
                line = await response.content.readline()
                if not line:
                    return events, "closed"
                if not line.endswith(b"\n"):
                    raise AssertionError(f"{name}: the stream ended inside a line: {line!r}")
                event = json.loads(line)
                events.append(event)
                if _done(read, event, len(events)):
                    return events, "stopped"
    except TimeoutError:
        raise AssertionError(
            f"{name}: no {read.until} within {read.within} s; events: {events}"
        ) from None


def _done(read: WatchRead, event: Any, count: int) -> bool:
    if read.until == "count":
        return count >= read.count
    if read.until == "bookmark":
        return bool(event.get("type") == "BOOKMARK")
    if read.until == "initial-events-end":
        annotations = event.get("object", {}).get("metadata", {}).get("annotations") or {}
        return event.get("type") == "BOOKMARK" and "k8s.io/initial-events-end" in annotations
    return False  # "end": only the server ends it


def _decode(data: bytes, headers: dict[str, str]) -> Any:
    if not data:
        return None
    if headers.get("content-type", "").startswith("application/json"):
        return json.loads(data)
    return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- values


def render(exchange: Exchange, run: Run) -> dict[str, Any]:
    """The request with ``{ns}`` and every :class:`Ref` resolved."""
    return {
        "method": exchange.method,
        "path": exchange.path.replace("{ns}", run.namespace),
        "query": [[key, _value(value, run)] for key, value in exchange.query],
        "body": _body(exchange.body, run),
    }


def _value(value: Value, run: Run) -> str:
    if isinstance(value, ShardAround):
        hashes = sorted(fnv1a64(str(lookup(run, ref))) for ref in value.uids)
        return " || ".join(
            f"shardRange({value.field}, '0x{h:016x}', '0x{h + 1:016x}')" for h in hashes
        )
    if isinstance(value, Ref):
        resolved = lookup(run, value)
        if not isinstance(resolved, str):
            raise AssertionError(f"{value} is {resolved!r}, not a string")
        return resolved
    return value.replace("{ns}", run.namespace)


def _body(body: Any, run: Run) -> Any:
    if isinstance(body, dict):
        return {key: _body(value, run) for key, value in body.items()}
    if isinstance(body, list):
        return [_body(value, run) for value in body]
    if isinstance(body, str | Ref):
        return _value(body, run)
    return body


def lookup(run: Run, ref: Ref) -> Any:
    """The value ``ref`` points at in the raw answers of ``run``."""
    answer = run.answers.get(ref.step)
    if answer is None:
        raise AssertionError(f"{ref}: no earlier step of that name")
    value: Any = {"body": answer.body, "events": answer.events}
    path = ref.path if ref.path.startswith("events[") else "body." + ref.path
    for part in path.replace("[", ".").replace("]", "").split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            raise AssertionError(f"{ref}: not in {answer.status} {answer.body}") from None
    return value
