"""Churn: what a busy cluster does to the objects a Syncer mirrors, on a ``FakeApiServer``.

Two workloads, one per question:

* :class:`PodWorkload` (the demo's): *does the mirror hold up on a real cluster?* Realistic
  pods (``_pods.py``) that change the way pods change: the kubelet updates status,
  Deployments scale up and down (new names), StatefulSets recreate a pod under the *same*
  name (a new uid), which is exactly the case a mirror keyed by name must get right.
* :class:`ConfigMapWorkload` (the chaos suite's): *does every promise hold at every moment?*
  ConfigMaps in two namespaces are created, updated, deleted, and deleted-and-recreated under
  the same name; a few hot keys get bursts of updates; now and then an object grows to
  1-5 MiB and later shrinks back. Every write is reported to a :class:`WriteLog` right after
  the server returned it, so monitors can know the server's state at any resourceVersion.

Both change objects one ``step()`` at a time and can ``storm(n)``: n writes with no pause,
which a fault uses to leave the server's watchers behind before a compaction. Everything
random comes from the seeded ``random.Random`` a workload is given, so a seed replays the
same choices.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn, Protocol

from listwatch.testing import FakeApiServer
from listwatch.testing.scenario._pods import _COMPONENTS, App, PodFactory, namespace_names

# -- the demo's pods ----------------------------------------------------------------------


@dataclass
class ChurnCounts:
    """What the churn wrote, by kind of change."""

    creates: int = 0
    updates: int = 0
    """The kubelet's status changes."""
    deletes: int = 0
    recreates: int = 0
    """A pod deleted and created again under the same name (a new uid): a StatefulSet's."""

    @property
    def writes(self) -> int:
        """Writes to the server (a recreate is two: a delete and a create)."""
        return self.creates + self.updates + self.deletes + 2 * self.recreates


