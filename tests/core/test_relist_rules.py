"""Each rule of the list-then-watch loop, over HTTP, asserted on the server's request log."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from listwatch import (
    Backoff,
    Forbidden,
    InvalidRequest,
    ListWatch,
    Phase,
    ResourceNotFound,
    Syncer,
)
from listwatch.testing import FakeApiServer, Fault
from tests.core.helpers import Mirror, make_syncer, server_state
from tests.objects import configmap, pod


def lists(server: FakeApiServer, path: str = "/api/v1/pods") -> list[Any]:
    return [r for r in server.requests if r.path == path and not r.watch]


def watches(server: FakeApiServer, path: str = "/api/v1/pods") -> list[Any]:
    return [r for r in server.requests if r.path == path and r.watch]


async def converge(server: FakeApiServer, mirror: Mirror) -> None:
    expected = server_state(server, "v1", "Pod")
    await mirror.wait_for(lambda m: m.state() == expected)


async def test_watch_cut_resumes_from_the_bookmark_without_a_list(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))
    server.inject(Fault.cut_stream(after_events=1), path="/api/v1/pods", watch=True)
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        seen = server.request_count
        # A change elsewhere moves the global RV; the watch's bookmark carries it, then the
        # stream is cut.
        await server.create(configmap("elsewhere"))
        bookmark_rv = str(server.resource_version)
        second = await server.wait_for_request(
            lambda r: r.watch and r.path == "/api/v1/pods", start=seen
        )
        assert second.query["resourceVersion"] == bookmark_rv
        await server.create(pod("b"))
        await converge(server, mirror)
    assert len(lists(server)) == 1
    assert syncer.status.restarts == 0
    assert mirror.violations == []


async def test_a_clean_close_rewatches_without_a_list(
    server: FakeApiServer, api_client: Any
) -> None:
    """The server ends the watch at timeoutSeconds (a clean end of the chunked body)."""
    await server.create(pod("a"))
    good = ListWatch.from_client(api_client, "pods")

    def short_watches(options: Any) -> Any:
        return good.watch(dataclasses.replace(options, timeout_seconds=1))

    mirror = Mirror()
    source = ListWatch(list_func=good.list, watch_func=short_watches)
    async with make_syncer(source, mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        seen = server.request_count
        await server.create(pod("b"))
        again = await server.wait_for_request(
            lambda r: r.watch and r.path == "/api/v1/pods", start=seen
        )
        await server.create(pod("c"))
        await converge(server, mirror)
    assert int(again.query["resourceVersion"]) > int(mirror.snapshots[0].resource_version)
    assert len(lists(server)) == 1
    assert syncer.status.restarts == 0


async def test_a_silent_watch_is_presumed_dead_and_resumed(
    server: FakeApiServer, api_client: Any
) -> None:
    """No byte for longer than idle_timeout (no changes, so no bookmarks either)."""
    await server.create(pod("a"))
    mirror = Mirror()
    source = ListWatch.from_client(api_client, "pods", idle_timeout=1.2)
    async with make_syncer(source, mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        seen = server.request_count
        again = await server.wait_for_request(
            lambda r: r.watch and r.path == "/api/v1/pods", start=seen
        )
    assert again.query["resourceVersion"] == mirror.snapshots[0].resource_version
    assert len(lists(server)) == 1
    assert syncer.status.restarts == 0


async def test_bookmarks_advance_the_batch_resource_version(
    server: FakeApiServer, api_client: Any
) -> None:
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(configmap("elsewhere"))
        target = str(server.resource_version)
        await mirror.wait_for(lambda m: any(b.resource_version == target for b in m.batches))
    bookmark_batch = next(b for b in mirror.batches if b.resource_version == target)
    assert dict(bookmark_batch.events) == {}


@pytest.mark.parametrize(
    "fault",
    [Fault.error_event(after_events=0, code=410), Fault.gone()],
    ids=["error-event", "http-status"],
)
async def test_410_in_any_form_relists(
    server: FakeApiServer, api_client: Any, fault: Fault
) -> None:
    await server.create(pod("a"))
    server.inject(fault, path="/api/v1/pods", watch=True)
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
        await server.wait_for_watchers(1)
        await server.create(pod("b"))
        await converge(server, mirror)
    assert "ResourceExpired" in status.recent_restarts[0].reason
    assert len(lists(server)) == 2
    assert mirror.violations == []


async def test_a_compacted_resume_point_relists(server: FakeApiServer, api_client: Any) -> None:
    """The stream is cut; while the client is away an object is deleted and etcd compacts past
    the resume point: the re-watch gets 410, and the next snapshot no longer has the object."""
    await server.create(pod("a"))
    await server.create(pod("doomed"))
    server.inject(Fault.cut_stream(after_events=1), path="/api/v1/pods", watch=True)
    good = ListWatch.from_client(api_client, "pods")
    calls = 0

    async def watch(options: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            await server.create(pod("while-away"))
            await server.delete(pod("doomed"))
            server.compact()
        async for event in good.watch(options):
            yield event

    mirror = Mirror()
    async with make_syncer(ListWatch(list_func=good.list, watch_func=watch), mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("b"))
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
        await converge(server, mirror)
    assert "ResourceExpired" in status.recent_restarts[0].reason
    assert "default/while-away" in mirror.objects
    assert "default/doomed" not in mirror.objects
    assert all(item["metadata"]["name"] != "doomed" for item in mirror.snapshots[-1].items)
    assert len(lists(server)) == 2
    assert mirror.violations == []


async def test_the_empty_short_watch_relists_after_backoff(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))
    server.inject(Fault.empty_response(), path="/api/v1/pods", watch=True)
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
    assert "VeryShortWatch" in status.recent_restarts[0].reason
    assert len(lists(server)) == 2


async def test_a_streaming_lists_watch_that_ends_after_one_event_is_resumed_not_relisted(
    server: FakeApiServer, api_client: Any
) -> None:
    """Its initial events were its start: one event and then the end (a deleted CRD's one
    object, say) is a normal close. Taken for a very short watch, it would relist, and
    that event's batch would be dropped with the generation."""
    await server.create(pod("a"))
    mirror = Mirror()
    source = ListWatch.from_client(api_client, "pods")
    async with make_syncer(source, mirror, list_strategy="stream") as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(pod("b"))
        await mirror.wait_for(lambda m: "default/b" in m.objects)
        server.cut_watches()
        await server.wait_until(lambda s: len(watches(s)) == 2 and s.active_watches == 1)
        await server.create(pod("c"))
        await converge(server, mirror)
        status = syncer.status
    assert (status.generation, status.restarts) == (1, 0)
    assert watches(server)[1].query["resourceVersion"] == mirror.state()["default/b"]
    assert lists(server) == []


