"""Realistic pod bodies (~7 KB of JSON each) and the pre-serialized bytes the server sends.

Parse cost depends on the shape of the JSON (how many strings, dicts and lists), not only on
its size, so the pods look like what a Deployment produces on a real cluster: labels,
annotations, an ownerReference, ``managedFields`` of two managers, two containers with env,
ports, resources and probes, a projected service-account volume, tolerations, and a status
with conditions and container statuses. Values vary per pod (names, uids, IPs, hashes,
timestamps) so no decoder can win by caching repeated values that a real list would not
repeat.

Watch event bodies are built once per key as a *template*: the JSON split around two
fixed-width placeholders, the resourceVersion and a send timestamp (an annotation). The server
then makes each event line by concatenation, which is a memcpy, so it can stamp the time of
writing into an event (latency) or stream a million events without holding them all.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

JsonDict = dict[str, Any]

LIST_RESOURCE_VERSION = "1"
"""Every list is served at this RV; watches start from it."""

RV_WIDTH = 12
"""Event resourceVersions are zero-padded to this width, so the body size never changes."""

SENT_AT_ANNOTATION = "bench.listwatch.io/sent-at"
"""The annotation that carries ``time.time()`` of the server's write, for latency."""

SENT_AT_WIDTH = 20
"""``f"{time.time():020.9f}"``: seconds with nanosecond digits, fixed width."""

_RV_MARK = "\x01RV\x01"
_SENT_MARK = "\x01SENT\x01"
_RV_MARK_JSON = orjson.dumps(_RV_MARK)[1:-1]
_SENT_MARK_JSON = orjson.dumps(_SENT_MARK)[1:-1]

_TEAMS = ("payments", "search", "checkout", "identity", "platform", "ml-serving", "ingest")
_ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
_NAMESPACES = tuple(f"team-{team}" for team in _TEAMS)


def format_rv(rv: int) -> bytes:
    """A resourceVersion as the fixed-width digits spliced into an event."""
    return str(rv).zfill(RV_WIDTH).encode()


def format_sent_at(timestamp: float) -> bytes:
    """A send timestamp as the fixed-width digits spliced into an event."""
    return f"{timestamp:0{SENT_AT_WIDTH}.9f}".encode()


ZERO_SENT_AT = format_sent_at(0.0)


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _uid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _time(rng: random.Random, day: int = 14) -> str:
    return (
        f"2025-11-{day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
        f"{rng.randrange(60):02d}Z"
    )


def _container_fields() -> JsonDict:
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


def _container(
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
        "ports": [
            {"name": "http", "containerPort": port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": port + 1000, "protocol": "TCP"},
        ],
        "env": env,
        "resources": {
            "limits": {"cpu": "1", "memory": f"{rng.choice((256, 512, 1024))}Mi"},
            "requests": {"cpu": f"{rng.choice((50, 100, 250))}m", "memory": "128Mi"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"},
            "timeoutSeconds": 1,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {
                "name": "kube-api-access",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            },
            {"name": "config", "mountPath": "/etc/app"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def _container_status(rng: random.Random, name: str, image: str, started: str) -> JsonDict:
    return {
        "name": name,
        "state": {"running": {"startedAt": started}},
        "lastState": {},
        "ready": True,
        "restartCount": rng.choice((0, 0, 0, 1, 2)),
        "image": image,
        "imageID": f"{image.split(':', maxsplit=1)[0]}@sha256:{_hex(rng, 64)}",
        "containerID": f"containerd://{_hex(rng, 64)}",
        "started": True,
    }


def pod(index: int, *, seed: int = 0) -> JsonDict:
    """Pod number ``index``: deterministic, about 7 KB of JSON, as a list item (no kind)."""
    rng = random.Random(f"{seed}:{index}")
    team = _TEAMS[index % len(_TEAMS)]
    namespace = _NAMESPACES[index % len(_NAMESPACES)]
    app = f"{team}-svc-{index % 97}"
    template_hash = hashlib.blake2s(app.encode(), digest_size=5).hexdigest()
    name = f"{app}-{template_hash}-{index:07d}"
    version = f"v{rng.randrange(1, 9)}.{rng.randrange(30)}.{rng.randrange(10)}"
    image = f"registry.example.com/{team}/{app}:{version}"
    sidecar_image = "registry.example.com/platform/envoy-proxy:v1.31.2"
    created = _time(rng, 12)
    started = _time(rng, 13)
    node = f"ip-10-{rng.randrange(256)}-{rng.randrange(256)}-{rng.randrange(256)}.ec2.internal"
    pod_ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    host_ip = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
    owner = f"{app}-{template_hash}"
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
                "kubectl.kubernetes.io/restartedAt": _time(rng, 10),
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9080",
                "checksum/config": _hex(rng, 64),
                SENT_AT_ANNOTATION: ZERO_SENT_AT.decode(),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner,
                    "uid": _uid(rng),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": created,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/restartedAt": {}},
                            "f:generateName": {},
                            "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:team": {}},
                            "f:ownerReferences": {".": {}, f'k:{{"uid":"{_uid(rng)}"}}': {}},
                        },
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"app"}': _container_fields(),
                                'k:{"name":"proxy"}': {".": {}, "f:image": {}, "f:name": {}},
                            },
                            "f:dnsPolicy": {},
                            "f:restartPolicy": {},
                            "f:schedulerName": {},
                            "f:terminationGracePeriodSeconds": {},
                        },
                    },
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": started,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:status": {
                            "f:conditions": {
                                'k:{"type":"ContainersReady"}': {".": {}, "f:status": {}},
                                'k:{"type":"Initialized"}': {".": {}, "f:status": {}},
                                'k:{"type":"Ready"}': {".": {}, "f:status": {}},
                            },
                            "f:containerStatuses": {},
                            "f:hostIP": {},
                            "f:phase": {},
                            "f:podIP": {},
                            "f:startTime": {},
                        }
                    },
                    "subresource": "status",
                },
            ],
        },
        "spec": {
            "volumes": [
                {
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
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
                {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            ],
            "containers": [
                _container(
                    rng, "app", image, port=8080, namespace=namespace, extra_env=rng.randrange(1, 4)
                ),
                _container(
                    rng, "proxy", sidecar_image, port=15000, namespace=namespace, extra_env=0
                ),
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": app,
            "serviceAccount": app,
            "nodeName": node,
            "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": cond,
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": started,
                }
                for cond in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                )
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started,
            "containerStatuses": [
                _container_status(rng, "app", image, started),
                _container_status(rng, "proxy", sidecar_image, started),
            ],
            "qosClass": "Burstable",
        },
    }


