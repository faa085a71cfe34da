"""The memory benchmark's cluster server speaks the protocol the mirror relies on.

Its figures are only worth something if ``benchmarks.cluster`` answers as kube-apiserver
would, so these tests drive it over real HTTP on 127.0.0.1 with listwatch's own source
(through a ``kubernetes_asyncio`` ApiClient): paged and streaming lists at one RV,
metadata-only, churn seen by a watch and by the next LIST, and the refusals.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from benchmarks.cluster import PodBytes
from benchmarks.server import BenchServer, Payloads
from kubernetes_asyncio.client import ApiClient, Configuration

from benchmarks import payloads
from listwatch import ListWatch
from listwatch._backoff import Backoff
from listwatch._models import EventType
from listwatch._reflector import open_paged_list, open_streaming_list
from listwatch._types import WatchOptions
from tests.benchmarks.helpers import served

PODS = 1_234  # more than payloads.POOL_SIZE: the renamed pods are served too
TOKEN = "benchmark-test-token"


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    built = Payloads(cluster_pods=PodBytes.build(PODS))
    async with served(BenchServer(built, token=TOKEN, bookmark_interval=0.2)) as url:
        yield url


def _api(url: str, token: str = TOKEN) -> ApiClient:
    configuration = Configuration(
        host=url, api_key={"BearerToken": token}, api_key_prefix={"BearerToken": "Bearer"}
    )
    return ApiClient(configuration=configuration)


async def _get(url: str, **headers: str) -> tuple[int, bytes, str | None]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url, headers={"Authorization": f"Bearer {TOKEN}", **headers}) as response,
    ):
        return response.status, await response.read(), response.headers.get("Content-Encoding")


async def _all_items(listing_pages: AsyncIterator[object]) -> list[object]:
    items: list[object] = []
    async for page in listing_pages:
        items.extend(page.items)  # type: ignore[attr-defined]
    return items


async def test_paged_list_is_one_snapshot_of_every_pod(base_url: str) -> None:
    async with _api(f"{base_url}/cluster{PODS}") as api:
        source = ListWatch.from_client(api, "pods")
        listing = await open_paged_list(source, page_size=100, backoff=Backoff())
        async with listing:
            items = await _all_items(listing.pages)
    assert listing.resource_version == str(10_000 + PODS)
    keys = [item.key for item in items]  # type: ignore[attr-defined]
    assert len(keys) == len(set(keys)) == PODS
    assert keys[-1] == payloads.key_of(PODS - 1)
    first = orjson.loads(items[0].json)  # type: ignore[attr-defined]
    assert (first["kind"], first["apiVersion"]) == ("Pod", "v1")


async def test_streaming_list_ends_with_the_bookmark_at_the_list_rv(base_url: str) -> None:
    async with _api(f"{base_url}/cluster{PODS}") as api:
        source = ListWatch.from_client(api, "pods")
        listing = await open_streaming_list(
            source, page_size=100, backoff=Backoff(), watch_timeout=30
        )
        async with listing:
            rvs = []
            count = 0
            async for page in listing.pages:
                count += len(page.items)
                rvs.append(page.resource_version)
    assert count == PODS
    assert rvs[-1] == str(10_000 + PODS)
    assert set(rvs[:-1]) <= {""}


async def test_metadata_only_lists_partial_object_metadata(base_url: str) -> None:
    async with _api(f"{base_url}/cluster{PODS}") as api:
        source = ListWatch.from_client(api, "pods", metadata_only=True)
        listing = await open_paged_list(source, page_size=500, backoff=Backoff())
        async with listing:
            items = await _all_items(listing.pages)
    assert len(items) == PODS
    obj = orjson.loads(items[-1].json)  # type: ignore[attr-defined]
    assert (obj["kind"], obj["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert set(obj) == {"kind", "apiVersion", "metadata"}
    singular = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    status, _, _ = await _get(f"{base_url}/cluster{PODS}/api/v1/pods", Accept=singular)
    assert status == 406


async def test_churn_reaches_a_watch_and_the_next_list(base_url: str) -> None:
    prefix = f"{base_url}/cluster{PODS}"
    listed_rv = 10_000 + PODS
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        async with session.post(f"{prefix}/_bench/churn?rate=2000&seconds=0.1") as response:
            planned = (await response.json())["planned"]
        assert planned == 200
        async with _api(prefix) as api:
            source = ListWatch.from_client(api, "pods")
            seen: list[str] = []
            stream = source.watch(WatchOptions(str(listed_rv), timeout_seconds=30))
            async for event in stream:
                if event.type is EventType.MODIFIED:
                    seen.append(event.resource_version)
                if len(seen) == planned:
                    break
            await stream.aclose()
    assert seen == [str(listed_rv + n) for n in range(1, planned + 1)]
    status, body, _ = await _get(f"{prefix}/api/v1/pods")
    listed = orjson.loads(body)
    assert status == 200
    assert listed["metadata"]["resourceVersion"] == str(listed_rv + planned)
    item_rvs = {int(i["metadata"]["resourceVersion"]) for i in listed["items"]}
    assert max(item_rvs) == listed_rv + planned


async def test_refusals(base_url: str) -> None:
    prefix = f"{base_url}/cluster{PODS}"
    async with aiohttp.ClientSession() as session, session.get(f"{prefix}/api/v1/pods") as r:
        assert r.status == 401
    status, body, _ = await _get(f"{prefix}/api/v1/pods?limit=10")
    token = orjson.loads(body)["metadata"]["continue"]
    status, _, _ = await _get(f"{prefix}/api/v1/pods?limit=10&continue={token}&resourceVersion=5")
    assert status == 400
    status, _, _ = await _get(f"{prefix}/api/v1/pods?watch=1&resourceVersionMatch=NotOlderThan")
    assert status == 422
    status, _, _ = await _get(f"{prefix}/api/v1/pods?labelSelector=app%3Dweb")
    assert status == 400


async def test_gzip_prefix_compresses_large_lists_only(base_url: str) -> None:
    status, body, encoding = await _get(
        f"{base_url}/clustergz{PODS}/api/v1/pods?limit=500", **{"Accept-Encoding": "gzip"}
    )
    assert (status, encoding) == (200, "gzip")
    assert len(orjson.loads(gzip.decompress(body))["items"]) == 500
    status, body, encoding = await _get(
        f"{base_url}/clustergz{PODS}/api/v1/pods?limit=1", **{"Accept-Encoding": "gzip"}
    )
    assert (status, encoding) == (200, None)  # under kube-apiserver's 128 KiB threshold
