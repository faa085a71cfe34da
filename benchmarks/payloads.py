"""Realistic pod bodies (~7 KB of JSON each) and the pre-serialized bytes the server sends.

The pods are ``listwatch.testing.scenario.numbered_pod``: what a Deployment produces on a
real cluster, shaped like the demo's pods (parse cost depends on the shape of the JSON, not
only on its size), and pinned byte for byte so that results stay comparable between runs.

Watch event bodies are built once per key as a *template*: the JSON split around two
fixed-width placeholders, the resourceVersion and a send timestamp (an annotation). The server
then makes each event line by concatenation, which is a memcpy, so it can stamp the time of
writing into an event (latency) or stream a million events without holding them all.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

JsonDict = dict[str, Any]

LIST_RESOURCE_VERSION = "1"
"""Every list is served at this RV; watches start from it."""

RV_WIDTH = 12
"""Event resourceVersions are zero-padded to this width, so the body size never changes."""

SENT_AT_ANNOTATION = "bench.listwatch.io/sent-at"
"""The annotation that carries ``time.time()`` of the server's write, for latency."""

SENT_AT_WIDTH = 20
"""``f"{time.time():020.9f}"``: seconds with nanosecond digits, fixed width."""

_RV_MARK = "\x01RV\x01"
_SENT_MARK = "\x01SENT\x01"
_RV_MARK_JSON = orjson.dumps(_RV_MARK)[1:-1]
_SENT_MARK_JSON = orjson.dumps(_SENT_MARK)[1:-1]


def format_rv(rv: int) -> bytes:
    """A resourceVersion as the fixed-width digits spliced into an event."""
    return str(rv).zfill(RV_WIDTH).encode()


def format_sent_at(timestamp: float) -> bytes:
    """A send timestamp as the fixed-width digits spliced into an event."""
    return f"{timestamp:0{SENT_AT_WIDTH}.9f}".encode()


ZERO_SENT_AT = format_sent_at(0.0)


def pod(index: int, *, seed: int = 0) -> JsonDict:
    """Pod number ``index`` (``listwatch.testing.scenario.numbered_pod``, whose bytes are
    pinned), with a zero send timestamp: about 7 KB of JSON, as a list item (no kind)."""
    # Imported here: the measured client processes import this module for its constants,
    # and a stock client's memory must not include listwatch's.
    from listwatch.testing.scenario import numbered_pod  # noqa: PLC0415

    return numbered_pod(index, seed=seed, annotations={SENT_AT_ANNOTATION: ZERO_SENT_AT.decode()})


POOL_SIZE = 1000
"""Distinct generated pods; pod ``i`` is pod ``i % POOL_SIZE`` renamed, which is ~30x faster
to make than a fresh pod and still unique by name (what listwatch keys on)."""


def _name(index: int) -> bytes:
    name: str = pod(index)["metadata"]["name"]
    return name.encode()


@functools.cache
def _base_item(base: int) -> tuple[bytes, bytes]:
    return orjson.dumps(pod(base)), _name(base)


def _renamed(data: bytes, base_name: bytes, index: int) -> bytes:
    return data.replace(base_name, b"%s%07d" % (base_name[:-7], index))


def list_item(index: int) -> bytes:
    """Pod ``index`` as a serialized list item (no kind/apiVersion, as built-in lists send)."""
    data, base_name = _base_item(index % POOL_SIZE)
    return data if index < POOL_SIZE else _renamed(data, base_name, index)


def pod_items(count: int) -> Iterator[bytes]:
    """The first ``count`` list items."""
    return (list_item(index) for index in range(count))


def pod_list_page(
    items: list[bytes], *, continue_token: str | None, remaining: int | None
) -> bytes:
    """A ``PodList`` response around already-serialized items, as kube-apiserver writes it."""
    metadata: JsonDict = {"resourceVersion": LIST_RESOURCE_VERSION}
    if continue_token is not None:
        metadata["continue"] = continue_token
        if remaining is not None:
            metadata["remainingItemCount"] = remaining
    head = orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": metadata})
    return b"".join((head[:-1], b',"items":[', b",".join(items), b"]}"))


EMPTY_POD_LIST = pod_list_page([], continue_token=None, remaining=None)


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """One key's ``MODIFIED`` watch line, split around the RV and the send timestamp."""

    head: bytes
    middle: bytes
    tail: bytes
    rv_first: bool

    def line(self, rv: bytes, sent_at: bytes = ZERO_SENT_AT) -> bytes:
        """The full line (with its ``\\n``) for this RV and timestamp."""
        first, second = (rv, sent_at) if self.rv_first else (sent_at, rv)
        return b"".join((self.head, first, self.middle, second, self.tail))

    def parts(self, rv: bytes, sent_at: bytes = ZERO_SENT_AT) -> tuple[bytes, ...]:
        """The pieces of :meth:`line`, for a ``b"".join`` of many lines at once."""
        first, second = (rv, sent_at) if self.rv_first else (sent_at, rv)
        return (self.head, first, self.middle, second, self.tail)


@functools.cache
def _base_template(base: int) -> tuple[EventTemplate, bytes]:
    obj = {"kind": "Pod", "apiVersion": "v1", **pod(base)}
    obj["metadata"]["resourceVersion"] = _RV_MARK
    obj["metadata"]["annotations"][SENT_AT_ANNOTATION] = _SENT_MARK
    line = orjson.dumps({"type": "MODIFIED", "object": obj}) + b"\n"
    rv_at = line.index(_RV_MARK_JSON)
    sent_at = line.index(_SENT_MARK_JSON)
    first, second = sorted(((rv_at, _RV_MARK_JSON), (sent_at, _SENT_MARK_JSON)))
    head = line[: first[0]]
    middle = line[first[0] + len(first[1]) : second[0]]
    tail = line[second[0] + len(second[1]) :]
    template = EventTemplate(head, middle, tail, rv_first=first[1] == _RV_MARK_JSON)
    return template, _name(base)


def event_template(index: int) -> EventTemplate:
    """The ``MODIFIED`` event line of pod ``index`` (the object carries kind/apiVersion)."""
    template, base_name = _base_template(index % POOL_SIZE)
    if index < POOL_SIZE:
        return template
    return EventTemplate(
        _renamed(template.head, base_name, index),
        _renamed(template.middle, base_name, index),
        _renamed(template.tail, base_name, index),
        template.rv_first,
    )


def key_of(index: int) -> str:
    """``namespace/name`` of pod ``index``, as listwatch keys it."""
    meta = pod(index % POOL_SIZE)["metadata"]
    return f"{meta['namespace']}/{meta['name'][:-7]}{index:07d}"
