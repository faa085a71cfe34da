"""Realistic pods: what a real cluster's pods look like, in two flavours made of one set of parts.

A mirror that works for 1 KB toy objects can still fall over on real ones, and parse cost
depends on the shape of the JSON (how many strings, dicts and lists), not only on its size.
Real pods carry labels, annotations, ownerReferences, several containers with env, ports,
probes and resources, a projected service-account volume, tolerations, a status with
conditions and container statuses, and ``managedFields`` (often the biggest part). The parts
below build those the way kube-controller-manager and the kubelet write them.

* :class:`PodFactory` makes the pods of a churning cluster (the demo's, 5-8 KB of JSON each):
  pods of an :class:`App` (a Deployment's ReplicaSet or a StatefulSet), stamped with the
  current time, and the kubelet's status updates to them. Everything random comes from one
  seeded ``random.Random``, so a seed replays the same pods.
* :func:`numbered_pod` makes pod number ``i`` of a fixed cluster (the benchmarks', ~7 KB): a
  pure function of ``(seed, index)`` with fixed timestamps. Its bytes are pinned (a test
  holds their hash): a benchmark result is only comparable with another over the same bytes.
  Values still vary per pod (names, uids, IPs, hashes, timestamps) so no decoder can win by
  caching repeated values that a real list would not repeat.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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


# -- the parts every pod is built from ------------------------------------------------------


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _uid(rng: random.Random) -> str:
    raw = _hex(rng, 32)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _uuid4(rng: random.Random) -> str:
    """A uid with the version and variant digits of a random (version 4) UUID."""
    raw = _hex(rng, 32)
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:]}"


def _controller_reference(kind: str, name: str, uid: str) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _managed_fields(
    spec: JsonDict, status: JsonDict, *, spec_time: str, status_time: str
) -> list[JsonDict]:
    """The two entries a real pod has: the controller's spec and the kubelet's status
    (abridged: a sidecar injected by a webhook has its own manager, left out here)."""
    return [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": spec_time,
            "fieldsType": "FieldsV1",
            "fieldsV1": spec,
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": status_time,
            "fieldsType": "FieldsV1",
            "fieldsV1": _status_fields(status),
            "subresource": "status",
        },
    ]


def _status_fields(conditions: JsonDict) -> JsonDict:
    return {
        "f:status": {
            "f:conditions": conditions,
            "f:containerStatuses": {},
            "f:hostIP": {},
            "f:phase": {},
            "f:podIP": {},
            "f:startTime": {},
        }
    }


def _ports(http: int, metrics: int) -> list[JsonDict]:
    return [
        {"name": "http", "containerPort": http, "protocol": "TCP"},
        {"name": "metrics", "containerPort": metrics, "protocol": "TCP"},
    ]


def _probe(path: str, port: int, *, initial: int | None, period: int = 10) -> JsonDict:
    probe: JsonDict = {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}}
    if initial is not None:
        probe["initialDelaySeconds"] = initial
    probe.update(
        {"timeoutSeconds": 1, "periodSeconds": period, "successThreshold": 1, "failureThreshold": 3}
    )
    return probe


def _token_mount() -> JsonDict:
    return {
        "name": "kube-api-access",
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }


def _token_volume() -> JsonDict:
    """The projected service-account token volume the admission controller adds."""
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


def _pod_spec(
    *, volumes: list[JsonDict], containers: list[JsonDict], service_account: str, node: str
) -> JsonDict:
    """A scheduled pod's spec, with the defaults the apiserver fills in."""
    return {
        "volumes": volumes,
        "containers": containers,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": service_account,
        "serviceAccount": service_account,
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
    }


