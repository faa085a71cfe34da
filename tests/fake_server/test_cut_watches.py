"""``cut_watches``: ending the watches that are open now, cleanly or in the middle of a line."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from listwatch.testing import FakeApiServer
from tests.objects import pod

from .helpers import WAIT, EventReader, summary

PODS = "/api/v1/namespaces/default/pods"


def watch_params(rv: int, **extra: str) -> dict[str, str]:
    return {"watch": "1", "resourceVersion": str(rv), **extra}


async def read_until_broken(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Every byte of the body, and whether it ended broken (no final chunk)."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(response.content.readany(), WAIT):
            data += chunk
    except aiohttp.ClientPayloadError:
        return data, True
    return data, False


async def test_a_clean_cut_ends_every_open_watch_with_the_final_chunk(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    start = server.resource_version
    async with (
        http.get(PODS, params=watch_params(start)) as first,
        http.get(PODS, params=watch_params(start, allowWatchBookmarks="true")) as second,
    ):
        await server.wait_for_watchers(2)
        created = await server.create(pod("a"))
        first_reader, second_reader = EventReader(first), EventReader(second)
        assert summary(await first_reader.take(1)) == [
            ("ADDED", "a", created["metadata"]["resourceVersion"])
        ]
        assert server.cut_watches() == 2
        assert await first_reader.rest() == []
        assert summary(await second_reader.rest()) == [
            ("ADDED", "a", created["metadata"]["resourceVersion"])
        ]
    await server.wait_until(lambda s: s.active_watches == 0)


async def test_a_mid_line_cut_drops_the_connection_inside_an_event(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    async with http.get(PODS, params=watch_params(server.resource_version)) as response:
        await server.wait_for_watchers()
        assert server.cut_watches(mid_line=True) == 1
        data, broken = await read_until_broken(response)
    assert broken, "the chunked body must end without its final chunk"
    assert data
    assert not data.endswith(b"\n")  # the line was never finished
    assert data.startswith(b'{"type":"BOOKMARK"')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(data)
    await server.wait_until(lambda s: s.active_watches == 0)


async def test_a_cut_reaches_a_watch_busy_with_its_initial_events(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    # 20 MiB of initial events: more than the socket buffers hold, so the server is still
    # sending (waiting for the client to read) when the cut comes.
    count = 200
    for i in range(count):
        obj = pod(f"p{i:03}")
        obj["metadata"]["annotations"] = {"filler": "x" * 100_000}
        await server.create(obj)
    params = {
        "watch": "1",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    async with http.get(PODS, params=params) as response:
        await server.wait_for_watchers()
        assert server.cut_watches() == 1
        events = await EventReader(response).rest()
    assert len(events) < count  # ended before the initial events were all sent
    assert all(e["type"] == "ADDED" for e in events)  # and so without the end bookmark
    names = [e["object"]["metadata"]["name"] for e in events]
    assert names == [f"p{i:03}" for i in range(len(events))]


async def test_watches_that_start_after_a_cut_are_untouched(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    assert server.cut_watches() == 0
    async with http.get(PODS, params=watch_params(server.resource_version)) as response:
        await server.wait_for_watchers()
        created = await server.create(pod("late"))
        event = await EventReader(response).next()
    assert summary([event]) == [("ADDED", "late", created["metadata"]["resourceVersion"])]


async def test_a_cut_does_not_touch_lists_or_new_requests(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(pod("a"))
    async with http.get(PODS, params=watch_params(server.resource_version)) as response:
        await server.wait_for_watchers()
        server.cut_watches()
        assert await EventReader(response).rest() == []
    async with http.get(PODS) as listed:
        assert listed.status == 200
        assert [i["metadata"]["name"] for i in (await listed.json())["items"]] == ["a"]
