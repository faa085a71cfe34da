"""Fault injection: each fault's wire shape, and which requests a rule hits
(docs/kubernetes-semantics.md#expired-resource-versions, #status-and-http-codes)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from listwatch.testing import FakeApiServer, Fault
from tests.objects import pod

from .helpers import WAIT, EventReader, status_of, summary

PODS = "/api/v1/namespaces/default/pods"


def watch_params(**params: str) -> dict[str, str]:
    return {"watch": "1", "timeoutSeconds": "30", "resourceVersion": "0", **params}


async def three_pods(server: FakeApiServer) -> None:
    for name in ["a", "b", "c"]:
        await server.create(pod(name))


# --------------------------------------------------------------------------- statuses


async def test_status_fault_fires_once_by_default(server: FakeApiServer, core: client.CoreV1Api):
    rule = server.inject(Fault.status(500), path=PODS)

    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default")
    listed = await core.list_namespaced_pod("default")

    assert caught.value.status == 500
    body = status_of(caught.value)
    assert body["reason"] == "InternalError"
    assert body["kind"] == "Status"
    assert listed.items == []
    assert rule.hits == 1


async def test_status_fault_with_retry_after(http: aiohttp.ClientSession, server: FakeApiServer):
    server.inject(Fault.status(503, message="etcd is sad", retry_after=7))
    async with http.get(PODS) as response:
        body = await response.json()
        assert response.headers["Retry-After"] == "7"
    assert response.status == 503
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "etcd is sad",
        "reason": "ServiceUnavailable",
        "details": {"retryAfterSeconds": 7},
        "code": 503,
    }


async def test_too_many_requests_as_apf_plain_text(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    server.inject(Fault.too_many_requests(retry_after=3, plain_text=True))
    async with http.get(PODS) as response:
        text = await response.text()
        headers = response.headers
    assert response.status == 429
    assert headers["Retry-After"] == "3"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text == "Too many requests, please try again later.\n"


async def test_too_many_requests_as_status(server: FakeApiServer, core: client.CoreV1Api):
    server.inject(Fault.too_many_requests())
    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_pod("default")
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "1"
    body = status_of(caught.value)
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 1


async def test_too_large_resource_version_fault(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.too_large_resource_version())
    async with http.get(PODS, params={"resourceVersion": "1"}) as response:
        body = await response.json()
        assert response.headers["Retry-After"] == "1"
    assert response.status == 504
    assert body["reason"] == "Timeout"
    assert body["message"] == (
        f"Timeout: Too large resource version: 1, current: {server.resource_version}"
    )
    assert body["details"] == {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }


async def test_gone_on_a_watch_is_http_410_expired(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    rule = server.inject(Fault.gone(), watch=True)
    async with http.get(PODS) as listed:
        assert listed.status == 200  # not a watch: not hit
    async with http.get(PODS, params=watch_params()) as response:
        body = await response.json()
    assert response.status == 410
    assert body["reason"] == "Expired"
    assert body["code"] == 410
    assert rule.hits == 1


# --------------------------------------------------------------------------- connections


async def test_close_connection_before_headers(server: FakeApiServer, core: client.CoreV1Api):
    # aiohttp retries an idempotent request once on a dropped connection: fail both tries.
    server.inject(Fault.close_connection(), path=PODS, times=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await core.list_namespaced_pod("default")
    assert [r.fault for r in server.requests] == [Fault.close_connection()] * 2
    assert (await core.list_namespaced_pod("default")).items == []


async def test_close_connection_once_is_retried_by_aiohttp(
    server: FakeApiServer, core: client.CoreV1Api
):
    rule = server.inject(Fault.close_connection(), path=PODS)
    assert (await core.list_namespaced_pod("default")).items == []
    assert rule.hits == 1
    assert len(server.requests) == 2


async def test_cut_stream_after_events(server: FakeApiServer, http: aiohttp.ClientSession):
    await three_pods(server)
    server.inject(Fault.cut_stream(after_events=2), watch=True)
    async with http.get(PODS, params=watch_params()) as response:
        reader = EventReader(response)
        events = await reader.take(2)
        with pytest.raises(aiohttp.ClientPayloadError):
            await reader.next_line()
    assert [e["object"]["metadata"]["name"] for e in events] == ["a", "b"]


async def test_cut_stream_mid_line(server: FakeApiServer, http: aiohttp.ClientSession):
    await three_pods(server)
    server.inject(Fault.cut_stream(after_events=1, mid_line=True), watch=True)
    received = bytearray()

    async def read_all(response: aiohttp.ClientResponse) -> None:
        while chunk := await asyncio.wait_for(response.content.readany(), WAIT):
            received.extend(chunk)

    async with http.get(PODS, params=watch_params()) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all(response)
    first, _, partial = bytes(received).partition(b"\n")
    assert orjson.loads(first)["object"]["metadata"]["name"] == "a"
    assert partial
    assert b"\n" not in partial
    assert partial.startswith(b'{"type":"ADDED","object":{')


async def test_cut_stream_with_zero_events(server: FakeApiServer, core: client.CoreV1Api):
    server.inject(Fault.cut_stream(), watch=True)
    async with watch.Watch() as w:
        stream = w.stream(core.list_namespaced_pod, "default", timeout_seconds=5)
        with pytest.raises(aiohttp.ClientPayloadError):
            await anext(stream)


async def test_cut_stream_on_a_list_truncates_the_body(
    server: FakeApiServer, core: client.CoreV1Api
):
    await three_pods(server)
    server.inject(Fault.cut_stream(), path=PODS)
    with pytest.raises(aiohttp.ClientPayloadError):
        await core.list_namespaced_pod("default")


# --------------------------------------------------------------------------- in-stream


async def test_error_event_410_after_events(server: FakeApiServer, http: aiohttp.ClientSession):
    await three_pods(server)
    server.inject(Fault.error_event(after_events=1), watch=True)
    async with http.get(PODS, params=watch_params(resourceVersion="4")) as response:
        events = await EventReader(response).rest()  # ends cleanly after the ERROR
    assert summary(events)[0][:2] == ("ADDED", "a")
    assert events[1] == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: 4 ({server.resource_version})",
            "reason": "Expired",
            "code": 410,
        },
    }
    assert len(events) == 2


async def test_error_event_500(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.error_event(code=500), watch=True)
    async with http.get(PODS, params=watch_params()) as response:
        events = await EventReader(response).rest()
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["reason"] == "InternalError"
    assert events[0]["object"]["code"] == 500


async def test_error_event_reaches_the_typed_client(server: FakeApiServer, core: client.CoreV1Api):
    server.inject(Fault.error_event(), watch=True)
    async with watch.Watch() as w:
        stream = w.stream(core.list_namespaced_pod, "default", timeout_seconds=5)
        with pytest.raises(ApiException) as caught:
            await anext(stream)
    assert caught.value.status == 410


async def test_malformed_line_then_the_stream_goes_on(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    await three_pods(server)
    server.inject(Fault.malformed_line(after_events=1), watch=True)
    async with http.get(PODS, params=watch_params()) as response:
        reader = EventReader(response)
        lines = [await reader.next_line() for _ in range(4)]
    assert lines[0] is not None
    assert lines[1] is not None
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(lines[1])
    assert [
        orjson.loads(line)["object"]["metadata"]["name"] for line in (lines[0], *lines[2:])
    ] == [
        "a",
        "b",
        "c",
    ]


async def test_a_raw_line_is_sent_as_given_then_the_stream_goes_on(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    """Bytes the store cannot write (nested past orjson's 255 levels, not UTF-8)."""
    await three_pods(server)
    deep = b'{"type":"ADDED","object":{"data":' + b"[" * 2000 + b"]" * 2000 + b"}}"
    server.inject(Fault.raw_line(deep, after_events=1), watch=True)
    server.inject(Fault.raw_line(b'{"bad":"\xff"}'), watch=True)
    async with http.get(PODS, params=watch_params()) as response:
        reader = EventReader(response)
        lines = [await reader.next_line() for _ in range(4)]
    assert lines[1] == deep
    names = [orjson.loads(line)["object"]["metadata"]["name"] for line in lines if line != deep]
    assert names == ["a", "b", "c"]
    async with http.get(PODS, params=watch_params()) as response:
        assert await EventReader(response).next_line() == b'{"bad":"\xff"}'
    with pytest.raises(ValueError, match="one line"):
        Fault.raw_line(b"a\nb")
    with pytest.raises(ValueError, match="only applies to watch"):
        server.inject(Fault.raw_line(b"x"), watch=False)


async def test_empty_response_on_a_watch(server: FakeApiServer, http: aiohttp.ClientSession):
    await three_pods(server)
    server.inject(Fault.empty_response(), watch=True)
    async with http.get(PODS, params=watch_params()) as response:
        body = await response.read()
    assert response.status == 200
    assert response.content_type == "application/json"
    assert body == b""


async def test_empty_response_on_a_list(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.empty_response(), path=PODS)
    async with http.get(PODS) as response:
        assert response.status == 200
        assert await response.read() == b""


async def test_a_stalled_watch_stays_open_and_silent_past_its_timeout(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    """A stuck server: the kernel keeps the connection, the server sends nothing more and
    never ends the stream, not even at its timeoutSeconds."""
    await three_pods(server)
    server.inject(Fault.stall(after_events=1), watch=True)
    short = watch_params(timeoutSeconds="1")
    async with http.get(PODS, params=short) as stalled:
        first = await EventReader(stalled).next()
        async with http.get(PODS, params=short) as normal:  # the same deadline, no fault
            assert [e["object"]["metadata"]["name"] for e in await EventReader(normal).rest()]
        assert server.active_watches == 1  # the stalled one, past its deadline
        assert not stalled.content.is_eof()
        assert stalled.content.read_nowait() == b""
    await server.wait_until(lambda s: s.active_watches == 0)  # ends when the client leaves
    assert first["object"]["metadata"]["name"] == "a"


async def test_slow_watch_delays_each_event(server: FakeApiServer, http: aiohttp.ClientSession):
    await three_pods(server)
    server.inject(Fault.slow(0.1), watch=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with http.get(PODS, params=watch_params()) as response:
        events = await EventReader(response).take(3)
    # A lower bound only: the events cannot arrive before their delays.
    assert loop.time() - started >= 0.3
    assert [e["object"]["metadata"]["name"] for e in events] == ["a", "b", "c"]


async def test_slow_list_delays_the_response(server: FakeApiServer, core: client.CoreV1Api):
    server.inject(Fault.slow(0.2), path=PODS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await core.list_namespaced_pod("default")
    assert loop.time() - started >= 0.2


# --------------------------------------------------------------------------- rule matching


async def status_codes(http: aiohttp.ClientSession, requests: list[tuple[str, str]]) -> list[int]:
    codes = []
    for method, path in requests:
        async with http.request(method, path) as response:
            codes.append(response.status)
    return codes


async def test_rule_matches_an_exact_path(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.status(500), path=PODS, times=None)
    codes = await status_codes(http, [("GET", "/api/v1/pods"), ("GET", PODS), ("GET", PODS)])
    assert codes == [200, 500, 500]


async def test_rule_matches_a_regex_in_full(server: FakeApiServer, http: aiohttp.ClientSession):
    rule = server.inject(Fault.status(503), path=re.compile(r"/api/v1/.*pods"), times=None)
    codes = await status_codes(
        http,
        [
            ("GET", PODS),
            ("GET", "/api/v1/pods"),
            ("GET", "/api/v1/nodes"),
            ("GET", "/api/v1/pods/extra"),
        ],
    )
    assert codes == [503, 503, 200, 404]
    assert rule.hits == 2


async def test_rule_method_defaults_to_get(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.status(500), times=None)
    async with http.post(PODS, json=pod("a")) as created:
        assert created.status == 201
    server.clear_faults()
    server.inject(Fault.status(500), method=None, times=None)
    async with http.post(PODS, json=pod("b")) as refused:
        assert refused.status == 500


async def test_rule_watch_filter(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.status(500), watch=False, times=None)
    async with http.get(PODS) as listed:
        assert listed.status == 500
    async with http.get(PODS, params=watch_params()) as watched:
        assert watched.status == 200


async def test_rule_times(server: FakeApiServer, http: aiohttp.ClientSession):
    rule = server.inject(Fault.status(500), times=2)
    codes = await status_codes(http, [("GET", PODS)] * 3)
    assert codes == [500, 500, 200]
    assert rule.hits == 2


async def test_first_matching_rule_wins(server: FakeApiServer, http: aiohttp.ClientSession):
    server.inject(Fault.status(500))
    server.inject(Fault.status(503))
    codes = await status_codes(http, [("GET", PODS)] * 3)
    assert codes == [500, 503, 200]


async def probability_pattern(seed: int, objects: int = 0) -> list[int]:
    async with (
        FakeApiServer(seed=seed) as server,
        aiohttp.ClientSession(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.token}"},
            connector=aiohttp.TCPConnector(ssl=server.ssl_context),
        ) as http,
    ):
        for i in range(objects):
            await server.create(pod(f"p{i}"))
        server.inject(Fault.status(500), times=None, probability=0.5)
        return await status_codes(http, [("GET", PODS)] * 20)


async def test_probability_is_reproducible_with_the_seed():
    first = await probability_pattern(seed=7)
    again = await probability_pattern(seed=7)
    other_writes = await probability_pattern(seed=7, objects=3)
    other_seed = await probability_pattern(seed=8)
    assert first == again == other_writes
    assert set(first) == {200, 500}
    assert other_seed != first


async def test_probability_bounds(server: FakeApiServer, http: aiohttp.ClientSession):
    never = server.inject(Fault.status(500), times=None, probability=0.0)
    assert await status_codes(http, [("GET", PODS)] * 5) == [200] * 5
    assert never.hits == 0
    server.clear_faults()
    server.inject(Fault.status(500), times=None, probability=1.0)
    assert await status_codes(http, [("GET", PODS)] * 5) == [500] * 5


async def test_watch_only_faults_skip_non_watch_requests(
    server: FakeApiServer, http: aiohttp.ClientSession
):
    rule = server.inject(Fault.error_event(), times=None)
    async with http.get(PODS) as listed:
        assert listed.status == 200
    assert rule.hits == 0
    with pytest.raises(ValueError, match="only applies to watch"):
        server.inject(Fault.malformed_line(), watch=False)


def test_fault_constructors_validate() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Fault.status(200)
    with pytest.raises(ValueError, match="negative"):
        Fault.cut_stream(after_events=-1)
    with pytest.raises(ValueError, match="negative"):
        Fault.slow(-1)


async def test_faulted_requests_are_logged(server: FakeApiServer, http: aiohttp.ClientSession):
    fault = Fault.status(500)
    server.inject(fault)
    await status_codes(http, [("GET", PODS), ("GET", PODS)])
    logged: list[Any] = [r.fault for r in server.requests]
    assert logged == [fault, None]