POOL_SIZE = 1000
"""Distinct generated pods; pod ``i`` is pod ``i % POOL_SIZE`` renamed, which is ~30x faster
to make than a fresh pod and still unique by name (what listwatch keys on)."""


def _name(index: int) -> bytes:
    name: str = pod(index)["metadata"]["name"]
    return name.encode()


@functools.cache
def _base_item(base: int) -> tuple[bytes, bytes]:
    return orjson.dumps(pod(base)), _name(base)


def _renamed(data: bytes, base_name: bytes, index: int) -> bytes:
    return data.replace(base_name, b"%s%07d" % (base_name[:-7], index))


def list_item(index: int) -> bytes:
    """Pod ``index`` as a serialized list item (no kind/apiVersion, as built-in lists send)."""
    data, base_name = _base_item(index % POOL_SIZE)
    return data if index < POOL_SIZE else _renamed(data, base_name, index)


def pod_items(count: int) -> Iterator[bytes]:
    """The first ``count`` list items."""
    return (list_item(index) for index in range(count))


def pod_list_page(
    items: list[bytes], *, continue_token: str | None, remaining: int | None
) -> bytes:
    """A ``PodList`` response around already-serialized items, as kube-apiserver writes it."""
    metadata: JsonDict = {"resourceVersion": LIST_RESOURCE_VERSION}
    if continue_token is not None:
        metadata["continue"] = continue_token
        if remaining is not None:
            metadata["remainingItemCount"] = remaining
    head = orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": metadata})
    return b"".join((head[:-1], b',"items":[', b",".join(items), b"]}"))


EMPTY_POD_LIST = pod_list_page([], continue_token=None, remaining=None)


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """One key's ``MODIFIED`` watch line, split around the RV and the send timestamp."""

    head: bytes
    middle: bytes
    tail: bytes
    rv_first: bool

    def line(self, rv: bytes, sent_at: bytes = ZERO_SENT_AT) -> bytes:
        """The full line (with its ``\\n``) for this RV and timestamp."""
        first, second = (rv, sent_at) if self.rv_first else (sent_at, rv)
        return b"".join((self.head, first, self.middle, second, self.tail))

    def parts(self, rv: bytes, sent_at: bytes = ZERO_SENT_AT) -> tuple[bytes, ...]:
        """The pieces of :meth:`line`, for a ``b"".join`` of many lines at once."""
        first, second = (rv, sent_at) if self.rv_first else (sent_at, rv)
        return (self.head, first, self.middle, second, self.tail)


@functools.cache
def _base_template(base: int) -> tuple[EventTemplate, bytes]:
    obj = {"kind": "Pod", "apiVersion": "v1", **pod(base)}
    obj["metadata"]["resourceVersion"] = _RV_MARK
    obj["metadata"]["annotations"][SENT_AT_ANNOTATION] = _SENT_MARK
    line = orjson.dumps({"type": "MODIFIED", "object": obj}) + b"\n"
    rv_at = line.index(_RV_MARK_JSON)
    sent_at = line.index(_SENT_MARK_JSON)
    first, second = sorted(((rv_at, _RV_MARK_JSON), (sent_at, _SENT_MARK_JSON)))
    head = line[: first[0]]
    middle = line[first[0] + len(first[1]) : second[0]]
    tail = line[second[0] + len(second[1]) :]
    template = EventTemplate(head, middle, tail, rv_first=first[1] == _RV_MARK_JSON)
    return template, _name(base)


def event_template(index: int) -> EventTemplate:
    """The ``MODIFIED`` event line of pod ``index`` (the object carries kind/apiVersion)."""
    template, base_name = _base_template(index % POOL_SIZE)
    if index < POOL_SIZE:
        return template
    return EventTemplate(
        _renamed(template.head, base_name, index),
        _renamed(template.middle, base_name, index),
        _renamed(template.tail, base_name, index),
        template.rv_first,
    )


def key_of(index: int) -> str:
    """``namespace/name`` of pod ``index``, as listwatch keys it."""
    meta = pod(index % POOL_SIZE)["metadata"]
    return f"{meta['namespace']}/{meta['name'][:-7]}{index:07d}"
