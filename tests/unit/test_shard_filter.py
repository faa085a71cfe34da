"""The client-side shard filter, without I/O: pages by echo, events by uid hash."""

from __future__ import annotations

import orjson
import pytest

from listwatch import Shard
from listwatch._kube.resource import decode_event, page_from_list_body
from listwatch._kube.sharding import ShardFilter, echoed_selector
from listwatch._models import EventType
from listwatch._shard import HASH_SPACE, fnv1a64
from listwatch._tolerant import uid_of
from listwatch.sinks._base import uid_hash

HALF = Shard.of(0, 2)


def uid_in(shard: Shard, *, inside: bool = True, start: int = 0) -> str:
    """The first uid-like string (from ``start``) whose hash is (or is not) in ``shard``."""
    n = start
    while shard.holds_uid(f"uid-{n}") != inside:
        n += 1
    return f"uid-{n}"


def list_body(uids: list[str | None], echo: str | None = None) -> bytes:
    metadata: dict[str, object] = {"resourceVersion": "10"}
    if echo is not None:
        metadata["shardInfo"] = {"selector": echo}
    items = []
    for n, uid in enumerate(uids):
        meta: dict[str, object] = {"name": f"p{n}", "namespace": "default"}
        if uid is not None:
            meta["uid"] = uid
        items.append({"metadata": meta})
    return orjson.dumps(
        {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items}
    )


def watch_line(kind: str, name: str, uid: str | None, rv: int) -> bytes:
    meta: dict[str, object] = {"name": name, "namespace": "default", "resourceVersion": str(rv)}
    if uid is not None:
        meta["uid"] = uid
    return orjson.dumps({"type": kind, "object": {"kind": "Pod", "metadata": meta}})


def test_fnv1a64_is_go_s_hash_fnv_new64a() -> None:
    # Test vectors of the FNV reference (and Go's hash/fnv tests).
    assert fnv1a64("") == 0xCBF29CE484222325
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C
    assert fnv1a64("foobar") == 0x85944171F73967E8


def test_an_echoed_page_is_passed_whole_and_the_decision_is_server() -> None:
    body = list_body([uid_in(HALF), uid_in(HALF, inside=False)], echo=HALF.selector)
    shard_filter = ShardFilter(HALF, "/api/v1/pods")
    page = shard_filter.page(page_from_list_body(body), echoed_selector(body))
    assert len(page.items) == 2  # the server's word is taken for what it filtered
    assert shard_filter.mode == "server"


@pytest.mark.parametrize("echo", [None, Shard.of(1, 2).selector], ids=["no-echo", "other-echo"])
def test_a_page_without_our_echo_is_filtered_by_uid_hash(echo: str | None) -> None:
    inside = [uid_in(HALF, start=s) for s in (0, 100, 200)]
    outside = [uid_in(HALF, inside=False, start=s) for s in (0, 100)]
    body = list_body([outside[0], inside[0], inside[1], outside[1], inside[2]], echo=echo)
    shard_filter = ShardFilter(HALF, "/api/v1/pods")
    page = shard_filter.page(page_from_list_body(body), echoed_selector(body))
    assert [item.object["metadata"]["uid"] for item in page.items] == inside
    assert page.resource_version == "10"
    assert shard_filter.mode == "client"


def test_an_object_without_a_uid_is_hashed_as_the_empty_string() -> None:
    """The server resolves a missing uid to "": such an object is in exactly one shard."""
    holder = next(s for s in (Shard.of(i, 4) for i in range(4)) if s.holds_hash(fnv1a64("")))
    for shard in (Shard.of(i, 4) for i in range(4)):
        body = list_body([None])
        page = ShardFilter(shard, "pods").page(page_from_list_body(body), None)
        assert len(page.items) == (1 if shard == holder else 0)


def test_dropped_events_leave_a_bookmark_at_their_resource_version() -> None:
    inside, outside = uid_in(HALF), uid_in(HALF, inside=False)
    events = [
        decode_event(watch_line("ADDED", "a", inside, 11)),
        decode_event(watch_line("MODIFIED", "b", outside, 12)),
        decode_event(watch_line("DELETED", "c", outside, 13)),
    ]
    shard_filter = ShardFilter(HALF, "pods")
    shard_filter.watch_started()
    kept = shard_filter.events(events)
    assert [(e.type, e.key, e.resource_version) for e in kept] == [
        (EventType.ADDED, "default/a", "11"),
        (EventType.BOOKMARK, "", "13"),
    ]
    assert shard_filter.mode == "client"


def test_events_all_in_the_shard_are_passed_as_they_are() -> None:
    events = [
        decode_event(watch_line("ADDED", f"a{n}", uid_in(HALF, start=n * 50), n + 1))
        for n in range(3)
    ]
    shard_filter = ShardFilter(HALF, "pods")
    shard_filter.watch_started()
    assert shard_filter.events(events) is events
    assert shard_filter.mode is None  # nothing said who filtered


def test_a_streaming_list_of_shard_objects_only_is_judged_server_filtered() -> None:
    end = orjson.dumps(
        {
            "type": "BOOKMARK",
            "object": {
                "kind": "Pod",
                "metadata": {
                    "resourceVersion": "20",
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            },
        }
    )
    shard_filter = ShardFilter(HALF, "pods")
    shard_filter.watch_started()
    kept = shard_filter.events(
        [decode_event(watch_line("ADDED", "a", uid_in(HALF), 5)), decode_event(end)]
    )
    assert len(kept) == 2
    assert shard_filter.mode == "server"


def test_the_whole_space_shard_holds_every_hash() -> None:
    whole = Shard(0, HASH_SPACE)
    assert whole.everything
    assert whole.holds_hash(0)
    assert whole.holds_hash(HASH_SPACE - 1)


def test_an_object_msgspec_cannot_read_is_sharded_by_its_own_uid() -> None:
    """Nested past msgspec's recursion limit (a custom resource may be): the tolerant scan
    finds the uid, so the object is in the shard its uid says, not in the one of ""."""
    assert not HALF.holds_hash(fnv1a64(""))  # so "" would drop the object
    uid = uid_in(HALF)
    deep = b"[" * 3000 + b"]" * 3000
    line = (
        b'{"type":"ADDED","object":{"kind":"Widget","apiVersion":"example.com/v1",'
        b'"metadata":{"name":"deep","namespace":"default","uid":"' + uid.encode() + b'",'
        b'"resourceVersion":"7"},"spec":' + deep + b"}}"
    )
    event = decode_event(line)
    shard_filter = ShardFilter(HALF, "widgets")
    shard_filter.watch_started()
    assert shard_filter.events([event]) == [event]
    assert shard_filter.mode is None


def test_a_receiver_puts_an_unreadable_object_in_the_shard_its_filter_does() -> None:
    """One reading of the uid for both sides: a receiver's ``uid_hash`` of an object
    msgspec cannot read is its metadata's uid, as the filter's, not the first "uid" in
    the text (a custom resource's sorted keys put ``ownerReferences`` before ``uid``)."""
    mine, owner = uid_in(HALF), "owner-uid"
    deep = b"[" * 3000 + b"]" * 3000
    body = (
        b'{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"deep",'
        b'"namespace":"default","ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap",'
        b'"name":"o","uid":"' + owner.encode() + b'"}],"resourceVersion":"7",'
        b'"uid":"' + mine.encode() + b'"},"spec":' + deep + b"}"
    )
    assert uid_of(body) == mine
    assert uid_hash(body) == fnv1a64(mine) - (1 << 63)
    assert uid_hash(body.decode()) == uid_hash(body)  # SQLite hands its text over as str