class RecordingBackoff(Backoff):
    """Records how long each wait would be (its own delays are a token time, so a wait
    that long was the server's Retry-After), and does not wait."""

    def __init__(self) -> None:
        super().__init__(initial=0.01, cap=0.02)
        self.asked: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.asked.append(delay)
        await asyncio.sleep(0)


@pytest.mark.parametrize("plain_text", [False, True], ids=["status-json", "apf-plain-text"])
async def test_retry_after_on_list_retries_the_same_request(
    server: FakeApiServer, api_client: Any, plain_text: bool
) -> None:
    server.inject(
        Fault.too_many_requests(retry_after=3, plain_text=plain_text),
        path="/api/v1/pods",
        watch=False,
    )
    backoff = RecordingBackoff()
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror, backoff=backoff) as s:
        await s.wait_synced()
    assert backoff.asked == [3.0]
    assert s.status.restarts == 0
    first, second = lists(server)[:2]
    assert first.query == second.query


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503, retry_after=2), Fault.too_many_requests(retry_after=2, plain_text=True)],
    ids=["503", "429"],
)
async def test_retry_after_on_watch_rewatches_the_same_rv(
    server: FakeApiServer, api_client: Any, fault: Fault
) -> None:
    server.inject(fault, path="/api/v1/pods", watch=True)
    backoff = RecordingBackoff()
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror, backoff=backoff) as s:
        await s.wait_synced()
        await server.wait_for_watchers(1)
    first, second = watches(server)[:2]
    assert first.query["resourceVersion"] == second.query["resourceVersion"]
    assert backoff.asked == [2.0]
    assert len(lists(server)) == 1


