"""HTTPS: a CA per server, trusted by the clients the server hands out and by nothing else."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from listwatch.testing import FakeApiServer
from tests.objects import pod

PODS = "/api/v1/namespaces/default/pods"


async def test_serves_https_by_default_with_a_certificate_for_loopback():
    async with FakeApiServer() as server:
        assert server.tls
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_pem is not None
        assert server.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
        for host in ("127.0.0.1", "localhost"):
            url = server.url.replace("127.0.0.1", host)
            headers = {"Authorization": f"Bearer {server.token}"}
            async with (
                aiohttp.ClientSession(headers=headers) as session,
                session.get(f"{url}/version", ssl=server.ssl_context) as response,
            ):
                assert response.status == 200


async def test_a_client_without_the_ca_is_refused_by_verification():
    async with FakeApiServer() as server, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"{server.url}/version")


async def test_each_server_has_its_own_ca():
    async with FakeApiServer() as first, FakeApiServer() as second:
        assert first.ca_pem != second.ca_pem
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{second.url}/version", ssl=first.ssl_context)


async def test_ssl_context_verifies_and_speaks_at_least_tls_1_2():
    async with FakeApiServer() as server:
        context = server.ssl_context
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_api_client_verifies_the_server():
    async with FakeApiServer() as server:
        await server.create(pod("a"))
        async with server.api_client() as api:
            assert api.configuration.verify_ssl
            assert api.configuration.ssl_ca_cert == server.ca_file
            listed = await client.CoreV1Api(api).list_namespaced_pod("default")
        assert [p.metadata.name for p in listed.items] == ["a"]


async def test_kubeconfig_embeds_the_ca(tmp_path: Path):
    async with FakeApiServer() as server:
        path = tmp_path / "kubeconfig"
        server.write_kubeconfig(path)
        document = json.loads(path.read_text())
        (cluster,) = document["clusters"]
        assert cluster["cluster"]["server"] == server.url
        assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == server.ca_pem
        await server.create(pod("a"))
        api = await config.new_client_from_config(config_file=str(path))
        async with api:
            listed = await client.CoreV1Api(api).list_namespaced_pod("default")
        assert [p.metadata.name for p in listed.items] == ["a"]


async def test_plain_http_stays_available(tmp_path: Path):
    async with FakeApiServer(tls=False) as server:
        assert not server.tls
        assert server.url.startswith("http://")
        assert server.ca_pem is None
        assert server.ca_file is None
        with pytest.raises(RuntimeError, match="plain HTTP"):
            _ = server.ssl_context
        path = tmp_path / "kubeconfig"
        server.write_kubeconfig(path)
        (cluster,) = json.loads(path.read_text())["clusters"]
        assert "certificate-authority-data" not in cluster["cluster"]


async def test_a_plain_http_request_to_the_https_port_gets_no_answer():
    async with FakeApiServer() as server, aiohttp.ClientSession() as session:
        plain = server.url.replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"{plain}/version")
