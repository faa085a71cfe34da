"""A Syncer sending through HttpSink to the reference receiver, over verified TLS (a trustme
CA), into SQLite: the receiver's copy equals the cluster under churn; mutual TLS works;
an unverifiable server certificate is refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from listwatch import Backoff, ListWatch, Syncer
from listwatch.httpsync import SyncServer
from listwatch.httpsync._client import HttpSink
from listwatch.sinks.sqlite import SQLiteStore, read_mirror
from listwatch.testing import FakeApiServer
from tests.objects import pod
from tests.serving import serving

TOKEN = "receiver-token"


class Tls:
    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.configure_cert(self.server_context)
        client = self.ca.issue_cert("listwatch-agent@example.com")
        self.client_cert = tmp / "client.pem"
        self.client_key = tmp / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "received.db")
    try:
        yield store
    finally:
        await store.close()


def received(store: SQLiteStore) -> dict[str, str]:
    try:
        objects = read_mirror(store.path, resource="pods").objects
    except (FileNotFoundError, ValueError):
        return {}
    return {key: obj["metadata"]["resourceVersion"] for key, obj in objects.items()}


def cluster(server: FakeApiServer) -> dict[str, str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in server.objects("v1", "Pod")
    }


@pytest.mark.parametrize("strategy", ["paged", "stream"])
async def test_the_receiver_converges_under_churn(
    server: FakeApiServer, api_client: Any, store: SQLiteStore, tls: Tls, strategy: str
) -> None:
    for i in range(30):
        await server.create(pod(f"p{i}"))
    async with (
        serving(SyncServer(store, token=TOKEN).app(), ssl_context=tls.server_context) as url,
        HttpSink(url, token=TOKEN, ca_file=tls.ca_file) as sink,
    ):
        syncer = Syncer(
            ListWatch.from_client(api_client, "pods"),
            on_list=sink.on_list,
            on_batch=sink.on_batch,
            merge_interval=0.02,
            page_size=7,
            list_strategy=strategy,
            backoff=Backoff(initial=0.01, cap=0.05),
        )
        async with syncer:
            await syncer.wait_synced()
            assert received(store) == cluster(server)
            for i in range(30):
                if i % 3 == 0:
                    await server.delete(pod(f"p{i}"))
                else:
                    await server.create(pod(f"new{i}"))
                await asyncio.sleep(0)
            target = str(server.resource_version)
            await syncer.wait_until(lambda s: s.resource_version == target)
    assert received(store) == cluster(server)


async def test_mutual_tls_alone_authenticates(
    server: FakeApiServer, api_client: Any, store: SQLiteStore, tls: Tls
) -> None:
    await server.create(pod("a"))
    context = tls.server_context
    tls.ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    async with serving(
        SyncServer(store, client_certificate=True).app(), ssl_context=context
    ) as url:
        async with HttpSink(
            url, ca_file=tls.ca_file, client_cert=tls.client_cert, client_key=tls.client_key
        ) as sink:
            syncer = Syncer(
                ListWatch.from_client(api_client, "pods"),
                on_list=sink.on_list,
                on_batch=sink.on_batch,
            )
            async with syncer:
                await syncer.wait_synced()
        # Without a client certificate the TLS handshake itself is refused.
        async with HttpSink(url, token=TOKEN, ca_file=tls.ca_file) as bare:
            syncer = Syncer(
                ListWatch.from_client(api_client, "pods"),
                on_list=bare.on_list,
                on_batch=bare.on_batch,
                backoff=Backoff(initial=0.01, cap=0.05),
            )
            async with syncer:
                status = await syncer.wait_until(lambda s: s.restarts >= 1)
    assert received(store) == cluster(server)
    assert "ReceiverError" in (status.last_error or "")


async def test_an_unverifiable_receiver_is_refused(
    server: FakeApiServer, api_client: Any, store: SQLiteStore, tls: Tls
) -> None:
    """TLS verification stays on: the sender does not trust this receiver's CA."""
    await server.create(pod("a"))
    async with (
        serving(SyncServer(store, token=TOKEN).app(), ssl_context=tls.server_context) as url,
        HttpSink(url, token=TOKEN) as sink,  # no ca_file: the system CAs
    ):
        syncer = Syncer(
            ListWatch.from_client(api_client, "pods"),
            on_list=sink.on_list,
            on_batch=sink.on_batch,
            backoff=Backoff(initial=0.01, cap=0.05),
        )
        async with syncer:
            status = await syncer.wait_until(lambda s: s.restarts >= 1)
    assert "ClientConnectorCertificateError" in (status.last_error or "") or "cannot connect" in (
        status.last_error or ""
    )
    assert TOKEN not in (status.last_error or "")
    assert received(store) == {}
