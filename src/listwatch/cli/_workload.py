"""A realistic pod workload for the demo: what a real cluster's pods look like, and churn.

A mirror that works for 1 KB toy objects can still fall over on real ones: real pods carry
labels, annotations, ownerReferences, several containers with env, ports, probes and
resources, a status with conditions and container statuses, and ``managedFields`` (often the
biggest part). So the demo's pods are built like the ones kube-controller-manager and the
kubelet write, 5-8 KB of JSON each, and they change the way pods change: the kubelet
updates status, Deployments scale up and down (new names), StatefulSets recreate a pod under
the *same* name (a new uid), which is exactly the case a mirror keyed by name must get right.

Everything random comes from one seeded ``random.Random``, so a seed replays a run's churn.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn

from listwatch.testing import FakeApiServer

JsonDict = dict[str, Any]

_TEAMS = (
    "payments",
    "checkout",
    "search",
    "catalog",
    "identity",
    "billing",
    "ledger",
    "notifications",
    "inventory",
    "shipping",
    "analytics",
    "gateway",
    "frontend",
    "recommendations",
    "media",
    "reporting",
    "scheduler",
    "ingest",
    "monitoring",
    "messaging",
)
_COMPONENTS = ("api", "worker", "web", "consumer", "cron", "cache", "db", "broker", "proxy")
_STATEFUL = frozenset({"db", "broker", "cache"})
_SIDECARS = ("envoy", "log-shipper", "otel-agent")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's name generator's alphabet

PodKind = Literal["Deployment", "StatefulSet"]


def namespace_names(count: int) -> list[str]:
    """``count`` team namespaces: ``payments``, ``checkout``, ... then ``payments-2``, ..."""
    if count < 1:
        raise ValueError("at least one namespace is needed")
    names = []
    for index in range(count):
        team = _TEAMS[index % len(_TEAMS)]
        round_ = index // len(_TEAMS)
        names.append(team if round_ == 0 else f"{team}-{round_ + 1}")
    return names


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_NAME_ALPHABET) for _ in range(length))


@dataclass
class App:
    """One workload controller (a Deployment's ReplicaSet or a StatefulSet) and its pods."""

    namespace: str
    team: str
    component: str
    name: str
    kind: PodKind
    replicas: int
    template_hash: str
    owner_uid: str
    image: str
    sidecar: str | None
    pods: set[str] = field(default_factory=set)

    @property
    def owner_name(self) -> str:
        if self.kind == "StatefulSet":
            return self.name
        return f"{self.name}-{self.template_hash}"


class PodFactory:
    """Builds pod bodies the way the controllers and the kubelet leave them."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def app(self, namespace: str, component: str, replicas: int, *, suffix: str = "") -> App:
        """An app of ``component`` (``api``, ``db``...) in ``namespace``; databases, brokers
        and caches are StatefulSets, the rest Deployments."""
        rng = self._rng
        team = namespace.split("-", maxsplit=1)[0]
        kind: PodKind = "StatefulSet" if component in _STATEFUL else "Deployment"
        version = f"{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
        return App(
            namespace=namespace,
            team=team,
            component=component,
            name=f"{team}-{component}{suffix}",
            kind=kind,
            replicas=replicas,
            template_hash=_suffix(rng, 10),
            owner_uid=_uuid(rng),
            image=f"registry.example.com/{team}/{component}:v{version}",
            sidecar=rng.choice(_SIDECARS) if rng.random() < 0.5 else None,
        )

    def new_name(self, app: App) -> str:
        """A name for the app's next pod: ``web-6d4f9c8b7d-x2k9p`` or ``db-3``."""
        if app.kind == "StatefulSet":
            ordinal = 0
            while f"{app.name}-{ordinal}" in app.pods:
                ordinal += 1
            return f"{app.name}-{ordinal}"
        return f"{app.owner_name}-{_suffix(self._rng)}"

    def pod(self, app: App, name: str) -> JsonDict:
        """A running pod of ``app`` named ``name``, as after scheduling and startup."""
        rng = self._rng
        now = _now()
        node = f"node-{rng.randint(1, 60):03d}.eu-west-1.compute.internal"
        host_ip = f"10.0.{rng.randint(0, 15)}.{rng.randint(2, 254)}"
        pod_ip = f"10.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        labels = {
            "app.kubernetes.io/name": app.name,
            "app.kubernetes.io/instance": f"{app.name}-{app.namespace}",
            "app.kubernetes.io/component": app.component,
            "app.kubernetes.io/part-of": app.team,
            "app.kubernetes.io/managed-by": "helm",
            "app.kubernetes.io/version": app.image.rsplit(":", 1)[1],
        }
        if app.kind == "Deployment":
            labels["pod-template-hash"] = app.template_hash
        else:
            labels["controller-revision-hash"] = f"{app.name}-{app.template_hash}"
            labels["statefulset.kubernetes.io/pod-name"] = name
        containers = [self._container(app, main=True)]
        if app.sidecar is not None:
            containers.append(self._sidecar(app.sidecar))
        metadata: JsonDict = {
            "name": name,
            "namespace": app.namespace,
            "labels": labels,
            "annotations": {
                "kubectl.kubernetes.io/default-container": "app",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "prometheus.io/path": "/metrics",
                "checksum/config": hashlib.sha256(app.name.encode()).hexdigest(),
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet" if app.kind == "Deployment" else "StatefulSet",
                    "name": app.owner_name,
                    "uid": app.owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": _managed_fields(now),
        }
        if app.kind == "Deployment":
            metadata["generateName"] = f"{app.owner_name}-"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "volumes": [
                    {"name": "config", "configMap": {"name": f"{app.name}-config"}},
                    _token_volume(),
                ],
                "containers": containers,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": app.name,
                "serviceAccount": app.name,
                "nodeName": node,
                "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
                "schedulerName": "default-scheduler",
                "tolerations": [
                    {
                        "key": f"node.kubernetes.io/{taint}",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    }
                    for taint in ("not-ready", "unreachable")
                ],
                "priority": 0,
                "enableServiceLinks": True,
                "preemptionPolicy": "PreemptLowerPriority",
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": kind,
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": now,
                    }
                    for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                ],
                "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}],
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "startTime": now,
                "containerStatuses": [self._container_status(c, now) for c in containers],
                "qosClass": "Burstable",
            },
        }

    def _container(self, app: App, *, main: bool) -> JsonDict:
        rng = self._rng
        env = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "LOG_LEVEL", "value": rng.choice(("info", "debug", "warn"))},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector:4317"},
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": f"{app.name}-db", "key": "url"}},
            },
        ]
        env.extend(
            {"name": f"FEATURE_{flag}", "value": rng.choice(("true", "false"))}
            for flag in rng.sample(("CACHE", "BATCHING", "V2_API", "TRACING"), rng.randint(0, 3))
        )
        cpu = rng.choice((100, 250, 500))
        memory = rng.choice((128, 256, 512))
        return {
            "name": "app" if main else "worker",
            "image": app.image,
            "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
            ],
            "env": env,
            "resources": {
                "limits": {"cpu": f"{cpu * 2}m", "memory": f"{memory * 2}Mi"},
                "requests": {"cpu": f"{cpu}m", "memory": f"{memory}Mi"},
            },
            "volumeMounts": [
                {"name": "config", "readOnly": True, "mountPath": "/etc/app"},
                {
                    "name": "kube-api-access",
                    "readOnly": True,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                },
            ],
            "livenessProbe": _probe("/healthz", 8080, initial=10),
            "readinessProbe": _probe("/readyz", 8080, initial=5),
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }

    @staticmethod
    def _sidecar(name: str) -> JsonDict:
        return {
            "name": name,
            "image": f"registry.example.com/platform/{name}:1.29.3",
            "args": ["--config", f"/etc/{name}/config.yaml", "--log-format", "json"],
            "ports": [{"name": "admin", "containerPort": 15000, "protocol": "TCP"}],
            "resources": {
                "limits": {"cpu": "200m", "memory": "128Mi"},
                "requests": {"cpu": "50m", "memory": "64Mi"},
            },
            "readinessProbe": _probe("/ready", 15000, initial=1),
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        }

    def _container_status(self, container: JsonDict, started: str) -> JsonDict:
        rng = self._rng
        return {
            "name": container["name"],
            "state": {"running": {"startedAt": started}},
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": container["image"],
            "imageID": f"{container['image'].split(':')[0]}@sha256:{_hex(rng, 256)}",
            "containerID": f"containerd://{_hex(rng, 256)}",
            "started": True,
        }

    def status_change(self, pod: JsonDict) -> JsonDict:
        """Apply one kubelet status update to ``pod`` (in place, and return it): a container
        restart, or a readiness flip."""
        rng = self._rng
        status = pod["status"]
        now = _now()
        statuses = status["containerStatuses"]
        target = rng.choice(statuses)
        if rng.random() < 0.4:
            target["lastState"] = {
                "terminated": {
                    "exitCode": rng.choice((1, 137, 143)),
                    "reason": rng.choice(("Error", "OOMKilled", "Completed")),
                    "startedAt": target["state"].get("running", {}).get("startedAt", now),
                    "finishedAt": now,
                    "containerID": target["containerID"],
                }
            }
            target["restartCount"] += 1
            target["state"] = {"running": {"startedAt": now}}
            target["containerID"] = f"containerd://{_hex(rng, 256)}"
        else:
            target["ready"] = not target["ready"]
        ready = all(s["ready"] for s in statuses)
        for condition in status["conditions"]:
            if condition["type"] in ("Ready", "ContainersReady"):
                value = "True" if ready else "False"
                if condition["status"] != value:
                    condition["status"] = value
                    condition["lastTransitionTime"] = now
        pod["metadata"]["managedFields"][-1]["time"] = now
        return pod


