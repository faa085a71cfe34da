"""coordination.k8s.io/v1 Leases as kube-apiserver serves them: what a leader elector relies on.

Through kubernetes_asyncio's typed ``CoordinationV1Api`` (``*_with_http_info`` shows the
status codes) and, for what the typed client cannot send, raw HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from listwatch.testing import FakeApiServer

from .helpers import EventReader, status_of, summary

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
RENEW = "2026-03-01T10:00:00.123456Z"
ACQUIRE = "2026-03-01T09:59:00.000001Z"


def lease(name: str = "leader", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "holderIdentity": "replica-a",
            "leaseDurationSeconds": 15,
            "acquireTime": ACQUIRE,
            "renewTime": RENEW,
            "leaseTransitions": 0,
            **spec,
        },
    }


@pytest.fixture
def coordination(api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api)


def conflict_body(name: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "group": "coordination.k8s.io", "kind": "leases"},
        "code": 409,
    }


async def test_create_is_201_and_the_spec_is_stored_as_given(
    coordination: client.CoordinationV1Api, http: aiohttp.ClientSession
):
    created, code, _ = await coordination.create_namespaced_lease_with_http_info("default", lease())
    assert code == 201
    assert created.spec.holder_identity == "replica-a"
    assert created.spec.renew_time == datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    async with http.get(f"{LEASES}/leader") as response:
        stored = await response.json()
    assert stored["spec"] == lease()["spec"]
    assert stored["metadata"]["resourceVersion"] == created.metadata.resource_version


async def test_a_second_create_is_409_already_exists(coordination: client.CoordinationV1Api):
    await coordination.create_namespaced_lease("default", lease())
    with pytest.raises(ApiException) as caught:
        await coordination.create_namespaced_lease("default", lease())
    assert caught.value.status == 409
    assert status_of(caught.value) == conflict_body(
        "leader", "AlreadyExists", 'leases.coordination.k8s.io "leader" already exists'
    )


async def test_replace_with_a_stale_resource_version_is_409_conflict(
    coordination: client.CoordinationV1Api,
):
    first = await coordination.create_namespaced_lease("default", lease())
    renewed = lease(renewTime="2026-03-01T10:00:02.000000Z")
    renewed["metadata"]["resourceVersion"] = first.metadata.resource_version
    await coordination.replace_namespaced_lease("leader", "default", renewed)
    stale = lease(holderIdentity="replica-b", leaseTransitions=1)
    stale["metadata"]["resourceVersion"] = first.metadata.resource_version
    with pytest.raises(ApiException) as caught:
        await coordination.replace_namespaced_lease("leader", "default", stale)
    assert caught.value.status == 409
    assert status_of(caught.value) == conflict_body(
        "leader",
        "Conflict",
        'Operation cannot be fulfilled on leases.coordination.k8s.io "leader": the object '
        "has been modified; please apply your changes to the latest version and try again",
    )


async def test_replace_with_the_current_resource_version_is_200_with_a_new_one(
    server: FakeApiServer, coordination: client.CoordinationV1Api
):
    first = await coordination.create_namespaced_lease("default", lease())
    taken = lease(
        holderIdentity="replica-b",
        leaseTransitions=1,
        acquireTime="2026-03-01T10:00:20.500000Z",
        renewTime="2026-03-01T10:00:20.500000Z",
    )
    taken["metadata"]["resourceVersion"] = first.metadata.resource_version
    replaced, code, _ = await coordination.replace_namespaced_lease_with_http_info(
        "leader", "default", taken
    )
    assert code == 200
    assert int(replaced.metadata.resource_version) > int(first.metadata.resource_version)
    assert replaced.metadata.uid == first.metadata.uid
    stored = server.get("coordination.k8s.io/v1", "Lease", "leader")
    assert stored is not None
    assert stored["spec"] == taken["spec"]


async def test_replace_without_a_resource_version_is_422(coordination: client.CoordinationV1Api):
    """``AllowUnconditionalUpdate`` is false for leases."""
    await coordination.create_namespaced_lease("default", lease())
    with pytest.raises(ApiException) as caught:
        await coordination.replace_namespaced_lease("leader", "default", lease())
    assert caught.value.status == 422
    body = status_of(caught.value)
    assert body["message"] == (
        'leases.coordination.k8s.io "leader" is invalid: metadata.resourceVersion: Invalid '
        "value: 0: must be specified for an update"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: must be specified for an update",
            "field": "metadata.resourceVersion",
        }
    ]


async def test_replace_of_a_missing_lease_creates_it(coordination: client.CoordinationV1Api):
    """``AllowCreateOnUpdate`` is true for leases: the PUT answers 201."""
    created, code, _ = await coordination.replace_namespaced_lease_with_http_info(
        "fresh", "default", lease("fresh")
    )
    assert code == 201
    assert created.metadata.uid
    fetched = await coordination.read_namespaced_lease("fresh", "default")
    assert fetched.metadata.resource_version == created.metadata.resource_version


async def test_get_list_delete(coordination: client.CoordinationV1Api, http: aiohttp.ClientSession):
    await coordination.create_namespaced_lease("default", lease("a"))
    await coordination.create_namespaced_lease("default", lease("b"))
    listed = await coordination.list_namespaced_lease("default")
    assert [item.metadata.name for item in listed.items] == ["a", "b"]
    everywhere = await coordination.list_lease_for_all_namespaces()
    assert len(everywhere.items) == 2
    async with http.delete(f"{LEASES}/a") as response:
        assert response.status == 200
        deleted = await response.json()
    assert deleted["kind"] == "Status"
    assert deleted["status"] == "Success"
    assert deleted["details"]["group"] == "coordination.k8s.io"
    with pytest.raises(ApiException) as caught:
        await coordination.read_namespaced_lease("a", "default")
    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'leases.coordination.k8s.io "a" not found'


async def test_watch_sees_every_change(server: FakeApiServer, http: aiohttp.ClientSession):
    start = server.resource_version
    params = {"watch": "1", "resourceVersion": str(start)}
    async with http.get(LEASES, params=params) as response:
        reader = EventReader(response)
        created = await server.create(lease())
        renewed = lease(renewTime="2026-03-01T10:00:02.000000Z")
        renewed["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
        replaced = await server.replace(renewed)
        deleted = await server.delete(replaced)
        events = await reader.take(3)
    assert summary(events) == [
        ("ADDED", "leader", created["metadata"]["resourceVersion"]),
        ("MODIFIED", "leader", replaced["metadata"]["resourceVersion"]),
        ("DELETED", "leader", deleted["metadata"]["resourceVersion"]),
    ]
    assert events[1]["object"]["spec"]["renewTime"] == "2026-03-01T10:00:02.000000Z"
    assert events[0]["object"]["kind"] == "Lease"


# --------------------------------------------------------------------------- MicroTime


async def test_micro_time_with_an_offset_is_stored_in_utc(server: FakeApiServer):
    created = await server.create(lease(renewTime="2026-03-01T12:00:00.000001+02:00"))
    assert created["spec"]["renewTime"] == "2026-03-01T10:00:00.000001Z"


async def test_the_typed_client_s_aware_datetimes_are_accepted(
    coordination: client.CoordinationV1Api,
):
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="typed"),
        spec=client.V1LeaseSpec(
            holder_identity="replica-a",
            lease_duration_seconds=15,
            renew_time=datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC),
        ),
    )
    created = await coordination.create_namespaced_lease("default", body)
    assert created.spec.renew_time == datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("renew_time", "cause"),
    [
        (
            "2026-03-01T10:00:00Z",
            'parsing time "2026-03-01T10:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": '
            'cannot parse "Z" as ".000000"',
        ),
        (
            "2026-03-01T10:00:00.123Z",
            'parsing time "2026-03-01T10:00:00.123Z" as "2006-01-02T15:04:05.000000Z07:00": '
            'cannot parse ".123Z" as ".000000"',
        ),
        (
            "2026-03-01T10:00:00.123456",
            'parsing time "2026-03-01T10:00:00.123456" as "2006-01-02T15:04:05.000000Z07:00": '
            'cannot parse "" as "Z07:00"',
        ),
        (
            "2026-13-01T10:00:00.123456Z",
            'parsing time "2026-13-01T10:00:00.123456Z": month out of range',
        ),
    ],
)
async def test_a_micro_time_not_in_rfc3339_micro_is_400(
    server: FakeApiServer, http: aiohttp.ClientSession, renew_time: str, cause: str
):
    async with http.post(LEASES, json=lease(renewTime=renew_time)) as response:
        assert response.status == 400
        body = await response.json()
    assert body["reason"] == "BadRequest"
    assert body["message"] == f'Lease in version "v1" cannot be handled as a Lease: {cause}'
    assert server.objects("coordination.k8s.io/v1", "Lease") == []


async def test_a_spec_field_of_the_wrong_type_is_400(http: aiohttp.ClientSession):
    async with http.post(LEASES, json=lease(leaseDurationSeconds="15")) as response:
        assert response.status == 400
        body = await response.json()
    assert body["message"] == (
        'Lease in version "v1" cannot be handled as a Lease: json: cannot unmarshal string '
        "into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32"
    )


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("leaseDurationSeconds", 0, "must be greater than 0"),
        ("leaseTransitions", -1, "must be greater than or equal to 0"),
    ],
)
async def test_validation_is_422(http: aiohttp.ClientSession, field: str, value: int, detail: str):
    async with http.post(LEASES, json=lease(**{field: value})) as response:
        assert response.status == 422
        body = await response.json()
    assert body["message"] == (
        f'Lease.coordination.k8s.io "leader" is invalid: spec.{field}: Invalid value: '
        f"{value}: {detail}"
    )


async def test_discovery_lists_leases(http: aiohttp.ClientSession):
    async with http.get("/apis/coordination.k8s.io/v1") as response:
        document = await response.json()
    (leases,) = [r for r in document["resources"] if r["name"] == "leases"]
    assert leases["kind"] == "Lease"
    assert leases["namespaced"] is True
    assert {"create", "get", "list", "watch", "update", "delete"} <= set(leases["verbs"])
    async with http.get("/apis") as response:
        groups = {g["name"] for g in (await response.json())["groups"]}
    assert "coordination.k8s.io" in groups