async def test_5xx_without_retry_after_backs_off_and_relists(
    server: FakeApiServer, api_client: Any
) -> None:
    server.inject(Fault.status(500), path="/api/v1/pods", watch=True)
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
    assert "ServerError" in status.recent_restarts[0].reason


async def test_a_refused_watch_connection_rewatches_without_a_list(
    server: FakeApiServer, api_client: Any
) -> None:
    """The first watch goes to a port nobody listens on; the second to the server."""
    async with FakeApiServer() as doomed:
        dead_url = doomed.url
    config = Configuration(host=dead_url)
    async with ApiClient(config) as dead_client:
        good = ListWatch.from_client(api_client, "pods")
        dead = ListWatch.from_client(dead_client, "pods")
        calls = 0

        def watch(options: Any) -> Any:
            nonlocal calls
            calls += 1
            return (dead if calls == 1 else good).watch(options)

        source = ListWatch(list_func=good.list, watch_func=watch)
        mirror = Mirror()
        async with make_syncer(source, mirror) as syncer:
            await syncer.wait_synced()
            await server.wait_for_watchers(1)
    assert calls == 2
    assert syncer.status.restarts == 0
    assert len(lists(server)) == 1


async def test_an_expired_continue_token_fails_the_snapshot_and_lists_again(
    server: FakeApiServer, api_client: Any
) -> None:
    """The pages already handed to the receiver cannot be completed consistently: the 410
    comes out of the receiver's iteration, and the next generation lists from page 1."""
    for i in range(6):
        await server.create(pod(f"p{i}"))
    client_source = ListWatch.from_client(api_client, "pods")
    pages = 0

    async def list_then_compact(options: Any) -> Any:
        nonlocal pages
        page = await client_source.list(options)
        pages += 1
        if pages == 1:
            await server.create(pod("late"))
            server.compact()
        return page

    mirror = Mirror()
    source = ListWatch(list_func=list_then_compact, watch_func=client_source.watch)
    async with make_syncer(source, mirror, page_size=2) as syncer:
        status = await syncer.wait_synced()
    assert status.generation == 2
    assert [r.reason.split(":")[0] for r in status.recent_restarts] == ["ResourceExpired"]
    assert "default/late" in mirror.objects
    assert [len(s.items) for s in mirror.snapshots] == [7]  # the cut one never completed
    queries = [r.query for r in lists(server)]
    assert "continue" not in queries[0]
    assert "continue" in queries[1]  # answered 410
    assert "continue" not in queries[2]  # the next generation's list


