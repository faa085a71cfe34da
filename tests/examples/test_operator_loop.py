"""examples/operator_loop.py: the operator keeps one ConfigMap per pod, reacting to batches and
to snapshots (deletions), through a bounded de-duplicated queue, and stops when cancelled.

The ConfigMaps the operator writes are observed the way a user would: with a listwatch Syncer
of their own, whose receiver wakes the test up on every change (no polling).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import listwatch
from listwatch import (
    Batch,
    Event,
    EventType,
    FatalError,
    JsonObject,
    ListWatch,
    Snapshot,
    Syncer,
    object_key,
)
from listwatch.testing import FakeApiServer, Fault
from tests.examples.helpers import WAIT, app_pod, fast_backoff, load_example, within

operator_loop = load_example("operator_loop")


class Observed:
    """A receiver holding ``{key: object}`` that wakes waiters on every change."""

    def __init__(self) -> None:
        self.objects: dict[str, JsonObject] = {}
        self._changed = asyncio.Event()

    async def on_list(self, snapshot: Snapshot) -> None:
        self.objects = {item.key: item.object async for item in snapshot}
        self._notify()

    async def on_batch(self, batch: Batch) -> None:
        for key, event in batch.events.items():
            if event.type is EventType.DELETED:
                self.objects.pop(key, None)
            else:
                self.objects[key] = event.object
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                await self._changed.wait()


@pytest.fixture
async def config_maps(server: FakeApiServer) -> AsyncIterator[Observed]:
    """The ConfigMaps of namespace default, as the fake server has them."""
    observed = Observed()
    async with server.api_client() as api:
        source = ListWatch.from_client(api, "configmaps", namespace="default")
        syncer = Syncer(
            source, on_list=observed.on_list, on_batch=observed.on_batch, merge_interval=0.01
        )
        async with syncer:
            await within(syncer.wait_synced())
            yield observed


def summary(config_maps: Observed) -> dict[str, tuple[dict[str, str], str]]:
    """``{configmap key: (data, owner uid)}``."""
    return {
        key: (obj["data"], obj["metadata"]["ownerReferences"][0]["uid"])
        for key, obj in config_maps.objects.items()
    }


def expected(server: FakeApiServer) -> dict[str, tuple[dict[str, str], str]]:
    """What the operator should make of the pods of namespace default."""
    return {
        f"default/{p['metadata']['name']}-info": (
            {"phase": p["status"]["phase"], "node": p["spec"].get("nodeName", "")},
            p["metadata"]["uid"],
        )
        for p in server.objects("v1", "Pod", "default")
    }


async def test_config_maps_follow_the_pods(
    server: FakeApiServer, kubeconfig: Path, config_maps: Observed
) -> None:
    await server.create(app_pod("a", phase="Running", node="n1"))
    await server.create(app_pod("b"))
    await server.create(app_pod("elsewhere", "kube-system"))
    async with await listwatch.connect(kubeconfig) as api:
        operator = asyncio.create_task(
            operator_loop.run_operator(
                api, namespace="default", merge_interval=0.02, backoff=fast_backoff()
            )
        )
        try:
            await config_maps.wait_for(lambda: summary(config_maps) == expected(server))
            assert set(config_maps.objects) == {"default/a-info", "default/b-info"}
            labels = config_maps.objects["default/a-info"]["metadata"]["labels"]
            assert labels == {"app.kubernetes.io/managed-by": "listwatch-example"}

            await server.create(app_pod("c", node="n2"))
            b = server.get("v1", "Pod", "b", "default")
            assert b is not None
            b["status"] = {"phase": "Succeeded"}
            await server.replace(b)
            await server.delete(app_pod("a"))
            await server.create(app_pod("a", phase="Pending", node="n3"))  # same name, new uid
            await server.delete(app_pod("c"))
            await server.create(app_pod("d"))
            await config_maps.wait_for(lambda: summary(config_maps) == expected(server))
            assert set(config_maps.objects) == {
                "default/a-info",
                "default/b-info",
                "default/d-info",
            }
        finally:
            operator.cancel()
            await asyncio.wait([operator])
    assert operator.cancelled()  # cancelling stopped the Syncer and the worker with it


async def test_a_fatal_error_stops_the_whole_operator(
    server: FakeApiServer, kubeconfig: Path
) -> None:
    server.inject(Fault.status(404), path="/api/v1/namespaces/default/pods")  # the first request
    async with await listwatch.connect(kubeconfig) as api:
        with pytest.raises(ExceptionGroup) as caught:
            await within(operator_loop.run_operator(api, namespace="default"))
    assert caught.value.subgroup(FatalError) is not None


class Recorder:
    """A reconcile function that records its calls, and can hold the worker at a gate."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: set[str] = set()  # keys whose next reconcile raises
        self._changed = asyncio.Event()

    async def reconcile(self, key: str, obj: JsonObject | None) -> None:
        await self.gate.wait()
        self.calls.append((key, None if obj is None else obj["metadata"]["resourceVersion"]))
        self._changed.set()
        self._changed = asyncio.Event()
        if key in self.fail:
            self.fail.discard(key)
            raise RuntimeError(f"cannot reconcile {key} now")

    async def wait_for_calls(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.calls) < count:
                await self._changed.wait()


