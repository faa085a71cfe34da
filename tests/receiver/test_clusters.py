"""A fleet through one receiver: each credential names its cluster (the clients file), so a
cluster's token writes its own rows and nothing else; unknown credentials get 401 and every
refusal is logged with its cluster, never the token; the file is read again when it
changes, and a broken one keeps the previous; per-cluster caps refuse with 413 naming the
cap; the metrics are labelled by cluster. Then receivers that share one PostgreSQL: the
same batch applied by two at once, and a snapshot a sender gave up on at one receiver and
sent again to another, each land exactly once. Real HTTP, real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import trustme

from listwatch import Batch, Event, EventType, GroupVersionResource, Snapshot, StaleEpoch
from listwatch.errors import HttpSyncError
from listwatch.httpsync import ClientsFile, HttpSink, SyncServer
from listwatch.httpsync import _wire as protocol
from listwatch.httpsync._clients import parse_clients
from listwatch.sinks.postgres import PostgresStore
from listwatch.sinks.sqlite import SQLiteStore, read_mirror
from tests.serving import serving

from .helpers import Connection, chunk, items, request_head

PODS = GroupVersionResource("", "v1", "pods")
TOKENS = {"eu": "token-of-eu-0b7f", "us": "token-of-us-91c2", "capped": "token-capped-77aa"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clients_toml(tokens: dict[str, str], **extra: str) -> str:
    return "".join(
        f'[[cluster]]\nname = "{name}"\ntoken_sha256 = "{digest(token)}"\n{extra.get(name, "")}\n'
        for name, token in tokens.items()
    )


def pod(name: str, rv: int, **labels: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)},
        "labels": labels,
    }


def snapshot(*objs: dict[str, Any], rv: str, epoch: int = 1, generation: int = 1) -> Snapshot:
    return Snapshot.of(
        items(*objs), rv, generation=generation, epoch=epoch, resource=PODS, session="s"
    )


def batch(*events: Event, rv: str, sequence: int = 1, epoch: int = 1, generation: int = 1) -> Batch:
    return Batch(
        {e.key: e for e in events}, rv, generation, len(events), epoch, PODS, "s", sequence
    )


def added(obj: dict[str, Any]) -> Event:
    return Event.from_object(EventType.ADDED, obj)


class Fleet:
    def __init__(self, url: str, db: Path, receiver: SyncServer, clients: Path) -> None:
        self.url = url
        self.db = db
        self.receiver = receiver
        self.clients = clients

    def rows(self, cluster: str) -> dict[str, str]:
        try:
            mirror = read_mirror(self.db, resource="pods", cluster=cluster)
        except (FileNotFoundError, ValueError):
            return {}
        return {key: obj["metadata"]["resourceVersion"] for key, obj in mirror.objects.items()}

    def sink(self, cluster: str) -> HttpSink:
        return HttpSink(self.url, token=TOKENS[cluster])

    async def metrics(self) -> str:
        headers = {"Authorization": f"Bearer {TOKENS['eu']}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/metrics", headers=headers) as response,
        ):
            assert response.status == 200
            return await response.text()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    clients = tmp_path / "clients.toml"
    clients.write_text(clients_toml(TOKENS, capped="max_objects = 3\n"))
    db = tmp_path / "received.db"
    store = SQLiteStore(db)
    receiver = SyncServer(store, clients=ClientsFile(clients))
    try:
        async with serving(receiver.app()) as url:
            yield Fleet(url, db, receiver, clients)
    finally:
        await store.close()


async def test_each_token_writes_its_own_cluster_and_an_empty_snapshot_only_its_rows(
    fleet: Fleet,
) -> None:
    async with fleet.sink("eu") as eu, fleet.sink("us") as us:
        await eu.on_list(snapshot(pod("a", 5), pod("b", 6), rv="10"))
        await us.on_list(snapshot(pod("a", 900), rv="1000", epoch=77))
        await eu.on_batch(batch(added(pod("c", 11)), rv="11"))
        assert fleet.rows("eu") == {"default/a": "5", "default/b": "6", "default/c": "11"}
        assert fleet.rows("us") == {"default/a": "900"}

        await eu.on_list(snapshot(rv="12", generation=2))
    assert fleet.rows("eu") == {}
    assert fleet.rows("us") == {"default/a": "900"}
    assert fleet.rows("default") == {}


async def test_a_sender_cannot_name_a_cluster_in_the_payload(fleet: Fleet) -> None:
    async with fleet.sink("us") as us:
        await us.on_list(snapshot(pod("a", 900), rv="1000"))
    header = orjson.loads(
        protocol.encode_header(protocol.Header("snapshot", PODS, 1, "s", 2, 0, "1001"))
    )
    body = orjson.dumps({**header, "cluster": "us"}) + b"\n" + protocol.encode_commit(0, "1001")
    connection = await Connection.to(fleet.url)
    try:
        head = request_head("/sync/pods/snapshot", token=TOKENS["eu"])
        await connection.send(head + chunk(body) + chunk(b""))
        status, answer = await connection.answer()
    finally:
        connection.close()
    assert status == 400, answer
    assert "cluster" in answer["message"]
    assert fleet.rows("us") == {"default/a": "900"}


async def test_an_unknown_token_is_refused_and_logged_without_it(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listwatch.httpsync.requests")
    async with HttpSink(fleet.url, token="not-a-known-token-5d1e") as stranger:
        with pytest.raises(HttpSyncError, match="HTTP 401 Unauthorized"):
            await stranger.on_list(snapshot(pod("x", 1), rv="1"))
    async with fleet.sink("eu") as eu:
        await eu.on_list(snapshot(pod("a", 1), rv="1", epoch=5))
        with pytest.raises(StaleEpoch):
            await eu.on_batch(batch(added(pod("b", 2)), rv="2", epoch=4))
    lines = [r.getMessage() for r in caplog.records if r.name == "listwatch.httpsync.requests"]
    assert any(" 401, " in line and "cluster unknown" in line for line in lines), lines
    assert any(" 409, " in line and "cluster eu" in line for line in lines), lines
    assert "not-a-known-token" not in caplog.text
    assert all(token not in caplog.text for token in TOKENS.values())
    metrics = await fleet.metrics()
    assert 'listwatch_receiver_refusals_total{cluster="",reason="Unauthorized"} 1.0' in metrics
    assert 'listwatch_receiver_refusals_total{cluster="eu",reason="StaleEpoch"} 1.0' in metrics


async def test_a_changed_clients_file_is_read_again_and_a_broken_one_keeps_the_previous(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    rotated = "token-of-eu-rotated-3c4d"
    fleet.clients.write_text(clients_toml({"eu": rotated, "us": TOKENS["us"]}))
    async with HttpSink(fleet.url, token=rotated) as eu:
        await eu.on_list(snapshot(pod("a", 1), rv="1"))
    async with fleet.sink("eu") as old:
        with pytest.raises(HttpSyncError, match="HTTP 401"):
            await old.on_list(snapshot(pod("a", 1), rv="1"))
    assert fleet.rows("eu") == {"default/a": "1"}

    fleet.clients.write_text('[[cluster]]\nname = "eu"\ntoken_sha256 = "not hex"\n')
    async with HttpSink(fleet.url, token=rotated) as eu:
        await eu.on_list(snapshot(pod("b", 2), rv="2", generation=2))
        await eu.on_batch(batch(added(pod("c", 3)), rv="3", generation=2))
    assert fleet.rows("eu") == {"default/b": "2"} | {"default/c": "3"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # once per change, not once per request
    assert "token_sha256 must be 64 hex digits" in errors[0].getMessage()
    assert "the previous one (2 clusters) stays in force" in errors[0].getMessage()


async def test_a_cap_refuses_with_413_naming_it(fleet: Fleet) -> None:
    async with fleet.sink("capped") as capped:
        await capped.on_list(snapshot(pod("a", 1), pod("b", 2), rv="2"))
        with pytest.raises(HttpSyncError, match=r"HTTP 413 RequestEntityTooLarge: .*max_objects"):
            await capped.on_list(
                snapshot(*(pod(f"p{i}", i) for i in range(600)), rv="3", generation=2)
            )
        with pytest.raises(
            HttpSyncError, match=r"HTTP 413 .*hold 4 objects, over its max_objects of 3"
        ):
            await capped.on_batch(batch(added(pod("c", 3)), added(pod("d", 4)), rv="4"))
    assert fleet.rows("capped") == {"default/a": "1", "default/b": "2"}
    metrics = await fleet.metrics()
    assert (
        'listwatch_receiver_refusals_total{cluster="capped",reason="LimitExceeded"} 2.0' in metrics
    )


async def test_the_refusal_of_a_cap_comes_before_the_snapshot_is_read_whole(fleet: Fleet) -> None:
    """Records past a cap of 3: the answer comes at the fourth record, before the body has
    ended (its end is never sent)."""
    header = protocol.Header("snapshot", PODS, 1, "s", 1, 0, "5")
    records = b"".join(
        protocol.encode_object(i) for i in items(*(pod(f"p{i}", i) for i in range(4)))
    )
    connection = await Connection.to(fleet.url)
    try:
        head = request_head("/sync/pods/snapshot", token=TOKENS["capped"])
        await connection.send(head + chunk(protocol.encode_header(header) + records))
        status, answer = await connection.answer()
    finally:
        connection.close()
    assert status == 413
    assert answer["details"]["limit"] == "max_objects"
    assert answer["details"]["cluster"] == "capped"
    assert answer["details"]["causes"] == [{"reason": "LimitExceeded"}]


async def test_metrics_are_labelled_by_cluster(fleet: Fleet) -> None:
    async with fleet.sink("eu") as eu, fleet.sink("us") as us:
        await eu.on_list(snapshot(pod("a", 1), pod("b", 2), rv="2"))
        await us.on_list(snapshot(pod("a", 1), rv="1"))
        await us.on_batch(batch(added(pod("b", 3)), rv="3"))
    metrics = await fleet.metrics()
    series = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith("listwatch_receiver_") and not line.startswith("#")
    }
    assert series['listwatch_receiver_requests_total{cluster="eu",code="200",kind="snapshot"}'] == 1
    assert series['listwatch_receiver_requests_total{cluster="us",code="200",kind="batch"}'] == 1
    assert (
        series['listwatch_receiver_records_total{cluster="eu",kind="snapshot",resource="pods"}']
        == 2
    )
    assert (
        series['listwatch_receiver_records_total{cluster="us",kind="batch",resource="pods"}'] == 1
    )
    assert (
        series['listwatch_receiver_body_bytes_total{cluster="eu",kind="snapshot",resource="pods"}']
        > 0
    )
    eu_last = series['listwatch_receiver_last_sync_timestamp_seconds{cluster="eu",resource="pods"}']
    us_last = series['listwatch_receiver_last_sync_timestamp_seconds{cluster="us",resource="pods"}']
    assert 0 < eu_last <= us_last


async def test_client_certificates_name_their_clusters(tmp_path: Path) -> None:
    """Mutual TLS: a verified certificate's common name picks its cluster; one the file does
    not list is refused, and so is a token of another cluster beside it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certificates = {}
    for name in ("agent-eu", "agent-us", "agent-unknown"):
        issued = ca.issue_cert(f"{name}@example.com", common_name=name)
        certificates[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        issued.cert_chain_pems[0].write_to_path(str(certificates[name][0]))
        issued.private_key_pem.write_to_path(str(certificates[name][1]))
    clients = tmp_path / "clients.toml"
    clients.write_text(
        "[[cluster]]\nname = 'eu'\ncertificate_cn = 'agent-eu'\n"
        f"[[cluster]]\nname = 'us'\ncertificate_cn = ['agent-us']\ntoken_sha256 = "
        f"'{digest(TOKENS['us'])}'\n"
    )
    db = tmp_path / "received.db"
    store = SQLiteStore(db)

    def sink(url: str, certificate: str, token: str | None = None) -> HttpSink:
        cert, key = certificates[certificate]
        return HttpSink(url, token=token, ca_file=ca_file, client_cert=cert, client_key=key)

    try:
        receiver = SyncServer(store, clients=ClientsFile(clients), client_certificate=True)
        async with serving(receiver.app(), ssl_context=context) as url:
            async with sink(url, "agent-eu") as eu, sink(url, "agent-us") as us:
                await eu.on_list(snapshot(pod("a", 1), rv="1"))
                await us.on_list(snapshot(pod("b", 2), rv="2"))
            async with sink(url, "agent-unknown") as unknown:
                with pytest.raises(HttpSyncError, match="HTTP 401"):
                    await unknown.on_list(snapshot(rv="3", generation=2))
            async with sink(url, "agent-eu", TOKENS["us"]) as mixed:
                with pytest.raises(HttpSyncError, match="name different clusters"):
                    await mixed.on_list(snapshot(rv="3", generation=2))
    finally:
        await store.close()
    assert read_mirror(db, resource="pods", cluster="eu").objects.keys() == {"default/a"}
    assert read_mirror(db, resource="pods", cluster="us").objects.keys() == {"default/b"}


# -- the clients file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[cluster]] entries"),
        ("[[cluster]]\nname = 'eu'\n", "no credential"),
        (f"[[cluster]]\ntoken_sha256 = '{digest('t')}'\n", "no name"),
        (f"[[cluster]]\nname = 'eu/1'\ntoken_sha256 = '{digest('t')}'\n", "cluster must be"),
        ("[[cluster]]\nname = 'eu'\ntoken_sha256 = 'abc'\n", "64 hex digits"),
        (
            f"[[cluster]]\nname = 'eu'\ntoken_sha256 = '{digest('t')}'\nmax_object = 5\n",
            "unknown keys",
        ),
        (
            f"[[cluster]]\nname = 'eu'\ntoken_sha256 = '{digest('t')}'\nmax_bytes = -1\n",
            "max_bytes",
        ),
        (f"[[cluster]]\nname = 'eu'\ntoken_sha256 = '{digest('t')}'\nmax_bytes = '1G'\n", "whole"),
        (
            f"[[cluster]]\nname = 'eu'\ntoken_sha256 = '{digest('t')}'\n"
            f"[[cluster]]\nname = 'us'\ntoken_sha256 = ['{digest('u')}', '{digest('t')}']\n",
            "exactly one cluster",
        ),
        (
            f"[[cluster]]\nname = 'eu'\ntoken_sha256 = '{digest('t')}'\n"
            f"[[cluster]]\nname = 'eu'\ntoken_sha256 = '{digest('u')}'\n",
            "named twice",
        ),
        (
            "[[cluster]]\nname = 'eu'\ncertificate_cn = ['a']\n"
            "[[cluster]]\nname = 'us'\ncertificate_cn = 'a'\n",
            "exactly one cluster",
        ),
        ("listen = 1\n", "unknown top-level keys"),
        ("[[cluster]\n", "not valid TOML"),
    ],
)
def test_a_clients_file_that_cannot_be_used_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_clients(text)