class _KeySample:
    """A set of keys with O(1) add, remove and uniform random choice (a list plus positions)."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._position: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        if key not in self._position:
            self._position[key] = len(self._keys)
            self._keys.append(key)

    def remove(self, key: str) -> None:
        index = self._position.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[index] = last
            self._position[last] = index

    def choice(self, rng: random.Random) -> str:
        return self._keys[rng.randrange(len(self._keys))]


#: Seconds between churn bursts: small enough to look continuous, large enough that a burst
#: is several writes (the server's watchers then catch up on several events at once).
CHURN_TICK = 0.05


class PodWorkload:
    """A realistic cluster's pods, on a ``FakeApiServer``, and the churn that changes them.

    It remembers which pods exist and which app owns each, not their bodies (thousands of
    pod bodies are tens of megabytes of dicts): an update reads the pod from the server and
    sends it back with its resourceVersion, a real optimistic-concurrency precondition.
    """

    PATH: ClassVar[str] = "/api/v1/pods"
    """Where its objects are listed and watched, across namespaces."""

    def __init__(
        self, server: FakeApiServer, rng: random.Random, *, pods: int, namespaces: int
    ) -> None:
        if pods < 1:
            raise ValueError("at least one pod is needed")
        self.server = server
        self._rng = rng
        self._factory = PodFactory(rng)
        self.target = pods
        self.namespaces = namespace_names(namespaces)
        self.apps: list[App] = []
        self._keys = _KeySample()  # "namespace/name" of every pod
        self._owner: dict[str, App] = {}
        self.counts = ChurnCounts()
        self._plan_apps(pods)
        self._deployments = [app for app in self.apps if app.kind == "Deployment"] or self.apps
        self._statefulsets = [app for app in self.apps if app.kind == "StatefulSet"]

    def _plan_apps(self, pods: int) -> None:
        """Apps of 2-12 replicas, round-robin over the namespaces until there are ``pods``;
        each namespace takes its components in its own shuffled order, so even a small
        workload has StatefulSets."""
        rng, remaining, index = self._rng, pods, 0
        unused: dict[str, list[str]] = {}  # per namespace: components left in this round
        made: dict[str, int] = {}  # per namespace: apps made so far
        while remaining > 0:
            namespace = self.namespaces[index % len(self.namespaces)]
            if not unused.get(namespace):
                unused[namespace] = rng.sample(_COMPONENTS, len(_COMPONENTS))
            component = unused[namespace].pop()
            round_ = made.get(namespace, 0) // len(_COMPONENTS)
            made[namespace] = made.get(namespace, 0) + 1
            replicas = min(remaining, rng.randint(2, 12))
            suffix = f"-{round_ + 1}" if round_ else ""
            self.apps.append(self._factory.app(namespace, component, replicas, suffix=suffix))
            remaining -= replicas
            index += 1

    @property
    def size(self) -> int:
        return len(self._keys)

    async def populate(self) -> None:
        """Create every app's pods (the namespaces must exist on the server)."""
        for app in self.apps:
            for _ in range(app.replicas):
                await self._create(app, self._factory.new_name(app))

    async def churn(self, rate: float) -> NoReturn:
        """Change pods at ``rate`` writes per second, in small bursts, until cancelled."""
        if rate <= 0:
            raise ValueError("the churn rate must be positive")
        owed = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(CHURN_TICK)
            now = time.monotonic()
            owed += (now - last) * rate
            last = now
            while owed >= 1.0:
                await self.step()
                owed -= 1.0

    async def storm(self, writes: int) -> None:
        """``writes`` changes with no pause: the server's watchers fall behind."""
        for _ in range(writes):
            await self.step()

    async def step(self) -> None:
        """One change, chosen like a busy cluster's: mostly status updates, some scaling,
        some StatefulSet pods recreated under the same name. The pod count stays near the
        target: below it creates win, above it deletes do."""
        rng = self._rng
        roll = rng.random()
        drift = (self.size - self.target) / self.target
        if not self._keys or roll < 0.12 - drift:
            app = rng.choice(self._deployments)
            await self._create(app, self._factory.new_name(app))
            self.counts.creates += 1
            return
        if roll < 0.16:
            stateful = [app for app in self._statefulsets if app.pods]
            if stateful:
                app = rng.choice(stateful)
                name = rng.choice(sorted(app.pods))
                await self._delete(f"{app.namespace}/{name}")
                await self._create(app, name)  # same name, new uid: a StatefulSet recreate
                self.counts.recreates += 1
                return
        if roll < 0.24:
            await self._delete(self._keys.choice(rng))
            self.counts.deletes += 1
            return
        namespace, name = self._keys.choice(rng).split("/", 1)
        current = self.server.get("v1", "Pod", name, namespace)
        if current is None:
            raise RuntimeError(f"pod {namespace}/{name} vanished: something else deletes pods")
        await self.server.replace(self._factory.status_change(current))
        self.counts.updates += 1

    async def _create(self, app: App, name: str) -> None:
        await self.server.create(self._factory.pod(app, name))
        key = f"{app.namespace}/{name}"
        self._keys.add(key)
        self._owner[key] = app
        app.pods.add(name)

    async def _delete(self, key: str) -> None:
        self._keys.remove(key)
        app = self._owner.pop(key)
        namespace, name = key.split("/", 1)
        app.pods.discard(name)
        await self.server.delete(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}}
        )


# -- the chaos suite's ConfigMaps ----------------------------------------------------------

_CONFIGMAP_NAMESPACES = ("default", "kube-system")
_MiB = 1024 * 1024

WriteKind = Literal["ADDED", "MODIFIED", "DELETED"]


class WriteLog(Protocol):
    """Told of every write right after the server returned it, in the same event-loop step
    (the fake's ``create``/``replace``/``delete`` never suspend), so no receiver can see a
    write the log has not been told of."""

    def written(self, kind: WriteKind, obj: Mapping[str, Any], *, big: bool) -> None:
        """``obj`` as the server answered (a deletion's final state for ``DELETED``);
        ``big``: it carries a blob of 1-5 MiB."""


@dataclass(frozen=True)
class Churn:
    """The shape of a :class:`ConfigMapWorkload`. ``rate`` is writes per second, roughly
    (it paces)."""

    names: int = 60
    hot_keys: int = 4
    initial: int = 40
    rate: float = 300.0
    burst: tuple[int, int] = (5, 30)
    big_probability: float = 0.004
    big_live_max: int = 2
    big_mib: tuple[int, int] = (1, 5)