async def test_a_large_object_passes_and_one_over_the_cap_is_named(
    server: FakeApiServer, api_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listwatch")
    mirror = Mirror()
    source = ListWatch.from_client(api_client, "configmaps", max_event_bytes=6 * 1024 * 1024)
    async with make_syncer(source, mirror) as syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
        await server.create(configmap("five", blob="x" * (5 * 1024 * 1024)))
        await mirror.wait_for(lambda m: "default/five" in m.objects)
        assert syncer.status.restarts == 0
        await server.create(configmap("seven", blob="y" * (7 * 1024 * 1024)))
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
        await mirror.wait_for(lambda m: "default/seven" in m.objects)
    reason = status.recent_restarts[0].reason
    assert "EventTooLarge" in reason
    assert "default/seven" in reason
    assert "max_event_bytes=6291456" in reason
    assert "yyyy" not in caplog.text


async def test_a_malformed_line_leads_to_recovery(server: FakeApiServer, api_client: Any) -> None:
    await server.create(pod("a"))
    server.inject(Fault.malformed_line(after_events=0), path="/api/v1/pods", watch=True)
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        status = await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
        await server.wait_for_watchers(1)
        await server.create(pod("b"))
        await converge(server, mirror)
    assert "MalformedEvent" in status.recent_restarts[0].reason
    assert mirror.violations == []


async def test_an_unknown_resource_fails_at_once(api_client: Any) -> None:
    """A 404 on LIST (with version= nothing is resolved first; an unresolved name is
    tests/core/test_resource_names.py's)."""
    source = ListWatch.from_client(api_client, "nosuchthings", version="v1")
    syncer = make_syncer(source, Mirror())
    with pytest.raises(ResourceNotFound, match="/api/v1/nosuchthings"):
        await syncer.run()
    assert syncer.status.restarts == 0


async def test_a_bad_selector_fails_at_once(api_client: Any) -> None:
    source = ListWatch.from_client(api_client, "pods", label_selector="app in (web")
    syncer = make_syncer(source, Mirror())
    with pytest.raises(InvalidRequest):
        await syncer.run()


async def test_unauthorized_is_retried_and_logged_at_error(
    server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = Configuration(host=server.url)
    config.api_key = {"BearerToken": "wrong-token-123"}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    caplog.set_level(logging.INFO, logger="listwatch")
    async with ApiClient(config) as client:
        syncer = make_syncer(ListWatch.from_client(client, "pods"), Mirror())
        async with syncer:
            status = await syncer.wait_until(lambda s: s.restarts >= 2)
    assert "Unauthorized" in status.last_error  # type: ignore[operator]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert "wrong-token-123" not in caplog.text
    assert server.token not in caplog.text


async def test_forbidden_before_the_first_snapshot_is_fatal(
    server: FakeApiServer, api_client: Any
) -> None:
    """A 403 before anything synced: this identity may not list the resource (RBAC); an
    agent must stop and say so, not retry silently for ever."""
    server.inject(Fault.status(403), path="/api/v1/pods", times=None)
    syncer = make_syncer(ListWatch.from_client(api_client, "pods"), Mirror())
    with pytest.raises(Forbidden, match="403"):
        await syncer.run()
    assert syncer.status.phase is Phase.FAILED
    assert "403" in (syncer.status.last_error or "")


async def test_forbidden_after_a_snapshot_is_retried(
    server: FakeApiServer, api_client: Any
) -> None:
    """Once synced, a 403 is RBAC being rolled out or a token rotating: retried."""
    await server.create(pod("a"))
    mirror = Mirror()
    async with make_syncer(ListWatch.from_client(api_client, "pods"), mirror) as syncer:
        await syncer.wait_synced()
        rule = server.inject(Fault.status(403), path="/api/v1/pods", times=3)
        server.inject(Fault.error_event(0, 410), path="/api/v1/pods", watch=True)
        status = await syncer.wait_until(lambda s: s.restarts >= 2 and s.synced)
    assert rule.hits == 3
    assert any("Forbidden" in r.reason for r in status.recent_restarts)


async def test_syncer_arguments_are_checked() -> None:
    source = ListWatch(list_func=None, watch_func=None)  # type: ignore[arg-type]
    mirror = Mirror()
    for kwargs in (
        {"merge_interval": 0},
        {"max_batch": 0},
        {"resync_period": -1},
        {"sync_timeout": 0},
    ):
        with pytest.raises(ValueError, match="must"):
            Syncer(source, on_list=mirror.on_list, on_batch=mirror.on_batch, **kwargs)  # type: ignore[arg-type]
