"""Every metric of ``listwatch.observe.metrics``, scraped from ``/metrics`` over HTTP as Prometheus
would, after a run that exercised it: snapshots, batches, a 410 relist, failed requests, a
receiver stalled with events waiting, leader status."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from listwatch import Backoff, Batch, ListWatch, Snapshot, Syncer, object_key
from listwatch.observe.health import HealthReport, make_app, serving
from listwatch.observe.metrics import SyncMetrics
from listwatch.testing import FakeApiServer, Fault
from tests.core.helpers import FAST_BACKOFF
from tests.objects import pod

PODS = {"group": "", "version": "v1", "resource": "pods"}


async def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], metric: str, **labels: str
) -> float:
    wanted = {**PODS, **labels} if not metric.startswith("leader_") else labels
    matching = [
        v for got, v in samples.get(metric, []) if all(got.get(k) == x for k, x in wanted.items())
    ]
    assert matching, f"no sample {metric}{wanted}; have {samples.get(metric)}"
    return sum(matching)


async def test_every_metric_is_exported(server: FakeApiServer, api_client: Any) -> None:
    for i in range(3):
        await server.create(pod(f"p{i}"))
    stall = asyncio.Event()
    stalled = asyncio.Event()
    batches: list[Batch] = []

    async def on_list(snapshot: Snapshot) -> None:
        await snapshot.collect()

    async def on_batch(batch: Batch) -> None:
        batches.append(batch)
        if stall.is_set():
            stalled.set()
            await asyncio.Event().wait()  # until the generation ends

    metrics = SyncMetrics()
    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.02,
        max_batch=2,
        queue_size=4,
        list_strategy="paged",
        backoff=Backoff(**FAST_BACKOFF),
        epoch=7,
        watch_timeout=1,  # short watches: the next one meets the injected faults
    )
    metrics.track(syncer)
    metrics.track_leader("listwatch", lambda: True)
    app = make_app(
        metrics, liveness=lambda: HealthReport(True), readiness=lambda: HealthReport(True)
    )
    async with serving(app, "127.0.0.1", 0) as (host, port), syncer:
        url = f"http://{host}:{port}/metrics"
        await syncer.wait_synced()
        await server.create(pod("p3"))
        await syncer.wait_until(lambda s: s.batches >= 1)
        # A 429 then a 410 on the next watches: a retried request, then a relist.
        server.inject(Fault.too_many_requests(0), path="/api/v1/pods", watch=True)
        server.inject(Fault.error_event(0, 410), path="/api/v1/pods", watch=True)
        await syncer.wait_until(lambda s: s.generation >= 2 and s.synced)
        # Stall the receiver with more changes than one batch holds: keys pend, events queue.
        stall.set()
        for i in range(12):
            await server.create(pod(f"q{i}"))
        await stalled.wait()
        # The watch reader found the queue full (queue_size 4) and waits: backpressure.
        await syncer.wait_until(lambda s: s.queued_events == 4)
        during = await scrape(url)
    after_status = syncer.status

    assert value(during, "listwatch_generations_total") >= 2
    assert value(during, "listwatch_restarts_total", reason="ResourceExpired") >= 1
    assert value(during, "listwatch_events_received_total") >= 1
    assert value(during, "listwatch_batches_total") >= 1
    assert value(during, "listwatch_keys_delivered_total") >= 1
    assert value(during, "listwatch_snapshot_objects_delivered_total") >= 3 + 4
    assert value(during, "listwatch_on_list_duration_seconds_count") >= 2
    assert value(during, "listwatch_on_list_duration_seconds_bucket", le="+Inf") >= 2
    assert value(during, "listwatch_on_batch_duration_seconds_count") >= 1
    assert value(during, "listwatch_requests_total", verb="list", outcome="ok") >= 2
    assert value(during, "listwatch_requests_total", verb="watch", outcome="TooManyRequests") >= 1
    assert value(during, "listwatch_requests_total", verb="watch", outcome="ResourceExpired") >= 1
    assert value(during, "listwatch_requests_total", verb="watch", outcome="ok") >= 1
    assert value(during, "listwatch_queue_depth") == 4
    assert value(during, "listwatch_pending_keys") == 0  # taken by the stalled batch
    assert value(during, "listwatch_backpressure_total") >= 1
    assert value(during, "listwatch_snapshot_objects") == 4
    assert value(during, "listwatch_staleness_seconds") > 0  # events wait: behind
    assert value(during, "listwatch_synced") == 1
    assert value(during, "listwatch_epoch") == 7
    assert value(during, "leader_election_master_status", name="listwatch") == 1
    assert after_status.phase.value == "stopped"


async def test_merged_keys_wait_in_pending_until_the_interval(
    server: FakeApiServer, api_client: Any
) -> None:
    async def on_list(snapshot: Snapshot) -> None:
        await snapshot.collect()

    async def on_batch(batch: Batch) -> None:
        pass

    merged = asyncio.Event()
    keys: list[str] = []

    def key(obj: dict[str, Any]) -> str:
        # The merger keys each event as it merges it: after the third, three keys pend.
        keys.append(object_key(obj))
        if len(keys) == 3:
            merged.set()
        return keys[-1]

    metrics = SyncMetrics()
    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=600,  # nothing is delivered during the test
        key=key,
    )
    metrics.track(syncer)
    app = make_app(
        metrics, liveness=lambda: HealthReport(True), readiness=lambda: HealthReport(True)
    )
    async with serving(app, "127.0.0.1", 0) as (host, port), syncer:
        await syncer.wait_synced()
        for name in ("a", "b", "c"):
            await server.create(pod(name))
        await merged.wait()
        samples = await scrape(f"http://{host}:{port}/metrics")
    assert value(samples, "listwatch_pending_keys") == 3
    assert value(samples, "listwatch_queue_depth") == 0
    assert value(samples, "listwatch_staleness_seconds") > 0
    assert value(samples, "listwatch_batches_total") == 0


async def test_a_caught_up_receiver_has_no_staleness(
    server: FakeApiServer, api_client: Any
) -> None:
    async def on_list(snapshot: Snapshot) -> None:
        await snapshot.collect()

    async def on_batch(batch: Batch) -> None:
        pass

    metrics = SyncMetrics()
    syncer = Syncer(
        ListWatch.from_client(api_client, "pods"),
        on_list=on_list,
        on_batch=on_batch,
        merge_interval=0.02,
    )
    metrics.track(syncer)
    async with syncer:
        await syncer.wait_synced()
        await server.create(pod("a"))
        status = await syncer.wait_until(
            lambda s: s.resource_version == str(server.resource_version)
        )
        text = metrics.render().decode()
    assert status.staleness == 0.0
    assert 'listwatch_staleness_seconds{group="",resource="pods",version="v1"} 0.0' in text
    assert "listwatch_synced" in text


async def test_a_forgotten_syncer_leaves_the_gauges(api_client: Any) -> None:
    async def receiver(value: object) -> None:
        pass

    metrics = SyncMetrics()
    syncer = Syncer(ListWatch.from_client(api_client, "pods"), on_list=receiver, on_batch=receiver)
    metrics.track(syncer)
    assert "listwatch_queue_depth{" in metrics.render().decode()
    metrics.forget(syncer)
    assert "listwatch_queue_depth{" not in metrics.render().decode()
