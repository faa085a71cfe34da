"""The official ``kubernetes`` Python client against the fake API server over HTTPS.

That client is synchronous (urllib3): each call runs in a worker thread
(``asyncio.to_thread``) while the fake keeps serving in this test's event loop. Its
configuration comes from the kubeconfig ``write_kubeconfig`` writes, so the server's
certificate is verified against the CA embedded there.

Two parts of it are driven: ``kubernetes.watch.Watch`` (the watch iterator: re-watches
from its last resourceVersion when a stream ends, retries a 410 once, then raises) and
``kubernetes.informer.SharedInformer`` (in the installed version, 37: a daemon thread that
lists, watches from the list's resourceVersion, keeps an ``ObjectCache``, resumes after a
clean end without re-listing, and re-lists after a 410).
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, informer, watch

from listwatch.testing import FakeApiServer, Fault
from tests.objects import configmap, pod

PODS = "/api/v1/namespaces/default/pods"
#: A bound for a wait: a safety net against a hang, never a synchronisation.
WAIT = 20.0


@contextmanager
def official_client(kubeconfig: Path) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        assert api.configuration.verify_ssl
        yield client.CoreV1Api(api)
    finally:
        api.close()


def collect(stream: Iterator[dict[str, Any]], count: int, stopper: watch.Watch) -> list[Any]:
    events = []
    for event in stream:
        events.append(event)
        if len(events) == count:
            stopper.stop()
    return events


async def test_list_and_get_over_tls(tls_server: FakeApiServer, tls_kubeconfig: Path):
    await tls_server.create(pod("a", app="web"))
    with official_client(tls_kubeconfig) as core:
        listed = await asyncio.to_thread(core.list_namespaced_pod, "default")
        one = await asyncio.to_thread(core.read_namespaced_pod, "a", "default")
    assert [p.metadata.name for p in listed.items] == ["a"]
    assert one.metadata.labels == {"app": "web"}


async def test_watch_streams_typed_events(tls_server: FakeApiServer, tls_kubeconfig: Path):
    start = str(tls_server.resource_version)
    with official_client(tls_kubeconfig) as core:
        stopper = watch.Watch()
        stream = stopper.stream(core.list_namespaced_pod, "default", resource_version=start)
        collecting = asyncio.create_task(asyncio.to_thread(collect, stream, 3, stopper))
        await tls_server.wait_for_watchers()
        created = await tls_server.create(pod("a"))
        relabelled = {**created, "metadata": {**created["metadata"], "labels": {"x": "y"}}}
        changed = await tls_server.replace(relabelled)
        deleted = await tls_server.delete(changed)
        events = await asyncio.wait_for(collecting, WAIT)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    assert isinstance(events[0]["object"], client.V1Pod)
    assert events[1]["object"].metadata.labels == {"x": "y"}
    assert stopper.resource_version == deleted["metadata"]["resourceVersion"]


async def test_watch_resumes_after_cut_watches(tls_server: FakeApiServer, tls_kubeconfig: Path):
    start = str(tls_server.resource_version)
    with official_client(tls_kubeconfig) as core:
        stopper = watch.Watch()
        stream = stopper.stream(core.list_namespaced_pod, "default", resource_version=start)
        collecting = asyncio.create_task(asyncio.to_thread(collect, stream, 2, stopper))
        await tls_server.wait_for_watchers()
        await tls_server.create(pod("a"))
        # The cut comes before the watch task ran again: its stream ends before "a", and
        # the client resumes from where it was; "a" comes on the resumed stream.
        resumed_from = tls_server.request_count
        assert tls_server.cut_watches() == 1
        rewatch = await tls_server.wait_for_request(
            lambda r: r.watch and r.path == PODS, start=resumed_from
        )
        await tls_server.create(pod("b"))
        events = await asyncio.wait_for(collecting, WAIT)
    assert [e["object"].metadata.name for e in events] == ["a", "b"]
    assert rewatch.query["resourceVersion"] == start


async def test_watch_retries_a_410_once_then_raises(
    tls_server: FakeApiServer, tls_kubeconfig: Path
):
    tls_server.inject(Fault.error_event(code=410), path=PODS, watch=True, times=2)
    start = str(tls_server.resource_version)
    with official_client(tls_kubeconfig) as core:
        stopper = watch.Watch()
        stream = stopper.stream(core.list_namespaced_pod, "default", resource_version=start)
        with pytest.raises(client.ApiException) as caught:
            await asyncio.wait_for(asyncio.to_thread(collect, stream, 1, stopper), WAIT)
    assert caught.value.status == 410
    watches = [r for r in tls_server.requests if r.watch and r.path == PODS]
    assert len(watches) == 2


class Recorder:
    """Informer callbacks (on its thread) into a queue the test awaits."""

    def __init__(self, shared: informer.SharedInformer) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        for kind in (informer.ADDED, informer.MODIFIED, informer.DELETED):
            shared.add_event_handler(kind, self._handler(kind))

    def _handler(self, kind: str) -> Any:
        def handle(obj: Any) -> None:
            self.events.put((kind, obj.metadata.name))

        return handle

    async def next(self) -> tuple[str, str]:
        return await asyncio.to_thread(self.events.get, True, WAIT)


async def stop(shared: informer.SharedInformer, server: FakeApiServer) -> None:
    """``SharedInformer.stop`` joins a thread blocked reading its watch: end the watch."""
    stopping = asyncio.create_task(asyncio.to_thread(shared.stop))
    while not stopping.done():
        server.cut_watches()
        await asyncio.wait({stopping}, timeout=0.5)
    await stopping


async def test_shared_informer_lists_watches_resumes_and_relists(
    tls_server: FakeApiServer, tls_kubeconfig: Path
):
    await tls_server.create(pod("a"))
    with official_client(tls_kubeconfig) as core:
        shared = informer.SharedInformer(list_func=core.list_namespaced_pod, namespace="default")
        recorder = Recorder(shared)
        shared.start()
        try:
            assert await recorder.next() == ("ADDED", "a")
            await tls_server.wait_for_watchers()

            created = await tls_server.create(pod("b"))
            assert await recorder.next() == ("ADDED", "b")
            relabelled = {**created, "metadata": {**created["metadata"], "labels": {"v": "2"}}}
            await tls_server.replace(relabelled)
            assert await recorder.next() == ("MODIFIED", "b")

            # A clean end: the informer re-watches from its last RV, without a list.
            lists_before = sum(1 for r in tls_server.requests if r.path == PODS and not r.watch)
            cut_at = tls_server.request_count
            tls_server.cut_watches()
            rewatch = await tls_server.wait_for_request(
                lambda r: r.watch and r.path == PODS, start=cut_at
            )
            lists_after = sum(1 for r in tls_server.requests if r.path == PODS and not r.watch)
            assert lists_after == lists_before
            assert int(rewatch.query["resourceVersion"]) >= int(
                created["metadata"]["resourceVersion"]
            )
            await tls_server.delete(created)
            assert await recorder.next() == ("DELETED", "b")

            # Its RV compacted away: 410, retried once by Watch, then a fresh list.
            await tls_server.create(configmap("elsewhere"))
            tls_server.compact()
            relist_from = tls_server.request_count
            tls_server.cut_watches()
            await tls_server.wait_for_request(
                lambda r: r.path == PODS and not r.watch, start=relist_from
            )
            assert await recorder.next() == ("MODIFIED", "a")  # the relist re-delivers it
            keys = sorted(shared.cache.list_keys())
        finally:
            await stop(shared, tls_server)
    assert keys == ["default/a"]