def obj(name: str, rv: int) -> JsonObject:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)}}


def modified(*objects: JsonObject, rv: int) -> Batch:
    events = {object_key(o): Event.from_object(EventType.MODIFIED, o) for o in objects}
    return Batch(events, str(rv), generation=1)


@pytest.fixture
async def worker() -> AsyncIterator[tuple[Any, Recorder]]:
    recorder = Recorder()
    operator = operator_loop.Operator(recorder.reconcile, max_queued=2)
    task = asyncio.create_task(operator.work())
    yield operator, recorder
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()  # the worker survived everything it was given


async def test_a_snapshot_reconciles_everything_and_what_vanished(
    worker: tuple[Any, Recorder],
) -> None:
    operator, recorder = worker
    # Ten keys through a queue of two: on_list waits for room (backpressure), loses nothing.
    await within(
        operator.on_list(Snapshot.of([obj(f"p{i}", i) for i in range(10)], "10", generation=1))
    )
    await recorder.wait_for_calls(10)
    assert sorted(recorder.calls) == sorted((f"default/p{i}", str(i)) for i in range(10))

    # A relist without p1..p9: they were deleted while no watch reported it.
    recorder.calls.clear()
    recorder.fail = {"default/p1"}
    await operator.on_list(Snapshot.of([obj("p0", 20)], "20", generation=2))
    await recorder.wait_for_calls(10)
    assert sorted(recorder.calls) == [
        ("default/p0", "20"),
        *sorted((f"default/p{i}", None) for i in range(1, 10)),
    ]

    # The deletion of p1 failed: the next snapshot tries it again; the others are done.
    recorder.calls.clear()
    await operator.on_list(Snapshot.of([obj("p0", 20)], "21", generation=3))
    await recorder.wait_for_calls(2)
    assert sorted(recorder.calls) == [("default/p0", "20"), ("default/p1", None)]


async def test_a_busy_key_is_queued_once_and_reconciled_at_its_latest(
    worker: tuple[Any, Recorder],
) -> None:
    operator, recorder = worker
    await operator.on_list(Snapshot.of([], "1", generation=1))
    recorder.gate.clear()  # the worker takes "x" and waits at the gate
    await operator.on_batch(modified(obj("x", 2), rv=2))
    await operator.on_batch(modified(obj("y", 3), rv=3))
    for rv in range(4, 40):  # many changes to y while it waits in the queue: still one entry
        await within(operator.on_batch(modified(obj("y", rv), rv=rv)))
    recorder.gate.set()
    await recorder.wait_for_calls(2)
    assert recorder.calls == [("default/x", "2"), ("default/y", "39")]