def configmap(name: str, namespace: str, step: int, blob: str | None = None) -> dict[str, Any]:
    """A ConfigMap whose data depends on ``step`` (so each write changes it)."""
    data = {"step": str(step), "payload": f"{name}-{step}-" + "x" * (step % 97)}
    if blob is not None:
        data["blob"] = blob
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "chaos"}},
        "data": data,
    }


class ConfigMapWorkload:
    """ConfigMaps under churn of every kind, each write told to a :class:`WriteLog`."""

    PATH: ClassVar[str] = "/api/v1/configmaps"
    """Where its objects are listed and watched, across namespaces."""

    def __init__(
        self, server: FakeApiServer, log: WriteLog, rng: random.Random, churn: Churn
    ) -> None:
        self.server = server
        self.log = log
        self.rng = rng
        self.churn = churn
        self.keys = [
            (ns, f"cm-{i:03d}") for i in range(churn.names) for ns in _CONFIGMAP_NAMESPACES
        ][: churn.names]
        self.hot = self.keys[: churn.hot_keys]
        self.serial = 0  # bumped by every create and update: each write changes the data
        self.big_live: set[tuple[str, str]] = set()
        self.big_written = 0
        self.ops: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.ops[op] = self.ops.get(op, 0) + 1

    # -- single writes (each told to the log at once) -------------------------------------

    async def create(self, namespace: str, name: str, blob: str | None = None) -> None:
        self.serial += 1
        obj = await self.server.create(configmap(name, namespace, self.serial, blob))
        self.log.written("ADDED", obj, big=blob is not None)

    async def update(self, namespace: str, name: str, blob: str | None = None) -> bool:
        current = self.server.get("v1", "ConfigMap", name, namespace)
        if current is None:
            return False
        self.serial += 1
        current["data"] = configmap(name, namespace, self.serial, blob)["data"]
        obj = await self.server.replace(current)
        self.log.written("MODIFIED", obj, big=blob is not None)
        return True

    async def delete(self, namespace: str, name: str) -> bool:
        current = self.server.get("v1", "ConfigMap", name, namespace)
        if current is None:
            return False
        final = await self.server.delete(current)
        self.log.written("DELETED", final, big=False)
        self.big_live.discard((namespace, name))
        return True

    # -- the churn ------------------------------------------------------------------------

    async def populate(self) -> None:
        for namespace, name in self.rng.sample(self.keys, min(self.churn.initial, len(self.keys))):
            await self.create(namespace, name)

    async def step(self) -> None:
        """One change: mostly updates, creates and deletes of random keys, some
        delete-and-recreate, bursts on the hot keys, now and then a big object or a shrink."""
        rng = self.rng
        namespace, name = rng.choice(self.keys)
        exists = self.server.get("v1", "ConfigMap", name, namespace) is not None
        roll = rng.random()
        if self._want_big() and exists:
            self._count("big object")
            self.big_live.add((namespace, name))
            self.big_written += 1
            size = rng.randint(*self.churn.big_mib) * _MiB - rng.randint(0, 4096)
            await self.update(namespace, name, blob=_blob(rng, size))
        elif self.big_live and roll < 0.05:
            namespace, name = self.big_live.pop()
            self._count("shrink")
            await self.update(namespace, name)
        elif roll < 0.15:
            self._count("burst")
            for _ in range(rng.randint(*self.churn.burst)):
                hot_namespace, hot_name = rng.choice(self.hot)
                if not await self.update(hot_namespace, hot_name):
                    await self.create(hot_namespace, hot_name)
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
        """Steps at about ``churn.rate`` per second until ``stop`` is set."""
        mean_pause = 1.0 / self.churn.rate
        while not stop.is_set():
            await self.step()
            # Pacing the churn, not synchronisation.
            await asyncio.sleep(self.rng.uniform(0, 2 * mean_pause))

    async def storm(self, writes: int) -> None:
        """``writes`` writes with no pause: the server's watchers fall behind."""
        for _ in range(writes):
            namespace, name = self.rng.choice(self.keys)
            if not await self.update(namespace, name):
                await self.create(namespace, name)


def _blob(rng: random.Random, size: int) -> str:
    # Compressible but not constant: the fake gzips large LIST pages.
    unit = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4096))
    return (unit * (size // len(unit) + 1))[:size]
