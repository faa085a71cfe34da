"""Discovery: ``/api``, ``/apis``, ``/api/v1``, ``/apis/{g}/{v}``, ``/version``.

Dynamic clients (``kubernetes_asyncio.dynamic``, kubectl) find resources here before they
list or watch, so the documents come from the registry and runtime-registered resources
are discoverable. Both formats kube-apiserver serves are served:

* **Aggregated** (``apidiscovery.k8s.io/v2`` ``APIGroupDiscoveryList``, the default since
  1.30): asked for on ``/api`` and ``/apis`` with ``Accept: application/json;
  g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`` (kubectl and client-go send that,
  with the legacy form as a later clause). One document lists every group, version and
  resource. The response's ``Content-Type`` names the type (``generateMediaTypeWithGVK``:
  client-go reads it to tell the formats apart), with ``Vary: Accept`` and an ``ETag``
  (``aggregated/etag.go``). ``v2beta1`` is not served (``AggregatedDiscoveryRemoveBetaType``
  is on in 1.33+), so such a clause falls through to the legacy form.
* **Legacy**: ``APIVersions`` / ``APIGroupList`` on the roots, then one ``APIResourceList``
  per group version.

Each resource carries what ``kubectl api-resources`` prints: ``shortNames``, ``categories``,
``verbs`` (only those the fake serves: ``deletecollection`` is not among them, nor any
subresource), ``singularName``, and the ``storageVersionHash``
(``discovery/storageversionhash.go``: base64 of the first 8 bytes of
sha256("group/version/kind")).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson

from listwatch.testing import _negotiation as negotiation
from listwatch.testing._negotiation import Conversion
from listwatch.testing._resources import ResourceRegistry, ResourceType
from listwatch.testing._store import JsonDict

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
AGGREGATED = Conversion("apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList")
AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

#: ``/version`` as kube-apiserver 1.36 shapes it (``version.Info`` with the emulation and
#: compatibility versions); the build fields name the fake, not a kube-apiserver build.
VERSION_INFO: JsonDict = {
    "major": "1",
    "minor": "36",
    "emulationMajor": "1",
    "emulationMinor": "36",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "35",
    "gitVersion": "v1.36.0+listwatch.fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.26.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Document:
    """A discovery answer: its body, and the headers that go with it."""

    body: JsonDict
    headers: dict[str, str]


def document(
    path: str, accept: str, registry: ResourceRegistry, server_address: str
) -> Document | None:
    """The discovery document served at ``path``, or ``None`` if it is not one.

    Raises 406 when ``Accept`` names nothing servable.
    """
    path = path.rstrip("/") or "/"
    if path == "/version":
        return Document(VERSION_INFO, {})
    if path in ("/api", "/apis"):
        aggregated = negotiation.negotiate_or_none(accept, lambda c: c == AGGREGATED)
        if aggregated is not None and aggregated.conversion == AGGREGATED:
            return _aggregated(registry, core=path == "/api")
        negotiation.negotiate(accept, lambda c: False)
        if path == "/api":
            return Document(_api_versions(server_address), {})
        return Document(_group_list(registry), {})
    segments = path.strip("/").split("/")
    body: JsonDict | None = None
    if len(segments) == 2 and segments[0] == "apis":
        body = _group(registry, segments[1])
    elif segments == ["api", "v1"]:
        body = _resource_list(registry, "", "v1")
    elif len(segments) == 3 and segments[0] == "apis":
        body = _resource_list(registry, segments[1], segments[2])
    if body is None:
        return None
    negotiation.negotiate(accept, lambda c: False)
    return Document(body, {})


def storage_version_hash(resource: ResourceType) -> str:
    digest = hashlib.sha256(f"{resource.group}/{resource.version}/{resource.kind}".encode())
    return base64.b64encode(digest.digest()[:8]).decode()


# ---------------------------------------------------------------------- legacy


def _api_versions(server_address: str) -> JsonDict:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _groups(registry: ResourceRegistry) -> dict[str, JsonDict]:
    """``APIGroup`` entries by group name (the first version served is preferred)."""
    versions: dict[str, list[str]] = {}
    for resource in registry:
        if resource.group and resource.version not in versions.setdefault(resource.group, []):
            versions[resource.group].append(resource.version)
    groups: dict[str, JsonDict] = {}
    for group, group_versions in sorted(versions.items()):
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in group_versions]
        groups[group] = {"name": group, "versions": entries, "preferredVersion": entries[0]}
    return groups


def _group_list(registry: ResourceRegistry) -> JsonDict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(_groups(registry).values())}


def _group(registry: ResourceRegistry, name: str) -> JsonDict | None:
    group = _groups(registry).get(name)
    return None if group is None else {"kind": "APIGroup", "apiVersion": "v1", **group}


def _resource_list(registry: ResourceRegistry, group: str, version: str) -> JsonDict | None:
    resources = [r for r in registry if r.group == group and r.version == version]
    if not resources:
        return None
    group_version = f"{group}/{version}" if group else version
    body: JsonDict = {"kind": "APIResourceList"}
    if group:
        body["apiVersion"] = "v1"  # the core group's list (/api/v1) has none
    body["groupVersion"] = group_version
    body["resources"] = [_legacy_resource(r) for r in resources]
    return body


def _legacy_resource(resource: ResourceType) -> JsonDict:
    entry: JsonDict = {
        "name": resource.plural,
        "singularName": resource.kind.lower(),
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": VERBS,
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    entry["storageVersionHash"] = storage_version_hash(resource)
    return entry


# ---------------------------------------------------------------------- aggregated


def _aggregated(registry: ResourceRegistry, *, core: bool) -> Document:
    by_group: dict[str, dict[str, list[ResourceType]]] = {}
    for resource in registry:
        if (resource.group == "") != core:
            continue
        by_group.setdefault(resource.group, {}).setdefault(resource.version, []).append(resource)
    items = []
    for group in sorted(by_group):
        versions = [
            {
                "version": version,
                "resources": [_aggregated_resource(r) for r in resources],
                "freshness": "Current",
            }
            for version, resources in by_group[group].items()
        ]
        metadata: JsonDict = {"name": group} if group else {}
        items.append({"metadata": metadata, "versions": versions})
    body: JsonDict = {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
    etag = hashlib.sha512(orjson.dumps(body)).hexdigest().upper()
    headers = {
        "Content-Type": AGGREGATED_CONTENT_TYPE,
        "ETag": f'"{etag}"',
        "Vary": "Accept",
        "Cache-Control": "public",
    }
    return Document(body, headers)


def _aggregated_resource(resource: ResourceType) -> JsonDict:
    entry: JsonDict = {
        "resource": resource.plural,
        # Group and version are left empty when they are the resource's own (as always here).
        "responseKind": {"group": "", "version": "", "kind": resource.kind},
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.kind.lower(),
        "verbs": VERBS,
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    return entry
