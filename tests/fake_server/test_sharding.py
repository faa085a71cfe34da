"""``shardSelector`` as kube-apiserver 1.36 serves it with ``ShardedListAndWatch`` on, and
ignores it without (tests/conformance/corpus/sharding*.json hold the real server's answers)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from listwatch import Shard
from listwatch._shard import fnv1a64
from listwatch.testing import FakeApiServer
from tests.fake_server.helpers import EventReader, names
from tests.objects import pod

PODS = "/api/v1/namespaces/default/pods"
HALVES = [Shard.of(0, 2), Shard.of(1, 2)]


async def create_pods(server: FakeApiServer, count: int) -> list[dict[str, Any]]:
    return [await server.create(pod(f"p{i:02}")) for i in range(count)]


def held(objects: list[dict[str, Any]], shard: Shard) -> list[str]:
    """Names of the objects ``shard`` holds, in key order."""
    return sorted(o["metadata"]["name"] for o in objects if shard.holds_uid(o["metadata"]["uid"]))


async def get(http: aiohttp.ClientSession, path: str, **query: str) -> tuple[int, Any]:
    async with http.get(path, params=query) as response:
        return response.status, await response.json()


async def test_a_shard_list_holds_its_objects_and_echoes_the_selector(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    created = await create_pods(server, 16)
    for shard in HALVES:
        status, body = await get(http, PODS, shardSelector=shard.selector)
        assert status == 200
        assert names(body["items"]) == held(created, shard)
        assert body["metadata"]["shardInfo"] == {"selector": shard.selector}
    assert 0 < len(held(created, HALVES[0])) < 16


async def test_the_echo_is_the_parsed_selector_written_out(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    await create_pods(server, 3)
    text = (
        " shardRange( object.metadata.uid ,'0x0000000000000000',\"0x8000000000000000\")"
        "||shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000') "
    )
    status, body = await get(http, PODS, shardSelector=text)
    assert status == 200
    assert len(body["items"]) == 3
    assert body["metadata"]["shardInfo"]["selector"] == (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') || "
        "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
    )


async def test_or_ranges_select_the_union_of_their_objects(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    created = await create_pods(server, 16)
    quarters = [Shard.of(i, 4) for i in range(4)]
    selector = f"{quarters[0].selector} || {quarters[2].selector}"
    _, body = await get(http, PODS, shardSelector=selector)
    assert names(body["items"]) == sorted(held(created, quarters[0]) + held(created, quarters[2]))


async def test_the_namespace_field_shards_by_the_namespace_s_hash(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    for namespace in ("team-a", "team-b", "team-c", "team-d"):
        await server.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        await server.create(pod("p", namespace))
    hashed = fnv1a64("team-b")
    selector = f"shardRange(object.metadata.namespace, '0x{hashed:016x}', '0x{hashed + 1:016x}')"
    _, body = await get(http, "/api/v1/pods", shardSelector=selector)
    assert [item["metadata"]["namespace"] for item in body["items"]] == ["team-b"]


REFUSALS = {
    "   ": "empty shard selector is not allowed; omit the parameter for unfiltered lists",
    "shardRange(object.metadata.uid, '0x0', '0x8000000000000000')": (
        'hexStart must be a 0x-prefixed 16-digit hex value, got "0x0" (did you mean '
        '"0x0000000000000000"?)'
    ),
    "shardRange(object.metadata.uid, '0x00000000000000AA', '0x8000000000000000')": (
        'hexStart: invalid hex character "A" in "0x00000000000000AA"'
    ),
    "shardRange(object.metadata.uid, '0x0000000000000000', '0x20000000000000000')": (
        "hexEnd: 17-digit hex value must be '0x10000000000000000' (2^64), got "
        '"0x20000000000000000"'
    ),
    "shardRange(object.metadata.uid, '0x8000000000000000', '0x0000000000000000')": (
        "shard range start 0x8000000000000000 must be less than end 0x0000000000000000"
    ),
    "shardRange(object.metadata.name, '0x0000000000000000', '0x8000000000000000')": (
        'unsupported field path "object.metadata.name"; supported: object.metadata.uid, '
        "object.metadata.namespace"
    ),
    "shardRange(object.metadata.uid, 1u, '0x8000000000000000')": (
        "hexStart must be a string literal, got uint64"
    ),
    "shardRange(object.metadata.uid, '0x0000000000000000')": (
        "shardRange() requires exactly 3 arguments, got 2"
    ),
    "size(object.metadata.uid)": (
        'unsupported function "size"; only shardRange() and || are allowed'
    ),
    "'shardRange'": "unexpected expression kind 5; expected shardRange() call or || operator",
    "shardRange(": (
        "CEL parse error: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', "
        "'.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, "
        "BYTES, IDENTIFIER}"
    ),
}


@pytest.mark.parametrize("watch", [False, True], ids=["list", "watch"])
@pytest.mark.parametrize("selector", list(REFUSALS))
async def test_a_bad_selector_is_a_reasonless_500_before_anything_is_read(
    server: FakeApiServer, http: aiohttp.ClientSession, selector: str, watch: bool
) -> None:
    query = {"shardSelector": selector, **({"watch": "true"} if watch else {})}
    status, body = await get(http, PODS, **query)
    assert status == 500
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"invalid shard selector: {REFUSALS[selector]}",
        "code": 500,
    }


async def test_an_empty_parameter_is_no_selector(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    await create_pods(server, 4)
    status, body = await get(http, PODS, shardSelector="")
    assert status == 200
    assert len(body["items"]) == 4
    assert "shardInfo" not in body["metadata"]


async def test_a_paged_shard_list_pages_through_the_shard_alone(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    created = await create_pods(server, 20)
    shard = Shard.of(1, 2)
    seen: list[str] = []
    query = {"limit": "3", "shardSelector": shard.selector}
    status, body = await get(http, PODS, **query)
    first = body
    while True:
        assert status == 200
        assert body["metadata"]["shardInfo"] == {"selector": shard.selector}
        seen += names(body["items"])
        token = body["metadata"].get("continue")
        if not token:
            break
        status, body = await get(http, PODS, **query, **{"continue": token})
    assert seen == held(created, shard)
    # The predicate's Empty() leaves the shard out: the count is of every pod from the
    # page's start, in the shard or not, less the limit (as recorded: list_shard_page1).
    assert first["metadata"]["remainingItemCount"] == 20 - 3


@pytest.mark.fake_apiserver(bookmark_interval=0.05)
async def test_a_shard_watch_sends_its_objects_and_bookmarks_past_the_others(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    shard = Shard.of(0, 2)
    _, listed = await get(http, PODS)
    query = {
        "watch": "true",
        "resourceVersion": listed["metadata"]["resourceVersion"],
        "allowWatchBookmarks": "true",
        "shardSelector": shard.selector,
    }
    async with http.get(PODS, params=query) as response:
        reader = EventReader(response)
        await server.wait_for_watchers(1)
        created = await create_pods(server, 12)
        extra = 0
        while shard.holds_uid(created[-1]["metadata"]["uid"]):  # end outside the shard
            created.append(await server.create(pod(f"x{extra}")))
            extra += 1
        expected = held(created, shard)
        last_rv = int(created[-1]["metadata"]["resourceVersion"])
        events = [await reader.next()]
        while (
            events[-1]["type"] != "BOOKMARK"
            or int(events[-1]["object"]["metadata"]["resourceVersion"]) < last_rv
        ):
            events.append(await reader.next())
    added = sorted(e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED")
    assert added == expected
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) == last_rv


async def test_a_streaming_list_sends_the_shard_s_objects_then_its_end(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    created = await create_pods(server, 12)
    shard = Shard.of(1, 2)
    query = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "shardSelector": shard.selector,
    }
    async with http.get(PODS, params=query) as response:
        reader = EventReader(response)
        events = [await reader.next()]
        while events[-1]["type"] != "BOOKMARK":
            events.append(await reader.next())
    assert sorted(e["object"]["metadata"]["name"] for e in events[:-1]) == held(created, shard)
    annotations = events[-1]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}


async def test_a_custom_resource_list_is_filtered_without_an_echo(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    """An ``UnstructuredList`` has no ``SetShardInfo``: the real server filters it silently."""
    server.register_resource("example.com", "v1", "widgets", "Widget")
    created = [
        await server.create(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": f"w{i:02}"}}
        )
        for i in range(12)
    ]
    shard = Shard.of(0, 2)
    _, body = await get(
        http, "/apis/example.com/v1/namespaces/default/widgets", shardSelector=shard.selector
    )
    assert names(body["items"]) == held(created, shard)
    assert "shardInfo" not in body["metadata"]


async def test_the_metadata_only_form_of_a_shard_list_has_no_echo(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    created = await create_pods(server, 12)
    shard = Shard.of(0, 2)
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    async with http.get(
        PODS, params={"shardSelector": shard.selector}, headers={"Accept": accept}
    ) as response:
        body = await response.json()
    assert body["kind"] == "PartialObjectMetadataList"
    assert names(body["items"]) == held(created, shard)
    assert "shardInfo" not in body["metadata"]


@pytest.mark.fake_apiserver(sharding=False)
async def test_without_the_gate_the_selector_is_ignored(
    server: FakeApiServer, http: aiohttp.ClientSession
) -> None:
    await create_pods(server, 6)
    for selector in (Shard.of(0, 4).selector, "shardRange(", "   "):
        status, body = await get(http, PODS, shardSelector=selector)
        assert status == 200
        assert len(body["items"]) == 6
        assert "shardInfo" not in body["metadata"]
    query = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "shardSelector": Shard.of(0, 4).selector,
    }
    async with http.get(PODS, params=query) as response:
        reader = EventReader(response)
        events = await reader.take(7)
    assert [e["type"] for e in events] == ["ADDED"] * 6 + ["BOOKMARK"]
