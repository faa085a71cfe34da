"""``listwatch.connect``: a client of its own, from a kubeconfig or the service account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from kubernetes_asyncio import config
from kubernetes_asyncio.client import Configuration, CoreV1Api
from kubernetes_asyncio.config import ConfigException
from kubernetes_asyncio.config.kube_config import KubeConfigMerger

import listwatch
from listwatch.testing import FakeApiServer
from listwatch.testing._kubeconfig import kubeconfig
from tests.serving import serving


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


def _without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OIDC refresh honours proxy variables; the issuer is on 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# kubernetes_asyncio's OIDC refresh uses aiohttp arguments that aiohttp deprecates.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:kubernetes_asyncio")
async def test_a_refreshed_token_is_never_written_back_to_the_kubeconfig(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OIDC user without an id-token: loading refreshes it at the issuer, and
    kubernetes_asyncio's default (``persist_config=True``) then saves the new tokens into
    the kubeconfig. ``connect()`` uses the refreshed token and leaves the file alone."""
    _without_proxies(monkeypatch)
    saved: list[list[str]] = []
    save_changes = KubeConfigMerger.save_changes

    def recording_save(merger: KubeConfigMerger, *_config: object) -> None:
        # kubernetes_asyncio passes the config to a method that takes none (TypeError,
        # which fails the load); this saves, as it means to.
        saved.append(list(merger.paths))
        save_changes(merger)

    monkeypatch.setattr(KubeConfigMerger, "save_changes", recording_save)
    refreshed: list[str] = []
    issuer: list[str] = []

    async def well_known(request: web.Request) -> web.Response:
        return web.json_response({"token_endpoint": f"{issuer[0]}/token"})

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        refreshed.append(str(form["refresh_token"]))
        return web.json_response({"id_token": server.token, "refresh_token": "rotated"})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", well_known)
    app.router.add_post("/token", token)
    async with serving(app) as url:
        issuer.append(url)
        document = kubeconfig(server.url, "unused")
        document["users"][0]["user"] = {
            "auth-provider": {
                "name": "oidc",
                "config": {
                    "client-id": "listwatch",
                    "client-secret": "secret",
                    "idp-issuer-url": url,
                    "refresh-token": "the-refresh-token",
                },
            }
        }
        text = json.dumps(document, indent=2).encode()
        control, path = tmp_path / "control", tmp_path / "kubeconfig"
        control.write_bytes(text)
        path.write_bytes(text)
        mtime = path.stat().st_mtime_ns

        async with await listwatch.connect(path) as api:
            namespaces = await CoreV1Api(api).list_namespace()
        assert refreshed == ["the-refresh-token"]
        assert "default" in {ns.metadata.name for ns in namespaces.items}  # refreshed token
        assert saved == []
        assert path.read_bytes() == text
        assert path.stat().st_mtime_ns == mtime

        # The same load with kubernetes_asyncio's default rewrites the file.
        await config.load_kube_config(
            config_file=str(control), client_configuration=Configuration()
        )
    assert refreshed == ["the-refresh-token", "the-refresh-token"]
    assert saved == [[str(control)]]
    assert "rotated" in control.read_text()
