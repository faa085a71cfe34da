"""The pod workload: realistic pod bodies, and churn of every kind that stays near size."""

from __future__ import annotations

import random

import orjson

from listwatch.testing import FakeApiServer
from listwatch.testing._server import DEFAULT_NAMESPACES
from listwatch.testing.scenario import PodFactory, PodWorkload, namespace_names


def test_namespace_names_are_distinct() -> None:
    names = namespace_names(45)
    assert len(set(names)) == 45
    assert names[0] == "payments"
    assert names[20] == "payments-2"


def test_pods_look_like_real_ones() -> None:
    factory = PodFactory(random.Random(3))
    sizes = []
    for index, component in enumerate(["api", "db", "worker", "broker"] * 10):
        app = factory.app("payments", component, 3, suffix=f"-{index}")
        pod = factory.pod(app, factory.new_name(app))
        sizes.append(len(orjson.dumps(pod)))
        metadata = pod["metadata"]
        assert metadata["ownerReferences"][0]["controller"] is True
        assert {m["manager"] for m in metadata["managedFields"]} == {
            "kube-controller-manager",
            "kubelet",
        }
        assert pod["spec"]["containers"][0]["env"]
        assert pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {c["type"] for c in pod["status"]["conditions"]} >= {"Ready", "PodScheduled"}
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
        if app.kind == "StatefulSet":
            assert metadata["labels"]["statefulset.kubernetes.io/pod-name"] == metadata["name"]
    assert min(sizes) >= 3_000
    assert max(sizes) <= 8_000


async def test_churn_makes_every_kind_of_change_and_stays_near_the_target() -> None:
    async with FakeApiServer(namespaces=(*DEFAULT_NAMESPACES, *namespace_names(4))) as server:
        workload = PodWorkload(server, random.Random(5), pods=120, namespaces=4)
        await workload.populate()
        assert workload.size == 120
        stateful = {
            (pod["metadata"]["namespace"], pod["metadata"]["name"]): pod["metadata"]["uid"]
            for pod in server.objects("v1", "Pod")
            if "statefulset.kubernetes.io/pod-name" in pod["metadata"]["labels"]
        }
        assert stateful
        for _ in range(1500):
            await workload.step()
        counts = workload.counts
        assert min(counts.creates, counts.updates, counts.deletes, counts.recreates) > 0
        assert 90 <= workload.size <= 150
        assert len(server.objects("v1", "Pod")) == workload.size
        after = {
            (pod["metadata"]["namespace"], pod["metadata"]["name"]): pod["metadata"]["uid"]
            for pod in server.objects("v1", "Pod")
        }
        # Recreated under the same name: same key, a new uid.
        assert any(key in after and after[key] != uid for key, uid in stateful.items())