def test_a_cluster_may_hold_several_tokens_while_one_is_rotated() -> None:
    clients = parse_clients(
        f"[[cluster]]\nname = 'eu'\ntoken_sha256 = ['{digest('old')}', '{digest('new').upper()}']\n"
        "max_objects = 10\n"
    )
    old, new = clients.for_token("old"), clients.for_token("new")
    assert old is not None
    assert old is new
    assert (old.cluster, old.limits.max_objects, old.limits.max_bytes) == ("eu", 10, None)
    assert clients.for_token("other") is None


# -- receivers sharing one PostgreSQL --------------------------------------------------------


@pytest.fixture
async def two_receivers(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[str, str, str]]:
    clients = tmp_path / "clients.toml"
    clients.write_text(clients_toml(TOKENS))
    stores = [await PostgresStore.connect(postgres_dsn) for _ in range(2)]
    try:
        async with (
            serving(SyncServer(stores[0], clients=ClientsFile(clients)).app()) as first,
            serving(SyncServer(stores[1], clients=ClientsFile(clients)).app()) as second,
        ):
            yield first, second, postgres_dsn
    finally:
        for store in stores:
            await store.close()


async def pg_rows(
    dsn: str, cluster: str, *, staged: bool = False
) -> tuple[dict[str, str], tuple[int, int]]:
    """The cluster's pod rows (key: RV) and its sync state's counts; unless ``staged``, no
    staging may be left."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT key, resource_version FROM listwatch.objects "
            "WHERE cluster = $1 AND resource = 'pods'",
            cluster,
        )
        counts = await connection.fetchrow(
            "SELECT object_count, object_bytes FROM listwatch.sync_state "
            "WHERE cluster = $1 AND resource = 'pods'",
            cluster,
        )
        left = await connection.fetchval("SELECT count(*) FROM listwatch.staged")
    finally:
        await connection.close()
    assert staged or not left, "a staging was left behind"
    return {r["key"]: r["resource_version"] for r in rows}, (counts[0], counts[1])


async def test_two_receivers_applying_the_same_batch_at_once_apply_it_once(
    two_receivers: tuple[str, str, str],
) -> None:
    first, second, dsn = two_receivers
    a, b = pod("a", 1), pod("b", 2)
    async with HttpSink(first, token=TOKENS["eu"]) as sink:
        await sink.on_list(snapshot(a, b, rv="2"))
    grown = pod("a", 3, big="x" * 2000)
    same = batch(added(grown), added(pod("c", 4)), Event.from_object(EventType.DELETED, b), rv="4")
    async with (
        HttpSink(first, token=TOKENS["eu"]) as one,
        HttpSink(second, token=TOKENS["eu"]) as two,
    ):
        for _ in range(5):  # the same batch, again and again, through both at once
            await asyncio.gather(one.on_batch(same), two.on_batch(same))
    rows, counts = await pg_rows(dsn, "eu")
    assert rows == {"default/a": "3", "default/c": "4"}
    assert counts == (2, len(orjson.dumps(grown)) + len(orjson.dumps(pod("c", 4))))


async def test_a_snapshot_given_up_at_one_receiver_and_sent_to_another_lands_once(
    two_receivers: tuple[str, str, str],
) -> None:
    """The sender streams half a snapshot to the first receiver, gives up on it (a timeout,
    say) and sends the same snapshot whole to the second, which applies it; the first
    request then ends both ways a real one can: cut (nothing of it stays) or, as late as it
    may be, completed (the fence finds it applied: nothing changes)."""
    first, second, dsn = two_receivers
    async with HttpSink(first, token=TOKENS["us"]) as sink:
        await sink.on_list(snapshot(pod("old", 1), rv="1"))
    head = request_head("/sync/pods/snapshot", token=TOKENS["us"])
    for generation, ending in ((2, "cut"), (3, "completed")):
        rv = 10 * generation
        objs = [pod(f"g{generation}-{i}", rv + i) for i in range(6)]
        want = {f"default/g{generation}-{i}": str(rv + i) for i in range(6)}
        header = protocol.Header("snapshot", PODS, 1, "s", generation, 0, str(rv))
        records = [protocol.encode_object(item) for item in items(*objs)]
        abandoned = await Connection.to(first)
        try:
            start = protocol.encode_header(header) + b"".join(records[:3])
            await abandoned.send(head + chunk(start))
            async with HttpSink(second, token=TOKENS["us"]) as retry:
                await retry.on_list(snapshot(*objs, rv=str(rv), generation=generation))
            assert (await pg_rows(dsn, "us", staged=True))[0] == want
            if ending == "completed":  # late, after the retry applied the same snapshot
                rest = b"".join(records[3:]) + protocol.encode_commit(6, str(rv))
                await abandoned.send(chunk(rest) + chunk(b""))
                status, answer = await abandoned.answer()
                assert (status, answer["details"]["records"]) == (200, 6)
        finally:
            abandoned.close()
        await wait_for_no_staging(dsn)
        rows, counts = await pg_rows(dsn, "us")
        assert rows == want
        assert counts[0] == 6


async def wait_for_no_staging(dsn: str) -> None:
    """Until the first receiver has dropped the staging of the request it lost (its handler
    ends when it notices the closed connection): polled, as PostgreSQL has no event for a
    row deleted (bounded: a safety net)."""
    connection = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(30):
            while True:
                if not await connection.fetchval("SELECT count(*) FROM listwatch.stagings"):
                    return
                await asyncio.sleep(0.02)
    finally:
        await connection.close()
