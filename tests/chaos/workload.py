"""Churn: what a busy namespace does to the objects a Syncer mirrors.

ConfigMaps in two namespaces are created, updated, deleted, and deleted-and-recreated under
the same name (a new uid, a newer resourceVersion); a few hot keys get bursts of updates; now
and then an object grows to 1-5 MiB and later shrinks back. Every write is recorded in the
:class:`World` right after the server returned it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from listwatch.testing import FakeApiServer

from .monitors import Trace, World

NAMESPACES = ("default", "kube-system")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Churn:
    """The shape of the workload. ``rate`` is writes per second, roughly (it paces)."""

    names: int = 60
    hot_keys: int = 4
    initial: int = 40
    rate: float = 300.0
    burst: tuple[int, int] = (5, 30)
    big_probability: float = 0.004
    big_live_max: int = 2
    big_mib: tuple[int, int] = (1, 5)


def configmap(name: str, namespace: str, step: int, blob: str | None = None) -> dict[str, Any]:
    data = {"step": str(step), "payload": f"{name}-{step}-" + "x" * (step % 97)}
    if blob is not None:
        data["blob"] = blob
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "chaos"}},
        "data": data,
    }


class Workload:
    def __init__(
        self, server: FakeApiServer, world: World, trace: Trace, rng: random.Random, churn: Churn
    ) -> None:
        self.server = server
        self.world = world
        self.trace = trace
        self.rng = rng
        self.churn = churn
        self.keys = [(ns, f"cm-{i:03d}") for i in range(churn.names) for ns in NAMESPACES][
            : churn.names
        ]
        self.hot = self.keys[: churn.hot_keys]
        self.step = 0
        self.big_live: set[tuple[str, str]] = set()
        self.big_written = 0
        self.ops: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.ops[op] = self.ops.get(op, 0) + 1

    # -- single writes (each recorded in the world at once) ------------------------------

    async def create(self, namespace: str, name: str, blob: str | None = None) -> None:
        self.step += 1
        obj = await self.server.create(configmap(name, namespace, self.step, blob))
        key, rv = self.world.record(obj)
        self.trace.write(f"ADDED {key}@{rv}{' (big)' if blob else ''}")

    async def update(self, namespace: str, name: str, blob: str | None = None) -> bool:
        current = self.server.get("v1", "ConfigMap", name, namespace)
        if current is None:
            return False
        self.step += 1
        current["data"] = configmap(name, namespace, self.step, blob)["data"]
        obj = await self.server.replace(current)
        key, rv = self.world.record(obj)
        self.trace.write(f"MODIFIED {key}@{rv}{' (big)' if blob else ''}")
        return True

    async def delete(self, namespace: str, name: str) -> bool:
        current = self.server.get("v1", "ConfigMap", name, namespace)
        if current is None:
            return False
        final = await self.server.delete(current)
        key, rv = self.world.record(final, deleted=True)
        self.trace.write(f"DELETED {key}@{rv}")
        self.big_live.discard((namespace, name))
        return True

    # -- the churn ------------------------------------------------------------------------

    async def populate(self) -> None:
        for namespace, name in self.rng.sample(self.keys, min(self.churn.initial, len(self.keys))):
            await self.create(namespace, name)

    async def one_op(self) -> None:
        rng = self.rng
        namespace, name = rng.choice(self.keys)
        exists = self.server.get("v1", "ConfigMap", name, namespace) is not None
        roll = rng.random()
        if self._want_big() and exists:
            self._count("big object")
            self.big_live.add((namespace, name))
            self.big_written += 1
            size = rng.randint(*self.churn.big_mib) * MiB - rng.randint(0, 4096)
            await self.update(namespace, name, blob=_blob(rng, size))
        elif self.big_live and roll < 0.05:
            namespace, name = self.big_live.pop()
            self._count("shrink")
            await self.update(namespace, name)
        elif roll < 0.15:
            self._count("burst")
            for _ in range(rng.randint(*self.churn.burst)):
                hot_namespace, hot_name = rng.choice(self.hot)
                await self.update(hot_namespace, hot_name) or await self.create(
                    hot_namespace, hot_name
                )
        elif not exists:
            self._count("create")
            await self.create(namespace, name)
        elif roll < 0.30:
            self._count("delete")
            await self.delete(namespace, name)
        elif roll < 0.42:
            self._count("delete-recreate")
            await self.delete(namespace, name)
            await self.create(namespace, name)
        else:
            self._count("update")
            await self.update(namespace, name)

    def _want_big(self) -> bool:
        return (
            len(self.big_live) < self.churn.big_live_max
            and self.rng.random() < self.churn.big_probability
        )

    async def run(self, stop: asyncio.Event) -> None:
        mean_pause = 1.0 / self.churn.rate
        while not stop.is_set():
            await self.one_op()
            # Pacing the churn, not synchronisation.
            await asyncio.sleep(self.rng.uniform(0, 2 * mean_pause))

    async def storm(self, writes: int) -> None:
        """A burst of writes with no pause: watchers fall behind (used before compaction)."""
        for _ in range(writes):
            namespace, name = self.rng.choice(self.keys)
            await self.update(namespace, name) or await self.create(namespace, name)


def _blob(rng: random.Random, size: int) -> str:
    # Compressible but not constant: the fake gzips large LIST pages.
    unit = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4096))
    return (unit * (size // len(unit) + 1))[:size]
