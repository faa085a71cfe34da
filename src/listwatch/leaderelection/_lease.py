"""GET, POST and PUT of one ``coordination.k8s.io/v1`` Lease, as raw JSON.

What client-go's ``resourcelock.LeaseLock`` does (``Get``, ``Create``, ``Update``), over a
``kubernetes_asyncio`` ApiClient, without its models: kubernetes_asyncio parses
``MicroTime`` into datetimes and back (see the package docstring for what goes wrong), so
the Lease is read and written as the JSON the server holds. Every update is a PUT of the
object as last read, with its ``metadata.resourceVersion`` and ``uid``: the server refuses
it with 409 when anyone wrote in between (optimistic concurrency). Responses are capped;
errors are the typed ``listwatch.errors`` exceptions and never carry the Lease's body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from listwatch._kube import http
from listwatch.errors import ApiError, EpochError, LeaseError
from listwatch.leaderelection._record import LeaseRecord

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

EPOCH_ANNOTATION = "listwatch.io/leader-epoch"
"""The annotation where the holder publishes its term's epoch, for observers only.

The elector never reads an epoch from here: its own epoch is the resourceVersion of the
write that acquired the lease. It is removed by every takeover write (whose own RV is not
known before it lands) and set by the new holder's first renewal, so it is never stale.
"""

MAX_LEASE_BYTES = 1024 * 1024
"""A Lease is well under 1 KiB; anything past 1 MiB is not a Lease and is refused."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_API_VERSION = "coordination.k8s.io/v1"


def check_dns_subdomain(what: str, value: str) -> None:
    """``metadata.name`` rules (DNS-1123 subdomain), checked before any request."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        raise ValueError(f"{what} must be a non-empty string of at most 253 characters")
    if not all(_DNS_LABEL.fullmatch(part) for part in value.split(".")):
        raise ValueError(
            f"{what} {value!r} is not a valid name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )


def check_dns_label(what: str, value: str) -> None:
    """Namespace rules (DNS-1123 label)."""
    if not isinstance(value, str) or not 0 < len(value) <= 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid namespace: at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )


def parse_epoch(resource_version: str, lease: str) -> int:
    """The epoch of a term: the acquiring write's resourceVersion as a positive integer."""
    if resource_version.isascii() and resource_version.isdecimal():
        value = int(resource_version)
        if value > 0 and str(value) == resource_version:
            return value
    shown = resource_version if len(resource_version) <= 64 else resource_version[:64] + "…"
    raise EpochError(
        f"lease {lease}: the API server gave the acquiring write resourceVersion {shown!r}, "
        "which is not a positive decimal integer. listwatch uses that resourceVersion (an "
        "etcd revision on kube-apiserver) as the fencing epoch and cannot order epochs "
        "taken from opaque resourceVersions, so it refuses to lead"
    )


def is_conflict(error: ApiError) -> bool:
    """409: someone else wrote first (Conflict on update, AlreadyExists on create)."""
    return error.status == 409


@dataclass(frozen=True, slots=True, eq=False)
class Lease:
    """One Lease as the server returned it: the JSON body and what the election reads."""

    body: dict[str, Any]
    uid: str
    resource_version: str
    record: LeaseRecord
    spec: Mapping[str, Any]
    annotated_epoch: int | None

    @classmethod
    def from_body(cls, body: object, lease: str) -> Lease:
        if not isinstance(body, dict):
            raise LeaseError(f"lease {lease}: the response is not a JSON object")
        metadata = body.get("metadata")
        spec = body.get("spec") or {}
        if not isinstance(metadata, dict) or not isinstance(spec, dict):
            raise LeaseError(f"lease {lease}: metadata and spec must be JSON objects")
        uid, rv = metadata.get("uid"), metadata.get("resourceVersion")
        if not isinstance(uid, str) or not uid or not isinstance(rv, str) or not rv:
            raise LeaseError(f"lease {lease}: the response has no metadata.uid/resourceVersion")
        try:
            record = LeaseRecord.from_spec(spec)
        except ValueError as exc:
            raise LeaseError(f"lease {lease}: {exc}") from None
        annotations = metadata.get("annotations")
        raw = annotations.get(EPOCH_ANNOTATION) if isinstance(annotations, dict) else None
        epoch = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdecimal() else None
        return cls(body, uid, rv, record, spec, epoch)

    def updated(self, record: LeaseRecord, *, epoch: int | None) -> dict[str, Any]:
        """The body of a PUT: this object (RV and uid kept) with ``record`` as its spec."""
        body: dict[str, Any] = orjson.loads(orjson.dumps(self.body))
        metadata = body["metadata"]
        annotations = dict(metadata.get("annotations") or {})
        if epoch is None:
            annotations.pop(EPOCH_ANNOTATION, None)
        else:
            annotations[EPOCH_ANNOTATION] = str(epoch)
        if annotations:
            metadata["annotations"] = annotations
        else:
            metadata.pop("annotations", None)
        body["spec"] = record.to_spec()
        return body