def _uuid(rng: random.Random) -> str:
    raw = _hex(rng, 128)
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:]}"


def _probe(path: str, port: int, *, initial: int) -> JsonDict:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": initial,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def _token_volume() -> JsonDict:
    return {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": 420,
        },
    }


def _managed_fields(now: str) -> list[JsonDict]:
    """The two entries a real pod has: the controller's spec and the kubelet's status
    (abridged: a sidecar injected by a webhook has its own manager, left out here)."""
    spec_fields: JsonDict = {
        "f:metadata": {
            "f:generateName": {},
            "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:pod-template-hash": {}},
            "f:ownerReferences": {".": {}, 'k:{"uid":"…"}': {}},
        },
        "f:spec": {
            "f:containers": {
                'k:{"name":"app"}': {
                    ".": {},
                    "f:env": {".": {}},
                    "f:image": {},
                    "f:imagePullPolicy": {},
                    "f:name": {},
                    "f:ports": {".": {}},
                    "f:resources": {".": {}, "f:limits": {}, "f:requests": {}},
                    "f:terminationMessagePath": {},
                    "f:terminationMessagePolicy": {},
                }
            },
            "f:dnsPolicy": {},
            "f:restartPolicy": {},
            "f:schedulerName": {},
            "f:securityContext": {},
            "f:terminationGracePeriodSeconds": {},
        },
    }
    status_fields: JsonDict = {
        "f:status": {
            "f:conditions": {
                f'k:{{"type":"{kind}"}}': {
                    ".": {},
                    "f:lastProbeTime": {},
                    "f:lastTransitionTime": {},
                    "f:status": {},
                    "f:type": {},
                }
                for kind in ("ContainersReady", "Initialized", "PodScheduled", "Ready")
            },
            "f:containerStatuses": {},
            "f:hostIP": {},
            "f:phase": {},
            "f:podIP": {},
            "f:startTime": {},
        }
    }
    return [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": spec_fields,
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": status_fields,
            "subresource": "status",
        },
    ]


