"""An operator loop on listwatch: keep one ConfigMap per pod, holding the pod's phase and node.

For every pod in a namespace the operator keeps a ConfigMap ``<pod>-info`` with the pod's
phase and node, and deletes it when the pod is gone. The business logic is small on purpose;
the shape around it is the point:

- ``on_list`` and ``on_batch`` do no API calls. They record each key's latest object and queue
  the key on a work queue: bounded (a full queue makes them wait, which slows the watch
  reader: backpressure, never loss) and de-duplicated (a key waits in it at most once, so the
  queue never holds more than one entry per object, like client-go's workqueue).
- A snapshot queues every key it holds, and the keys it no longer holds: pods deleted while no
  watch could report it (a relist after a 410, a network cut). Reconciling "everything" after
  each snapshot is what makes the loop level-triggered: nothing is missed for good.
- A worker reconciles one key at a time from its latest recorded state (``None``: deleted).
  A failure is logged, and the next snapshot retries it (``resync_period`` bounds the wait);
  a deleted key stays known (a tombstone) until its deletion is reconciled.
- The Syncer and the worker run in one ``asyncio.TaskGroup``: cancelling the operator (Ctrl-C,
  SIGTERM) stops both, and a fatal error in either stops both.

In a real cluster, give the ConfigMaps an ownerReference (this example does) so that Kubernetes'
garbage collector also removes those whose pod was deleted while the operator was not running.

Run it against the cluster of your current kubeconfig (it writes ConfigMaps: mind the
namespace)::

    python examples/operator_loop.py --namespace my-sandbox        # --kubeconfig, --selector
    kubectl -n my-sandbox get configmaps -l app.kubernetes.io/managed-by=listwatch-example

(The file is not called ``operator.py``: run as a script, that name would shadow the standard
library's ``operator`` module, which asyncio imports.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn

from kubernetes_asyncio import config
from kubernetes_asyncio.client import (
    ApiClient,
    ApiException,
    CoreV1Api,
    V1ConfigMap,
    V1ObjectMeta,
    V1OwnerReference,
)

import listwatch

logger = logging.getLogger("operator_loop")

Reconcile = Callable[[str, listwatch.JsonObject | None], Awaitable[None]]
"""``reconcile(key, obj)``: make the world match ``obj``, or its absence when it is ``None``."""

MANAGED_BY = "listwatch-example"


class Operator:
    """The receiver of a Syncer and the worker that reconciles what it receives."""

    def __init__(self, reconcile: Reconcile, *, max_queued: int = 1000) -> None:
        self._reconcile = reconcile
        # Each key's latest state; None is a tombstone: deleted, and not yet reconciled as such.
        self._objects: dict[str, listwatch.JsonObject | None] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue(max_queued)
        self._queued: set[str] = set()  # the keys in the queue: each at most once

    async def on_list(self, snapshot: listwatch.Snapshot) -> None:
        # Read the whole stream first: a list error raised out of it changes nothing here.
        listed = {item.key: item.object async for item in snapshot}
        # Known keys the snapshot lacks were deleted while no watch told us (tombstones whose
        # deletion failed, or was never reached, are among them: they are tried again).
        gone = self._objects.keys() - listed.keys()
        self._objects = {**dict.fromkeys(gone), **listed}
        for key in [*gone, *listed]:
            await self._enqueue(key)

    async def on_batch(self, batch: listwatch.Batch) -> None:
        for key, event in batch.events.items():
            deleted = event.type is listwatch.EventType.DELETED
            self._objects[key] = None if deleted else event.object
            await self._enqueue(key)

    async def _enqueue(self, key: str) -> None:
        if key in self._queued:
            return  # already waiting: the worker will read the latest state when it gets there
        self._queued.add(key)
        try:
            await self._queue.put(key)  # waits while the queue is full
        except BaseException:
            self._queued.discard(key)  # cancelled while waiting (the generation ended)
            raise

    async def work(self) -> NoReturn:
        """Reconcile queued keys, one at a time, until cancelled."""
        while True:
            key = await self._queue.get()
            self._queued.discard(key)  # a change from now on queues the key again
            obj = self._objects.get(key)
            try:
                await self._reconcile(key, obj)
            except Exception:
                logger.exception("reconciling %s failed; the next snapshot retries it", key)
                continue
            if obj is None and key in self._objects and self._objects[key] is None:
                del self._objects[key]  # deleted and reconciled: forget the tombstone


class PodInfo:
    """The business logic: the ConfigMap ``<pod>-info`` mirrors its pod's phase and node."""

    def __init__(self, api: ApiClient) -> None:
        self._core = CoreV1Api(api)

    async def reconcile(self, key: str, pod: listwatch.JsonObject | None) -> None:
        namespace, name = key.split("/", 1)
        config_map = f"{name}-info"
        if pod is None:
            with _ignoring(404):  # already gone
                await self._core.delete_namespaced_config_map(config_map, namespace)
            logger.info("deleted %s/%s", namespace, config_map)
            return
        body = self.desired(pod, config_map)
        try:
            await self._core.replace_namespaced_config_map(config_map, namespace, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            await self._core.create_namespaced_config_map(namespace, body)
        logger.info("reconciled %s/%s", namespace, config_map)

    @staticmethod
    def desired(pod: listwatch.JsonObject, name: str) -> V1ConfigMap:
        metadata, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        owner = V1OwnerReference(
            api_version="v1", kind="Pod", name=metadata["name"], uid=metadata["uid"]
        )
        return V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=V1ObjectMeta(
                name=name,
                namespace=metadata["namespace"],
                labels={"app.kubernetes.io/managed-by": MANAGED_BY},
                owner_references=[owner],
            ),
            data={"phase": status.get("phase") or "", "node": spec.get("nodeName") or ""},
        )


@contextlib.contextmanager
def _ignoring(status: int) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        if exc.status != status:
            raise


async def run_operator(
    api: ApiClient,
    *,
    namespace: str,
    label_selector: str | None = None,
    merge_interval: float = 1.0,
    resync_period: float | None = 600.0,
    max_queued: int = 1000,
    backoff: listwatch.Backoff | None = None,
) -> None:
    """Run the operator until cancelled; raises (in an ExceptionGroup) if it cannot go on."""
    operator = Operator(PodInfo(api).reconcile, max_queued=max_queued)
    source = listwatch.ListWatch.from_client(
        api, "pods", namespace=namespace, label_selector=label_selector
    )
    syncer = listwatch.Syncer(
        source,
        on_list=operator.on_list,
        on_batch=operator.on_batch,
        merge_interval=merge_interval,
        resync_period=resync_period,
        backoff=backoff,
    )
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(syncer.run(), name="syncer")
        tasks.create_task(operator.work(), name="worker")


async def amain(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        async with await listwatch.connect(args.kubeconfig, context=args.context) as api:
            await run_operator(api, namespace=args.namespace, label_selector=args.selector)
    except* listwatch.FatalError as group:  # retrying cannot help: say why in one line
        raise SystemExit(f"operator_loop: {group.exceptions[0]}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="default", help="where pods are watched")
    parser.add_argument("--selector", help="a label selector for the pods, e.g. app=web")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--context", help="a kubeconfig context (default: the current one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass  # Ctrl-C or SIGTERM: the Syncer and the worker stopped, the ApiClient closed
    except config.ConfigException as exc:  # no kubeconfig, or not a usable one
        raise SystemExit(f"operator_loop: {exc}") from None


if __name__ == "__main__":
    main()
