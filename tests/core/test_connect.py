"""``listwatch.connect``: a client of its own, from a kubeconfig or the service account."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio.client import Configuration, CoreV1Api
from kubernetes_asyncio.config import ConfigException

import listwatch
from listwatch.testing import FakeApiServer


async def test_from_a_kubeconfig_without_touching_the_default(
    server: FakeApiServer, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    server.write_kubeconfig(path)
    default_host = Configuration.get_default_copy().host
    async with await listwatch.connect(path) as api:
        assert api.configuration.host == server.url
        namespaces = await CoreV1Api(api).list_namespace()
    assert "default" in {ns.metadata.name for ns in namespaces.items}
    assert Configuration.get_default_copy().host == default_host


async def test_in_a_pod_it_uses_the_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    # No service-account files on this machine: the in-cluster loader is the one that fails.
    with pytest.raises(ConfigException, match=r"[Ss]ervice"):
        await listwatch.connect()


async def test_a_missing_kubeconfig_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigException):
        await listwatch.connect(tmp_path / "nope", in_cluster=False)