@dataclass
class ChurnCounts:
    """What the churn wrote, by kind of change."""

    creates: int = 0
    updates: int = 0
    deletes: int = 0
    recreates: int = 0

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


class Workload:
    """The demo cluster's pods, on a ``FakeApiServer``, and the churn that changes them.

    It remembers which pods exist and which app owns each, not their bodies (thousands of
    pod bodies are tens of megabytes of dicts): an update reads the pod from the server and
    sends it back with its resourceVersion, a real optimistic-concurrency precondition.
    """

    def __init__(
        self, server: FakeApiServer, rng: random.Random, *, pods: int, namespaces: int
    ) -> None:
        if pods < 1:
            raise ValueError("at least one pod is needed")
        self._server = server
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
        current = self._server.get("v1", "Pod", name, namespace)
        if current is None:
            raise RuntimeError(f"pod {namespace}/{name} vanished: something else deletes pods")
        await self._server.replace(self._factory.status_change(current))
        self.counts.updates += 1

    async def _create(self, app: App, name: str) -> None:
        await self._server.create(self._factory.pod(app, name))
        key = f"{app.namespace}/{name}"
        self._keys.add(key)
        self._owner[key] = app
        app.pods.add(name)

    async def _delete(self, key: str) -> None:
        self._keys.remove(key)
        app = self._owner.pop(key)
        namespace, name = key.split("/", 1)
        app.pods.discard(name)
        await self._server.delete(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}}
        )
