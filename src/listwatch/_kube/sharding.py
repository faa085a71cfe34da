"""One shard of a resource, filtered by the server when it can and by us when it cannot.

A sharded source asks every LIST and WATCH for ``shardSelector=<Shard.selector>``. A
kube-apiserver with the ``ShardedListAndWatch`` gate (1.36, alpha) filters, and says so on a
LIST only: ``metadata.shardInfo.selector`` echoes the selector it applied. A server without
the gate ignores the parameter and sends everything, without the echo
(docs/kubernetes-semantics.md#sharded-list-and-watch). So the decision is made per LIST
response: an echo of our own selector means the server filtered; no echo (or another
selector) means we drop the items outside the shard ourselves, by the FNV-1a hash of their
uid, the server's own rule (``listwatch._shard``).

A watch event carries no echo. The server filters a watch exactly when it filters a list
(one gate, one parse of the parameter, in the same store), but a watch is checked anyway,
event by event: one decode of the uid and one hash, so that an event outside the shard
never reaches the receiver whatever the server did, and a server seen sending one is
reported as filtering nothing. Bookmarks pass. An object without a uid (never made by
kube-apiserver) is hashed as the empty string, as the server resolves it: it falls into
exactly one shard, the same one on both paths.

The decision is status (``mode``) and one log line when it is made or changes, never one
per request. Nothing here runs for an unsharded source.
"""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from listwatch._models import Event, EventType, Item, Page
from listwatch._shard import Shard, fnv1a64
from listwatch._tolerant import uid_of

__all__ = ["ShardFilter", "Sharding"]

logger = logging.getLogger("listwatch")

Sharding = Literal["server", "client"]
"""Who filtered the last response of a sharded source: the API server, or listwatch."""


class _ShardInfo(msgspec.Struct, gc=False):
    selector: str | None = None


class _EchoMeta(msgspec.Struct, gc=False):
    shardInfo: _ShardInfo | None = None


class _EchoList(msgspec.Struct, gc=False):
    """A LIST body, read for ``metadata.shardInfo`` alone (the items are skipped)."""

    metadata: _EchoMeta | None = None


_ECHO = msgspec.json.Decoder(_EchoList)
_EMPTY = b"{}"  # the object of a bookmark that stands for dropped events (never read)


def echoed_selector(body: bytes | bytearray | memoryview) -> str | None:
    """The ``metadata.shardInfo.selector`` of a LIST body, or None when it has none."""
    try:
        metadata = _ECHO.decode(body).metadata
    except msgspec.DecodeError:
        return None  # the page parser words what is wrong with the body
    info = metadata.shardInfo if metadata is not None else None
    return info.selector if info is not None else None


class ShardFilter:
    """The shard's filter of one source's responses, and who filtered the last one."""

    __slots__ = ("_description", "_selector", "_strays", "mode", "shard")

    def __init__(self, shard: Shard, description: str) -> None:
        self.shard = shard
        self._selector = shard.selector
        self._description = description
        self.mode: Sharding | None = None
        """Who filtered the last response; None before the first."""
        self._strays = False  # whether the current watch sent an object outside the shard

    @property
    def selector(self) -> str:
        """The ``shardSelector`` parameter every request carries."""
        return self._selector

    def page(self, page: Page, echo: str | None) -> Page:
        """A LIST page of the shard: as the server sent it if it echoed our selector,
        else with the items outside the shard dropped."""
        if echo == self._selector:
            self._decided("server", "the server echoed the shard selector on a LIST")
            return page
        if echo is None:
            self._decided("client", "a LIST came back without shardInfo")
        else:
            self._decided("client", "a LIST echoed a selector other than the one asked for")
        holds = self.shard.holds_hash
        items = [item for item in page.items if holds(fnv1a64(_item_uid(item)))]
        return Page(items, page.resource_version, page.continue_token)

    def watch_started(self) -> None:
        """A watch (or streaming list) opens: nothing outside the shard seen in it yet."""
        self._strays = False

    def events(self, events: list[Event]) -> list[Event]:
        """The events of the shard (bookmarks included), in order; ``events`` itself when
        all of them are (the usual case once the server filters).

        Dropping an event must not drop the progress it stands for: a server that filters
        follows with a bookmark at a newer RV, one that does not never will (it has sent
        the newest event already), and the receiver's resourceVersion would stay behind
        the stream for as long as the shard's own objects stay quiet. So when the last of
        ``events`` is dropped, a bookmark at its RV takes its place, as if the server had
        filtered it and sent one.

        A streaming list's initial events are judged when their closing bookmark comes:
        none outside the shard means the server filtered them (or the collection held
        nothing of the other shards, which, every event being checked, changes nothing).
        """
        holds = self.shard.holds_hash
        kept: list[Event] | None = None
        for index, event in enumerate(events):
            if event.type is EventType.BOOKMARK:
                if event.initial_events_end and not self._strays:
                    self._decided("server", "a streaming list sent only objects of the shard")
            elif not holds(fnv1a64(_item_uid(event))):
                if kept is None:
                    kept = events[:index]
                if not self._strays:
                    self._strays = True
                    self._decided("client", "a watch sent an object outside the shard")
                continue
            if kept is not None:
                kept.append(event)
        if kept is None:
            return events
        last = events[-1]
        if not kept or kept[-1] is not last:
            kept.append(Event(EventType.BOOKMARK, None, "", last.resource_version, raw=_EMPTY))
        return kept

    def _decided(self, mode: Sharding, why: str) -> None:
        if mode == self.mode:
            return
        previous, self.mode = self.mode, mode
        logger.info(
            "%s shard %s: filtered by the %s (%s)%s",
            self._description,
            self.shard.name,
            "API server" if mode == "server" else "client, by the FNV-1a hash of each uid",
            why,
            f"; was filtered by the {previous}" if previous is not None else "",
        )


def _item_uid(item: Item | Event) -> str:
    """The uid of an item or event: from its bytes as the server sent them (``_raw``, the
    object without the members a list item gets spliced in front), else its parsed dict. A
    watch event keyed from its head has it already (``Event.uid``; "" means unknown)."""
    if isinstance(item, Event) and item.uid:
        return item.uid
    raw = item._raw
    if raw is not None:
        return uid_of(raw)
    metadata = item.object.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    return uid if isinstance(uid, str) else ""
