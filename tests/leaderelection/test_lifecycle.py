"""How ``run`` ends, failure modes, and configuration errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from listwatch.errors import EpochError, InvalidRequest
from listwatch.leaderelection import LeaderElector, Term
from listwatch.leaderelection import _elector as elector_module
from listwatch.testing import FakeApiServer, Fault
from tests.leaderelection.helpers import (
    FAST,
    LEASE,
    NAMESPACE,
    Campaign,
    client_for,
    lease_object,
    lease_of,
    spec_of,
)

LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"


def elector_for(api: Any, identity: str = "a", **options: Any) -> LeaderElector:
    return LeaderElector(
        api,
        lease_name=LEASE,
        lease_namespace=NAMESPACE,
        identity=identity,
        **{**FAST, **options},
    )


async def test_when_lead_returns_the_lease_is_released_and_run_returns_its_value(
    server: FakeApiServer,
) -> None:
    async def lead(term: Term) -> int:
        assert term.valid()
        return term.epoch

    async with server.api_client() as api:
        elector = elector_for(api)
        async with asyncio.timeout(10):
            epoch = await elector.run(lead)
    assert epoch > 0
    assert spec_of(server)["holderIdentity"] == ""
    assert not elector.status.leading
    assert not elector.status.running


async def test_when_lead_raises_run_raises_it_after_releasing(server: FakeApiServer) -> None:
    class Broken(Exception):
        pass

    async def lead(term: Term) -> None:
        raise Broken("receiver is gone")

    async with server.api_client() as api:
        elector = elector_for(api)
        with pytest.raises(Broken, match="receiver is gone"):
            async with asyncio.timeout(10):
                await elector.run(lead)
    assert spec_of(server)["holderIdentity"] == ""
    assert spec_of(server)["leaseDurationSeconds"] == 1
    assert elector.status.terms == 1
    assert not elector.status.leading
    with pytest.raises(RuntimeError, match="stopped"):
        await elector.wait_until(lambda s: s.leading)


async def test_run_twice_at_once_is_refused(server: FakeApiServer, campaign: Campaign) -> None:
    a = await campaign("a")
    await a.until(lambda s: s.running)
    with pytest.raises(RuntimeError, match="already running"):
        await a.elector.run(a.lead)
    assert a.elector.status.running


async def test_an_observer_that_raises_is_logged_and_the_election_goes_on(
    server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    def observer(status: Any) -> None:
        raise ValueError("metrics backend down")

    started = asyncio.Event()

    async def lead(term: Term) -> None:
        started.set()
        await asyncio.Event().wait()

    async with server.api_client() as api:
        elector = elector_for(api, on_change=observer)
        async with asyncio.TaskGroup() as group:
            task = group.create_task(elector.run(lead))
            async with asyncio.timeout(10):
                await started.wait()
            task.cancel()
    assert "the on_change observer raised" in caplog.text
    assert spec_of(server)["holderIdentity"] == ""


async def test_an_unreachable_api_is_retried_and_reported(
    server: FakeApiServer, campaign: Campaign
) -> None:
    server.inject(Fault.status(503), path=LEASE_PATH, method="GET", times=None)
    a = await campaign("a")
    failing = await a.until(lambda s: s.last_error is not None)
    assert "503" in (failing.last_error or "")
    assert not failing.leading
    server.clear_faults()
    await a.until(lambda s: s.leading)


async def test_a_missing_namespace_is_retried_until_it_exists(
    server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="listwatch.leaderelection")
    async with server.api_client() as api:
        elector = LeaderElector(
            api, lease_name=LEASE, lease_namespace="later", identity="a", **FAST
        )

        async def lead(term: Term) -> str:
            return term.lease

        async with asyncio.TaskGroup() as group:
            task = group.create_task(elector.run(lead))
            async with asyncio.timeout(10):
                status = await elector.wait_until(lambda s: s.last_error is not None)
            assert 'namespaces "later" not found' in (status.last_error or "")
            await server.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "later"}}
            )
        assert task.result() == "later/" + LEASE
    assert "acquiring failed" in caplog.text


@pytest.fixture
async def opaque_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server whose Lease resourceVersions are not integers (Kubernetes says: opaque)."""
    writes: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        if request.method == "GET":
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": "not found",
            }
            return web.json_response(status, status=404)
        body = await request.json()
        writes.append(body)
        body["metadata"] |= {"uid": "u-1", "resourceVersion": f"opaque-{len(writes)}"}
        return web.Response(
            body=orjson.dumps(body),
            status=201 if request.method == "POST" else 200,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", writes
    finally:
        await runner.cleanup()


async def test_a_non_integer_resource_version_is_refused_loudly(
    opaque_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, writes = opaque_server
    led: list[Term] = []

    async def lead(term: Term) -> None:
        led.append(term)

    async with ApiClient(Configuration(host=url)) as api:
        elector = elector_for(api)
        with pytest.raises(EpochError, match=r"'opaque-1'.*not a positive decimal integer"):
            async with asyncio.timeout(10):
                await elector.run(lead)
        with pytest.raises(EpochError):
            await elector.wait_until(lambda s: s.leading)
    assert led == []
    assert [w["spec"]["holderIdentity"] for w in writes] == ["a", ""]  # created, released


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease_duration": 10.0, "renew_deadline": 10.0}, "lease_duration .* greater than renew"),
        ({"lease_duration": 5.0, "renew_deadline": 8.0}, "lease_duration .* greater than renew"),
        ({"renew_deadline": 2.4, "retry_period": 2.0}, r"renew_deadline .* jitter_factor x"),
        ({"retry_period": 0}, "retry_period must be a positive"),
        ({"lease_duration": -1}, "lease_duration must be a positive"),
        ({"renew_deadline": float("nan")}, "renew_deadline must be a positive, finite"),
        ({"lease_duration": float("inf")}, "lease_duration must be a positive, finite"),
        ({"retry_period": "2"}, "retry_period must be a number of seconds"),
        ({"lease_duration": True}, "lease_duration must be a number of seconds"),
        ({"jitter_factor": 0}, "jitter_factor must be positive"),
        ({"identity": ""}, "identity must be a non-empty string"),
        ({"lease_name": "Leader"}, "lease_name 'Leader' is not a valid name"),
        ({"lease_name": "a" * 254}, "lease_name must be a non-empty string of at most 253"),
        ({"lease_namespace": "kube.system"}, "lease_namespace 'kube.system' is not a valid"),
    ],
)
async def test_bad_configuration_is_a_clear_error(
    server: FakeApiServer, options: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {
        "lease_name": LEASE,
        "lease_namespace": NAMESPACE,
        "identity": "a",
        **options,
    }
    async with client_for(server) as api:
        with pytest.raises(ValueError, match=message):
            LeaderElector(api, **settings)


async def test_client_go_defaults_and_fractions(server: FakeApiServer) -> None:
    async with client_for(server) as api:
        timing = LeaderElector(
            api, lease_name=LEASE, lease_namespace=NAMESPACE, identity="a"
        ).timing
        assert (timing.lease_duration, timing.renew_deadline, timing.retry_period) == (15, 10, 2)
        assert timing.jitter_factor == 1.2
        fractional = elector_for(api, lease_duration=1.5, renew_deadline=0.5).timing
        assert fractional.lease_duration_seconds == 2  # rounded up: standbys wait longer


async def test_a_request_the_server_calls_invalid_stops_run(server: FakeApiServer) -> None:
    """400/422 on our own write: retrying the same request cannot help, so run raises."""
    collection = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
    server.inject(
        Fault.status(422, reason="Invalid", message="spec.holderIdentity: Invalid value"),
        path=collection,
        method="POST",
    )

    async def lead(term: Term) -> None:
        raise AssertionError("never leads")

    async with server.api_client() as api:
        elector = elector_for(api)
        with pytest.raises(InvalidRequest, match=r"HTTP 422 Invalid: spec\.holderIdentity"):
            async with asyncio.timeout(10):
                await elector.run(lead)
    assert elector.status.terms == 0


async def test_an_acquiring_write_that_changes_nothing_gives_no_epoch(
    server: FakeApiServer,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API server skips an update that changes nothing and returns the old RV: that RV
    is some earlier write's, so it must not become this term's epoch."""
    stamp = ["2026-12-02T05:50:43.123456Z"]
    monkeypatch.setattr(elector_module, "now_micro_time", lambda: stamp[0])
    record = {
        "holderIdentity": "a",
        "leaseDurationSeconds": 3,
        "acquireTime": stamp[0],
        "renewTime": stamp[0],
        "leaseTransitions": 0,
    }
    created = await server.create(lease_object(**record))
    a = await campaign("a")

    def puts(server: FakeApiServer) -> int:
        return sum(1 for r in server.requests if r.method == "PUT")

    await server.wait_until(lambda s: puts(s) >= 2)  # two writes identical to the record
    assert "the acquiring write was not written" in caplog.text
    assert not a.elector.status.leading
    assert lease_of(server)["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # type: ignore[index]
    stamp[0] = "2026-12-02T05:50:44.000000Z"
    status = await a.until(lambda s: s.leading)
    assert status.term is not None
    assert status.term.epoch > int(created["metadata"]["resourceVersion"])
