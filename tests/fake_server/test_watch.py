"""WATCH over HTTP: framing, start points, event types, bookmarks, WatchList, ends
(docs/kubernetes-semantics.md#watch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from listwatch.testing import FakeApiServer
from tests.objects import configmap, pod

from .helpers import WAIT, EventReader, summary

PODS = "/api/v1/namespaces/default/pods"


def watch_params(**params: str) -> dict[str, str]:
    return {"watch": "1", "timeoutSeconds": "30", **params}


class TypedWatch:
    """A kubernetes_asyncio ``Watch`` stream, read one event at a time."""

    def __init__(self, stream: AsyncIterator[dict[str, Any]]) -> None:
        self._stream = stream
        self._first: asyncio.Task[dict[str, Any]] | None = asyncio.ensure_future(anext(stream))

    async def next(self) -> dict[str, Any]:
        if self._first is not None:
            first, self._first = self._first, None
            return await asyncio.wait_for(first, WAIT)
        return await asyncio.wait_for(anext(self._stream), WAIT)


async def start_watch(
    server: FakeApiServer, w: watch.Watch, func: Any, *args: Any, **kwargs: Any
) -> TypedWatch:
    """Open a typed watch and wait until the server streams it."""
    kwargs.setdefault("timeout_seconds", 30)
    before = server.active_watches
    typed = TypedWatch(w.stream(func, *args, **kwargs))
    await server.wait_for_watchers(before + 1)
    return typed


def raw(event: dict[str, Any]) -> tuple[str, str, str]:
    meta = event["raw_object"]["metadata"]
    return event["type"], meta.get("name", ""), meta.get("resourceVersion", "")


# --------------------------------------------------------------------------- framing


async def test_headers_are_flushed_before_the_first_event(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    now = str(server.resource_version)
    async with http.get(PODS, params=watch_params(resourceVersion=now)) as response:
        # We hold the response, so the status line and headers arrived with no event yet.
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.content.at_eof() is False
        created = await server.create(pod("a"))
        event = await EventReader(response).next()

    assert event["type"] == "ADDED"
    assert event["object"]["kind"] == "Pod"
    assert event["object"]["apiVersion"] == "v1"
    assert event["object"]["metadata"] == created["metadata"]


async def test_each_event_is_one_json_line(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(pod("a"))
    await server.create(pod("b"))
    async with http.get(PODS, params=watch_params(resourceVersion="0", timeoutSeconds="1")) as r:
        body = await r.read()

    lines = body.split(b"\n")
    assert lines[-1] == b""
    assert [line.count(b"\n") for line in lines] == [0, 0, 0]
    assert all(line.startswith(b'{"type":"ADDED","object":{') for line in lines[:-1])


# --------------------------------------------------------------------------- start points


async def test_watch_from_unset_rv_lists_state_then_changes(
    server: FakeApiServer, core: client.CoreV1Api
):
    b = await server.create(pod("b"))
    a = await server.create(pod("a"))
    async with watch.Watch() as w:
        stream = await start_watch(server, w, core.list_namespaced_pod, "default")
        initial = [await stream.next(), await stream.next()]
        modified = await server.replace({**a, "spec": {"containers": []}})
        deleted = await server.delete(b)
        changes = [await stream.next(), await stream.next()]

    # Synthetic ADDEDs in key order, each with its own RV (not RV order).
    assert [raw(e) for e in initial] == [
        ("ADDED", "a", a["metadata"]["resourceVersion"]),
        ("ADDED", "b", b["metadata"]["resourceVersion"]),
    ]
    assert [raw(e) for e in changes] == [
        ("MODIFIED", "a", modified["metadata"]["resourceVersion"]),
        ("DELETED", "b", deleted["metadata"]["resourceVersion"]),
    ]


async def test_watch_from_rv_zero_lists_state(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(pod("a"))
    async with http.get(PODS, params=watch_params(resourceVersion="0")) as r:
        events = await EventReader(r).take(1)
    assert summary(events) == [("ADDED", "a", str(server.resource_version))]


async def test_watch_from_rv_x_sends_only_later_events(
    server: FakeApiServer, core: client.CoreV1Api
):
    a = await server.create(pod("a"))
    b = await server.create(pod("b"))
    async with watch.Watch() as w:
        stream = await start_watch(
            server,
            w,
            core.list_namespaced_pod,
            "default",
            resource_version=a["metadata"]["resourceVersion"],
        )
        first = await stream.next()
        c = await server.create(pod("c"))
        second = await stream.next()

    assert raw(first) == ("ADDED", "b", b["metadata"]["resourceVersion"])
    assert raw(second) == ("ADDED", "c", c["metadata"]["resourceVersion"])


async def test_deleted_event_carries_the_deletion_rv(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    created = await server.create(pod("a", app="web"))
    now = str(server.resource_version)
    async with http.get(PODS, params=watch_params(resourceVersion=now)) as response:
        final = await server.delete(created)
        event = await EventReader(response).next()

    assert event["type"] == "DELETED"
    deletion_rv = final["metadata"]["resourceVersion"]
    assert int(deletion_rv) == int(now) + 1
    assert event["object"]["metadata"]["resourceVersion"] == deletion_rv
    assert event["object"]["metadata"]["labels"] == {"app": "web"}


async def test_watch_from_a_future_rv_waits_for_it(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    future = server.resource_version + 2
    async with http.get(PODS, params=watch_params(resourceVersion=str(future))) as response:
        assert response.status == 200
        await server.create(pod("a"))
        await server.create(pod("b"))  # reaches the RV: still nothing after it
        c = await server.create(pod("c"))
        event = await EventReader(response).next()

    assert summary([event]) == [("ADDED", "c", c["metadata"]["resourceVersion"])]


async def test_other_resources_and_namespaces_are_not_sent(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    now = str(server.resource_version)
    async with http.get(PODS, params=watch_params(resourceVersion=now)) as response:
        await server.create(configmap("cm"))
        await server.create(pod("elsewhere", namespace="kube-system"))
        mine = await server.create(pod("mine"))
        event = await EventReader(response).next()

    assert summary([event]) == [("ADDED", "mine", mine["metadata"]["resourceVersion"])]


async def test_all_namespaces_watch(server: FakeApiServer, http: aiohttp.ClientSession):
    now = str(server.resource_version)
    async with http.get("/api/v1/pods", params=watch_params(resourceVersion=now)) as response:
        await server.create(pod("a", namespace="kube-system"))
        await server.create(pod("b"))
        events = await EventReader(response).take(2)
    assert [(e["object"]["metadata"]["namespace"], e["type"]) for e in events] == [
        ("kube-system", "ADDED"),
        ("default", "ADDED"),
    ]


# --------------------------------------------------------------------------- selectors


async def test_label_selector_transitions_become_added_and_deleted(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    obj = await server.create(pod("a", app="db"))
    params = watch_params(resourceVersion=str(server.resource_version), labelSelector="app=web")
    async with http.get(PODS, params=params) as response:
        reader = EventReader(response)

        def relabel(current: dict[str, Any], **labels: str) -> dict[str, Any]:
            return {**current, "metadata": {**current["metadata"], "labels": labels}}

        web = await server.replace(relabel(obj, app="web"))
        added = await reader.next()
        web2 = await server.replace(relabel(web, app="web", tier="1"))
        modified = await reader.next()
        db = await server.replace(relabel(web2, app="db"))
        removed = await reader.next()
        await server.delete(db)  # no longer matching: not sent
        back = await server.create(pod("b", app="web"))
        last = await reader.next()

    assert added["type"] == "ADDED"
    assert added["object"]["metadata"]["resourceVersion"] == web["metadata"]["resourceVersion"]
    assert modified["type"] == "MODIFIED"
    # Stops matching: DELETED with the previous content at the event's RV.
    assert removed["type"] == "DELETED"
    assert removed["object"]["metadata"]["labels"] == {"app": "web", "tier": "1"}
    assert removed["object"]["metadata"]["resourceVersion"] == db["metadata"]["resourceVersion"]
    assert summary([last]) == [("ADDED", "b", back["metadata"]["resourceVersion"])]


async def test_field_selector_watch(server: FakeApiServer, core: client.CoreV1Api):
    await server.create(pod("a"))
    await server.create(pod("b"))
    async with watch.Watch() as w:
        stream = await start_watch(
            server, w, core.list_namespaced_pod, "default", field_selector="metadata.name=b"
        )
        first = await stream.next()
    assert raw(first)[:2] == ("ADDED", "b")


async def test_watch_one_object_by_its_path(server: FakeApiServer, http: aiohttp.ClientSession):
    await server.create(pod("a"))
    b = await server.create(pod("b"))
    params = watch_params(resourceVersion="0")
    async with http.get(f"{PODS}/b", params=params) as response:
        reader = EventReader(response)
        first = await reader.next()
        await server.create(pod("c"))
        await server.replace({**b, "metadata": {**b["metadata"], "labels": {"x": "y"}}})
        second = await reader.next()
    async with http.get(f"{PODS}/b", params={**params, "fieldSelector": "metadata.name=a"}) as bad:
        refused = await bad.json()

    assert [e["object"]["metadata"]["name"] for e in (first, second)] == ["b", "b"]
    assert second["type"] == "MODIFIED"
    assert bad.status == 400
    assert refused["message"] == "fieldSelector metadata.name doesn't match requested name"


async def test_bad_selector_on_watch_is_400(http: aiohttp.ClientSession):
    async with http.get(PODS, params=watch_params(labelSelector="app in (")) as response:
        assert response.status == 400
        assert (await response.json())["reason"] == "BadRequest"


# --------------------------------------------------------------------------- watch flag


@pytest.mark.parametrize("value", ["1", "true", "True", "", "yes"])
async def test_any_watch_value_but_0_or_false_watches(
    server: FakeApiServer, http: aiohttp.ClientSession, value: str
):
    await server.create(pod("a"))
    params = {"watch": value, "timeoutSeconds": "30", "resourceVersion": "0"}
    async with http.get(PODS, params=params) as response:
        events = await EventReader(response).take(1)
    assert summary(events)[0][:2] == ("ADDED", "a")


@pytest.mark.parametrize("value", ["0", "false", "FALSE"])
async def test_watch_0_or_false_lists(http: aiohttp.ClientSession, value: str):
    async with http.get(PODS, params={"watch": value}) as response:
        assert (await response.json())["kind"] == "PodList"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/watch/namespaces/default/pods",
        "/api/v1/watch/pods",
        "/api/v1/watch/namespaces/default/pods/a",
    ],
)
async def test_legacy_watch_paths(server: FakeApiServer, http: aiohttp.ClientSession, path: str):
    await server.create(pod("a"))
    params = {"timeoutSeconds": "30", "resourceVersion": "0"}
    async with http.get(path, params=params) as response:
        events = await EventReader(response).take(1)
    assert summary(events)[0][:2] == ("ADDED", "a")


# --------------------------------------------------------------------------- bookmarks


@pytest.mark.fake_apiserver(bookmark_interval=0.05)
async def test_bookmark_carries_the_rv_when_asked(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    now = str(server.resource_version)
    params = watch_params(resourceVersion=now, allowWatchBookmarks="true")
    async with http.get(PODS, params=params) as response:
        reader = EventReader(response)
        mine = await server.create(pod("a"))
        added = await reader.next()
        other = await server.create(configmap("cm"))  # moves the RV, not sent itself
        bookmark = await reader.next()

    assert summary([added]) == [("ADDED", "a", mine["metadata"]["resourceVersion"])]
    # Not a bookmark at the pod's RV (already sent): the first one is newer.
    assert bookmark == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": other["metadata"]["resourceVersion"]},
            "spec": {"containers": None},  # the Go type's zero value, as kube-apiserver sends
            "status": {},
        },
    }


@pytest.mark.fake_apiserver(bookmark_interval=0.05)
async def test_no_bookmarks_unless_asked(server: FakeApiServer, http: aiohttp.ClientSession):
    now = str(server.resource_version)
    async with http.get(PODS, params=watch_params(resourceVersion=now)) as response:
        reader = EventReader(response)
        await server.create(configmap("cm"))
        # Give bookmark ticks a chance to (wrongly) fire: wait for a request round trip
        # of another watch that does get bookmarks.
        params = watch_params(resourceVersion=now, allowWatchBookmarks="1")
        async with http.get(PODS, params=params) as other:
            assert (await EventReader(other).next())["type"] == "BOOKMARK"
        mine = await server.create(pod("a"))
        event = await reader.next()
    assert summary([event]) == [("ADDED", "a", mine["metadata"]["resourceVersion"])]


async def test_bookmark_before_the_deadline(server: FakeApiServer, http: aiohttp.ClientSession):
    # bookmark_interval is 60 s: the only bookmark is the one ~2 s before the 3 s deadline.
    now = str(server.resource_version)
    params = watch_params(resourceVersion=now, allowWatchBookmarks="true", timeoutSeconds="3")
    async with http.get(PODS, params=params) as response:
        other = await server.create(configmap("cm"))
        events = await EventReader(response).rest()
    assert summary(events) == [("BOOKMARK", "", other["metadata"]["resourceVersion"])]


# --------------------------------------------------------------------------- WatchList


async def test_watch_list_initial_events_end_with_the_annotated_bookmark(
    server: FakeApiServer, core: client.CoreV1Api
):
    await server.create(pod("b"))
    await server.create(pod("a"))
    snapshot_rv = str(server.resource_version)
    async with watch.Watch() as w:
        stream = await start_watch(
            server,
            w,
            core.list_namespaced_pod,
            "default",
            send_initial_events=True,
            resource_version_match="NotOlderThan",
            allow_watch_bookmarks=True,
        )
        events = [await stream.next() for _ in range(3)]
        later = await server.create(pod("c"))
        events.append(await stream.next())

    assert [raw(e)[:2] for e in events[:2]] == [("ADDED", "a"), ("ADDED", "b")]
    assert events[2]["type"] == "BOOKMARK"
    assert events[2]["raw_object"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "resourceVersion": snapshot_rv,
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
        "spec": {"containers": None},
        "status": {},
    }
    assert raw(events[3]) == ("ADDED", "c", later["metadata"]["resourceVersion"])


async def test_watch_list_from_an_old_compacted_rv_still_gets_state(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(pod("a"))
    old = str(server.resource_version - 1)
    server.compact()
    params = watch_params(
        resourceVersion=old,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
    )
    async with http.get(PODS, params=params) as response:
        events = await EventReader(response).take(2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]


async def test_watch_list_defaulting_adds_the_end_bookmark(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(pod("a"))
    params = watch_params(resourceVersion="0", allowWatchBookmarks="true")
    async with http.get(PODS, params=params) as response:
        events = await EventReader(response).take(2)
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


@pytest.mark.fake_apiserver(watch_list=False)
async def test_no_end_bookmark_without_the_watch_list_gate(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(pod("a"))
    params = watch_params(resourceVersion="0", allowWatchBookmarks="true")
    async with http.get(PODS, params=params) as response:
        reader = EventReader(response)
        first = await reader.next()
        later = await server.create(pod("b"))
        second = await reader.next()
    assert summary([first])[0][:2] == ("ADDED", "a")
    assert summary([second]) == [("ADDED", "b", later["metadata"]["resourceVersion"])]


async def test_send_initial_events_false_starts_now(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await server.create(pod("old"))
    params = watch_params(
        sendInitialEvents="false", resourceVersionMatch="NotOlderThan", allowWatchBookmarks="1"
    )
    async with http.get(PODS, params=params) as response:
        new = await server.create(pod("new"))
        event = await EventReader(response).next()
    assert summary([event]) == [("ADDED", "new", new["metadata"]["resourceVersion"])]


@pytest.mark.fake_apiserver(too_large_wait=0.2)
async def test_watch_list_from_a_future_rv_ends_with_a_504_error_event(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    future = str(server.resource_version + 10)
    params = watch_params(
        resourceVersion=future, sendInitialEvents="true", resourceVersionMatch="NotOlderThan"
    )
    async with http.get(PODS, params=params) as response:
        assert response.status == 200
        events = await EventReader(response).rest()
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    error = events[0]["object"]
    assert error["code"] == 504
    assert error["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"sendInitialEvents": "true"},
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
            "resourceVersionMatch to NotOlderThan",
        ),
        (
            {"resourceVersionMatch": "NotOlderThan", "resourceVersion": "5"},
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch "
            "unless sendInitialEvents is provided",
        ),
        (
            {"sendInitialEvents": "true", "resourceVersionMatch": "Exact"},
            "[resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
            "resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value: "
            '"Exact": supported values: "NotOlderThan"]',
        ),
        (
            {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan", "continue": "x"},
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue "
            "is provided",
        ),
    ],
)
async def test_watch_options_validation_is_422(
    http: aiohttp.ClientSession, params: dict[str, str], message: str
):
    async with http.get(PODS, params=watch_params(**params)) as response:
        body = await response.json()
    assert response.status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'


@pytest.mark.fake_apiserver(watch_list=False)
async def test_send_initial_events_without_the_gate_is_422(http: aiohttp.ClientSession):
    params = watch_params(sendInitialEvents="true", resourceVersionMatch="NotOlderThan")
    async with http.get(PODS, params=params) as response:
        body = await response.json()
    assert response.status == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: sendInitialEvents is forbidden for watch unless the "
            "WatchList feature gate is enabled",
            "field": "sendInitialEvents",
        }
    ]


@pytest.mark.fake_apiserver(request_watch_progress=False)
async def test_without_request_watch_progress_a_streaming_list_is_one_error_event(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    """etcd 3.5.1 (before 3.5.13): kube-apiserver's cacher answers 200, one ERROR event (500
    InternalError) and the end; a plain watch is served as ever."""
    await server.create(pod("a"))
    params = watch_params(
        sendInitialEvents="true", resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true"
    )
    async with http.get(PODS, params=params) as response:
        assert response.status == 200
        events = await EventReader(response).rest()
    assert events == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "a watch stream was requested by the client but the required "
                "storage feature RequestWatchProgress is disabled",
                "reason": "InternalError",
                "code": 500,
            },
        }
    ]
    params = watch_params(resourceVersion=str(server.resource_version))
    async with http.get(PODS, params=params) as response:
        later = await server.create(pod("b"))
        event = await EventReader(response).next()
    assert summary([event]) == [("ADDED", "b", later["metadata"]["resourceVersion"])]


# --------------------------------------------------------------------------- ends


async def test_timeout_seconds_ends_the_stream_cleanly(
    server: FakeApiServer, core: client.CoreV1Api
):
    await server.create(pod("a"))
    async with watch.Watch() as w:
        events = [e async for e in w.stream(core.list_namespaced_pod, "default", timeout_seconds=1)]
    assert [raw(e)[:2] for e in events] == [("ADDED", "a")]


async def test_timeout_ends_with_the_final_chunk(server: FakeApiServer):
    # Raw socket: the body must end with the zero-length chunk, with no event before it.
    port = int(server.url.rsplit(":", 1)[1])
    ssl = server.ssl_context if server.tls else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl)
    rv = server.resource_version
    request = (
        f"GET {PODS}?watch=1&timeoutSeconds=1&resourceVersion={rv} HTTP/1.1\r\n"
        f"Host: test\r\nAuthorization: Bearer {server.token}\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode())
    data = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"0\r\n\r\n"


async def test_stopping_the_server_ends_watches_cleanly():
    async with (
        FakeApiServer() as other,
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {other.token}"},
            connector=aiohttp.TCPConnector(ssl=other.ssl_context),
        ) as session,
    ):
        async with session.get(f"{other.url}{PODS}", params=watch_params(resourceVersion="1")) as r:
            await other.wait_for_watchers()
            await other.stop()
            events = await EventReader(r).rest()
        assert events == []
        assert other.active_watches == 0


async def test_watcher_behind_compaction_is_closed_cleanly(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    now = str(server.resource_version)
    async with http.get(PODS, params=watch_params(resourceVersion=now)) as response:
        await server.wait_for_watchers()
        # The store's writes never suspend, so the watcher cannot run before its events
        # are compacted away (as a watcher too slow for the watch cache's window).
        for name in ["a", "b", "c"]:
            await server.create(pod(name))
        server.compact()
        events = await EventReader(response).rest()
    assert events == []


# --------------------------------------------------------------------------- too old, bad RV


async def compacted_rv(server: FakeApiServer) -> tuple[str, int]:
    """An RV that compaction made too old, and the compaction point."""
    await server.create(pod("a"))
    old = str(server.resource_version)
    await server.create(pod("b"))
    server.compact()
    return old, server.resource_version


async def test_too_old_rv_is_200_and_one_error_event(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    old, oldest = await compacted_rv(server)
    async with http.get(PODS, params=watch_params(resourceVersion=old)) as response:
        assert response.status == 200
        events = await EventReader(response).rest()

    assert events == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old} ({oldest})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


async def test_too_old_rv_reaches_the_typed_client_as_410(
    server: FakeApiServer, core: client.CoreV1Api
):
    old, _ = await compacted_rv(server)
    async with watch.Watch() as w:
        stream = w.stream(
            core.list_namespaced_pod, "default", resource_version=old, timeout_seconds=5
        )
        with pytest.raises(ApiException) as caught:
            await anext(stream)
    assert caught.value.status == 410


@pytest.mark.fake_apiserver(stale_watch="http-410")
async def test_too_old_rv_as_http_410(server: FakeApiServer, http: aiohttp.ClientSession):
    old, oldest = await compacted_rv(server)
    async with http.get(PODS, params=watch_params(resourceVersion=old)) as response:
        body = await response.json()
    assert response.status == 410
    assert body["reason"] == "Expired"
    assert body["message"] == f"too old resource version: {old} ({oldest})"


@pytest.mark.fake_apiserver(stale_watch="empty-200")
async def test_too_old_rv_as_an_empty_200(server: FakeApiServer, http: aiohttp.ClientSession):
    old, _ = await compacted_rv(server)
    async with http.get(PODS, params=watch_params(resourceVersion=old)) as response:
        body = await response.read()
    assert response.status == 200
    assert body == b""


@pytest.mark.fake_apiserver(history_limit=2)
async def test_history_window_makes_old_watch_rvs_too_old(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    start = str(server.resource_version)
    for name in ["a", "b", "c"]:
        await server.create(pod(name))
    async with http.get(PODS, params=watch_params(resourceVersion=start)) as response:
        events = await EventReader(response).rest()
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410


async def test_a_restart_comes_back_on_the_same_address_with_a_fresh_watch_cache(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    """As kube-apiserver: its watch cache starts afresh from one LIST of etcd, so a watch
    from an RV older than the restart is too old, while lists, at old RVs too, still work
    (etcd keeps the history until compaction)."""
    await server.create(pod("a"))
    before = str(server.resource_version)
    url = server.url
    await server.stop()
    await server.create(pod("b"))  # written while the server was down
    await server.start()
    restarted_at = server.resource_version
    assert server.url == url
    async with http.get(PODS, params=watch_params(resourceVersion=before)) as response:
        assert response.status == 200
        events = await EventReader(response).rest()
    assert [(e["type"], e["object"]["code"]) for e in events] == [("ERROR", 410)]
    message = events[0]["object"]["message"]
    assert message == f"too old resource version: {before} ({restarted_at})"
    async with http.get(PODS, params={"resourceVersion": before, "limit": "10"}) as response:
        assert response.status == 200
        listed = await response.json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]
    params = watch_params(resourceVersion=str(restarted_at))
    async with http.get(PODS, params=params) as response:
        await server.wait_for_watchers(1)
        await server.create(pod("c"))
        events = await EventReader(response).take(1)
    assert summary(events) == [("ADDED", "c", str(server.resource_version))]


async def test_unparseable_watch_rv_is_500_without_reason(http: aiohttp.ClientSession):
    async with http.get(PODS, params=watch_params(resourceVersion="abc")) as response:
        body = await response.json()
    assert response.status == 500
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": '
        "invalid syntax",
        "code": 500,
    }
