"""URL routing of the Kubernetes REST API: which resource, namespace and name a path names.

Collections live at ``/api/v1/{plural}`` (core group) and ``/apis/{group}/{version}/{plural}``,
per namespace under ``.../namespaces/{ns}/{plural}``, objects at ``.../{plural}/{name}``.
The deprecated ``/watch/`` prefix (``/api/v1/watch/pods``) forces a watch
(``forceWatch`` in the apiserver's get handler, docs/kubernetes-semantics.md#watch).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from listwatch.testing._resources import ResourceRegistry, ResourceType

_LEGACY_WATCH_RE = re.compile(r"^/(api/[^/]+|apis/[^/]+/[^/]+)/watch(/|$)")


def parse_bool(value: str | None) -> bool:
    """A boolean query parameter: absent is false; any value but ``0``/``false`` is true.

    ``Convert_Slice_string_To_bool`` in apimachinery, so ``watch=`` and ``watch=True`` count.
    """
    if value is None:
        return False
    return value != "0" and value.lower() != "false"


def is_watch(path: str, query: Mapping[str, str]) -> bool:
    return parse_bool(query.get("watch")) or _LEGACY_WATCH_RE.match(path) is not None


@dataclass(frozen=True)
class Target:
    """What a resource path addresses: a collection (``name is None``) or one object."""

    resource: ResourceType
    namespace: str | None
    name: str | None
    legacy_watch: bool


class RouteNotFound(Exception):
    """The path names no served resource (answered with a 404, see :func:`in_served_api`)."""


def in_served_api(path: str, registry: ResourceRegistry) -> bool:
    """Whether an API group's handler answers ``path``: anything under ``/api/``, or under
    ``/apis/{group}/`` for a group with a served resource. Its 404 is a ``Status``
    ("the server could not find the requested resource"); any other path, an unknown
    group's included, falls through to the mux's NotFound: ``404 page not found`` in
    plain text."""
    segments = path.split("/")
    if len(segments) >= 3 and segments[1] == "api":
        return True
    if len(segments) >= 4 and segments[1] == "apis":
        return any(resource.group == segments[2] for resource in registry)
    return False


def parse_resource_path(path: str, registry: ResourceRegistry) -> Target:
    """Resolve a resource path; raises :class:`RouteNotFound` for anything else."""
    segments = path.split("/")
    if len(segments) < 2 or segments[0] != "":
        raise RouteNotFound(path)
    segments = segments[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]  # a trailing slash names the same thing
    if len(segments) >= 3 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 4 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        raise RouteNotFound(path)
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2 or any(not s for s in rest):
        raise RouteNotFound(path)  # subresources (status, log, ...) are not served
    resource = registry.by_path(group, version, rest[0])
    if resource is None:
        raise RouteNotFound(path)
    if namespace is not None and not resource.namespaced:
        raise RouteNotFound(path)
    if namespace == "":
        raise RouteNotFound(path)
    name = rest[1] if len(rest) == 2 else None
    if name is not None and resource.namespaced and namespace is None:
        raise RouteNotFound(path)  # a namespaced object is only addressable in its namespace
    return Target(resource, namespace, name, legacy_watch)
