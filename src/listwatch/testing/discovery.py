"""Discovery documents (``/api``, ``/apis``, ``/api/v1``, ``/apis/{g}/{v}``, ``/version``).

Dynamic clients (``kubernetes_asyncio.dynamic``, kubectl) find resources through these
before they list or watch; serving them from the registry keeps runtime-registered
resources discoverable. Only the unaggregated (v1) discovery format is served.
"""

from __future__ import annotations

from listwatch.testing.resources import ResourceRegistry
from listwatch.testing.store import JsonDict

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

VERSION_INFO: JsonDict = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0+listwatch.fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def document(path: str, registry: ResourceRegistry, server_address: str) -> JsonDict | None:
    """The discovery document served at ``path``, or ``None`` if it is not one."""
    path = path.rstrip("/") or "/"
    if path == "/version":
        return VERSION_INFO
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }
    if path == "/apis":
        return _group_list(registry)
    segments = path.strip("/").split("/")
    if len(segments) == 2 and segments[0] == "apis":
        return _group(registry, segments[1])
    if segments == ["api", "v1"]:
        return _resource_list(registry, "", "v1")
    if len(segments) == 3 and segments[0] == "apis":
        return _resource_list(registry, segments[1], segments[2])
    return None


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
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": VERBS,
            }
            for r in resources
        ],
    }