def _running_status(
    *,
    conditions: Iterable[str],
    host_ip: str,
    pod_ip: str,
    started: str,
    containers: list[JsonDict],
) -> JsonDict:
    """A running pod's status: every condition true since ``started``."""
    return {
        "phase": "Running",
        "conditions": [
            {
                "type": kind,
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": started,
            }
            for kind in conditions
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "containerStatuses": containers,
        "qosClass": "Burstable",
    }


def _container_status(
    rng: random.Random, name: str, image: str, started: str, *, restarts: int = 0
) -> JsonDict:
    return {
        "name": name,
        "state": {"running": {"startedAt": started}},
        "lastState": {},
        "ready": True,
        "restartCount": restarts,
        "image": image,
        "imageID": f"{image.split(':', maxsplit=1)[0]}@sha256:{_hex(rng, 64)}",
        "containerID": f"containerd://{_hex(rng, 64)}",
        "started": True,
    }


# -- the pods of a churning cluster ---------------------------------------------------------


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
            owner_uid=_uuid4(rng),
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
        containers = [self._container(app)]
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
                _controller_reference(
                    "ReplicaSet" if app.kind == "Deployment" else "StatefulSet",
                    app.owner_name,
                    app.owner_uid,
                )
            ],
            "managedFields": _managed_fields(
                _app_spec_fields(), _app_status_conditions(), spec_time=now, status_time=now
            ),
        }
        if app.kind == "Deployment":
            metadata["generateName"] = f"{app.owner_name}-"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": _pod_spec(
                volumes=[
                    {"name": "config", "configMap": {"name": f"{app.name}-config"}},
                    _token_volume(),
                ],
                containers=containers,
                service_account=app.name,
                node=node,
            ),
            "status": _running_status(
                conditions=("Initialized", "Ready", "ContainersReady", "PodScheduled"),
                host_ip=host_ip,
                pod_ip=pod_ip,
                started=now,
                containers=[_container_status(rng, c["name"], c["image"], now) for c in containers],
            ),
        }

    def _container(self, app: App) -> JsonDict:
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
            "name": "app",
            "image": app.image,
            "ports": _ports(8080, 9090),
            "env": env,
            "resources": {
                "limits": {"cpu": f"{cpu * 2}m", "memory": f"{memory * 2}Mi"},
                "requests": {"cpu": f"{cpu}m", "memory": f"{memory}Mi"},
            },
            "volumeMounts": [
                {"name": "config", "readOnly": True, "mountPath": "/etc/app"},
                _token_mount(),
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
            target["containerID"] = f"containerd://{_hex(rng, 64)}"
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


def _app_spec_fields() -> JsonDict:
    """What kube-controller-manager owns of an app's pod (``managedFields``, abridged)."""
    return {
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


def _app_status_conditions() -> JsonDict:
    """The kubelet's ``managedFields`` of an app pod's conditions."""
    return {
        f'k:{{"type":"{kind}"}}': {
            ".": {},
            "f:lastProbeTime": {},
            "f:lastTransitionTime": {},
            "f:status": {},
            "f:type": {},
        }
        for kind in ("ContainersReady", "Initialized", "PodScheduled", "Ready")
    }


# -- the pods of a fixed cluster ------------------------------------------------------------

_NUMBERED_TEAMS = ("payments", "search", "checkout", "identity", "platform", "ml-serving", "ingest")
_ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")

NUMBERED_POD_NAMESPACES = tuple(f"team-{team}" for team in _NUMBERED_TEAMS)
"""The namespaces :func:`numbered_pod` puts its pods in."""


def _fixed_time(rng: random.Random, day: int) -> str:
    return (
        f"2025-11-{day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
        f"{rng.randrange(60):02d}Z"
    )


def numbered_pod(
    index: int, *, seed: int = 0, annotations: Mapping[str, str] | None = None
) -> JsonDict:
    """Pod number ``index``: deterministic, about 7 KB of JSON, as a list item (no kind).

    ``annotations`` are added after the pod's own (a benchmark stamps its send time there).
    """
    rng = random.Random(f"{seed}:{index}")
    team = _NUMBERED_TEAMS[index % len(_NUMBERED_TEAMS)]
    namespace = NUMBERED_POD_NAMESPACES[index % len(NUMBERED_POD_NAMESPACES)]
    app = f"{team}-svc-{index % 97}"
    template_hash = hashlib.blake2s(app.encode(), digest_size=5).hexdigest()
    name = f"{app}-{template_hash}-{index:07d}"
    version = f"v{rng.randrange(1, 9)}.{rng.randrange(30)}.{rng.randrange(10)}"
    image = f"registry.example.com/{team}/{app}:{version}"
    sidecar_image = "registry.example.com/platform/envoy-proxy:v1.31.2"
    created = _fixed_time(rng, 12)
    started = _fixed_time(rng, 13)
    node = f"ip-10-{rng.randrange(256)}-{rng.randrange(256)}-{rng.randrange(256)}.ec2.internal"
    pod_ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    host_ip = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
    owner = f"{app}-{template_hash}"
    # The order of the rng calls below is part of the pinned bytes: keep it.
    return {
        "metadata": {
            "name": name,
            "generateName": f"{owner}-",
            "namespace": namespace,
            "uid": _uid(rng),
            "resourceVersion": str(1000 + index),
            "creationTimestamp": created,
            "labels": {
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/part-of": team,
                "app.kubernetes.io/version": version,
                "pod-template-hash": template_hash,
                "topology.kubernetes.io/zone": _ZONES[index % len(_ZONES)],
                "team": team,
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": _fixed_time(rng, 10),
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9080",
                "checksum/config": _hex(rng, 64),
                **(annotations or {}),
            },
            "ownerReferences": [_controller_reference("ReplicaSet", owner, _uid(rng))],
            "managedFields": _managed_fields(
                {
                    "f:metadata": {
                        "f:annotations": {".": {}, "f:kubectl.kubernetes.io/restartedAt": {}},
                        "f:generateName": {},
                        "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:team": {}},
                        "f:ownerReferences": {".": {}, f'k:{{"uid":"{_uid(rng)}"}}': {}},
                    },
                    "f:spec": {
                        "f:containers": {
                            'k:{"name":"app"}': _numbered_container_fields(),
                            'k:{"name":"proxy"}': {".": {}, "f:image": {}, "f:name": {}},
                        },
                        "f:dnsPolicy": {},
                        "f:restartPolicy": {},
                        "f:schedulerName": {},
                        "f:terminationGracePeriodSeconds": {},
                    },
                },
                {
                    f'k:{{"type":"{kind}"}}': {".": {}, "f:status": {}}
                    for kind in ("ContainersReady", "Initialized", "Ready")
                },
                spec_time=created,
                status_time=started,
            ),
        },
        "spec": _pod_spec(
            volumes=[
                _token_volume(),
                {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            ],
            containers=[
                _numbered_container(
                    rng, "app", image, port=8080, namespace=namespace, extra_env=rng.randrange(1, 4)
                ),
                _numbered_container(
                    rng, "proxy", sidecar_image, port=15000, namespace=namespace, extra_env=0
                ),
            ],
            service_account=app,
            node=node,
        ),
        "status": _running_status(
            conditions=(
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            ),
            host_ip=host_ip,
            pod_ip=pod_ip,
            started=started,
            containers=[
                _container_status(rng, "app", image, started, restarts=rng.choice((0, 0, 0, 1, 2))),
                _container_status(
                    rng, "proxy", sidecar_image, started, restarts=rng.choice((0, 0, 0, 1, 2))
                ),
            ],
        ),
    }


def _numbered_container_fields() -> JsonDict:
    """The ``managedFields`` shape of one container: nested ``f:`` keys, as the server writes."""
    return {
        ".": {},
        "f:env": {
            ".": {},
            'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}},
            'k:{"name":"POD_NAME"}': {
                ".": {},
                "f:name": {},
                "f:valueFrom": {".": {}, "f:fieldRef": {}},
            },
            'k:{"name":"POD_IP"}': {
                ".": {},
                "f:name": {},
                "f:valueFrom": {".": {}, "f:fieldRef": {}},
            },
        },
        "f:image": {},
        "f:imagePullPolicy": {},
        "f:name": {},
        "f:ports": {".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}}},
        "f:resources": {".": {}, "f:limits": {".": {}, "f:memory": {}}, "f:requests": {}},
        "f:terminationMessagePath": {},
        "f:terminationMessagePolicy": {},
    }


def _numbered_container(
    rng: random.Random, name: str, image: str, *, port: int, namespace: str, extra_env: int
) -> JsonDict:
    env: list[JsonDict] = [
        {"name": "LOG_LEVEL", "value": rng.choice(("info", "debug", "warn"))},
        {
            "name": "POD_NAME",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
        {
            "name": "POD_IP",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
        },
        {"name": "NAMESPACE", "value": namespace},
        {
            "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
            "value": "http://otel-collector.observability:4317",
        },
        {"name": "FEATURE_FLAGS", "value": ",".join(rng.sample(("a", "b", "c", "d", "e", "f"), 3))},
    ]
    if extra_env:
        env.extend({"name": f"CONFIG_{i}", "value": _hex(rng, 16)} for i in range(extra_env))
    else:  # a sidecar: fewer settings
        env = env[:2]
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": _ports(port, port + 1000),
        "env": env,
        "resources": {
            "limits": {"cpu": "1", "memory": f"{rng.choice((256, 512, 1024))}Mi"},
            "requests": {"cpu": f"{rng.choice((50, 100, 250))}m", "memory": "128Mi"},
        },
        "livenessProbe": _probe("/healthz", port, initial=10),
        "readinessProbe": _probe("/ready", port, initial=None, period=5),
        "volumeMounts": [_token_mount(), {"name": "config", "mountPath": "/etc/app"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