class LeaseClient:
    """The three requests the election makes, for the Lease ``namespace/name``."""

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str,
        name: str,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        check_dns_label("lease_namespace", namespace)
        check_dns_subdomain("lease_name", name)
        self._api_client = api_client
        self._namespace = namespace
        self._name = name
        self._labels = dict(labels or {})
        self._collection = f"/apis/{_API_VERSION}/namespaces/{namespace}/leases"
        self._path = f"{self._collection}/{name}"
        self.description = f"{namespace}/{name}"

    async def get(self) -> Lease | None:
        """The Lease, or ``None`` when it does not exist (404)."""
        try:
            body = await self._call("GET", self._path, None)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return Lease.from_body(body, self.description)

    async def create(self, record: LeaseRecord) -> Lease:
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if self._labels:
            metadata["labels"] = dict(self._labels)
        body = {
            "apiVersion": _API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": record.to_spec(),
        }
        return Lease.from_body(await self._call("POST", self._collection, body), self.description)

    async def replace(self, base: Lease, record: LeaseRecord, *, epoch: int | None) -> Lease:
        """PUT ``record`` over ``base``, conditional on ``base``'s resourceVersion and uid."""
        body = base.updated(record, epoch=epoch)
        return Lease.from_body(await self._call("PUT", self._path, body), self.description)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> object:
        """One request, without socket limits: the elector bounds each call by its deadline."""
        request = f"{method} lease {self.description}"
        data = await http.fetch(
            self._api_client, method, path, request=request, body=body, cap=MAX_LEASE_BYTES
        )
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise LeaseError(f"{request}: the response is not JSON") from None


MAX_LEASE_LIST_BYTES = 16 * 1024 * 1024
"""A LIST of one lease set: a few hundred Leases of well under 1 KiB each, with room."""


async def list_leases(api_client: ApiClient, namespace: str, label_selector: str) -> list[Lease]:
    """The Leases of ``namespace`` that match ``label_selector`` (one LIST, capped)."""
    check_dns_label("lease_namespace", namespace)
    path = f"/apis/{_API_VERSION}/namespaces/{namespace}/leases"
    request = f"LIST leases {namespace} {label_selector}"
    data = await http.fetch(
        api_client,
        "GET",
        path,
        request=request,
        query=[("labelSelector", label_selector)],
        cap=MAX_LEASE_LIST_BYTES,
    )
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise LeaseError(f"{request}: the response is not JSON") from None
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise LeaseError(f"{request}: the response has no items")
    leases = []
    for item in items:
        name = item.get("metadata", {}).get("name", "?") if isinstance(item, dict) else "?"
        leases.append(Lease.from_body(item, f"{namespace}/{name}"))
    return leases


async def delete_lease(api_client: ApiClient, namespace: str, lease: Lease) -> bool:
    """Delete ``lease`` only as it was read (preconditions: its uid and resourceVersion), so
    that a Lease written since (its holder came back) is left alone. False when it was
    already gone or had changed (404, 409)."""
    name = lease.body["metadata"]["name"]
    path = f"/apis/{_API_VERSION}/namespaces/{namespace}/leases/{name}"
    body = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": lease.uid, "resourceVersion": lease.resource_version},
    }
    try:
        await http.fetch(
            api_client,
            "DELETE",
            path,
            request=f"DELETE lease {namespace}/{name}",
            body=body,
            cap=MAX_LEASE_BYTES,
        )
    except ApiError as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True
