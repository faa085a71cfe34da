"""Authorization: what a user without any RBAC binding may do, and the 403 for the rest.

The server's own token (``FakeApiServer.token``) acts as a cluster admin (``system:masters``):
everything is allowed. A user added with ``FakeApiServer.add_user`` is authenticated but
bound to no role, like a ServiceAccount nobody granted anything. RBAC's default
ClusterRoles for every authenticated user (``system:discovery``, ``system:basic-user``,
``system:public-info-viewer``) let it read discovery, ``/version`` and ``/openapi``;
everything else is 403 Forbidden. Authorization runs before routing, so a path that names
no served resource is forbidden too, not 404.

The verb, resource, name and namespace come from the path as the apiserver's
``RequestInfoFactory`` reads them (apiserver ``pkg/endpoints/request/requestinfo.go``): a
GET of a collection is ``list`` or ``watch``, a DELETE of one ``deletecollection``, and a
``metadata.name=`` field selector on a collection names the object. The message is
``responsewriters.forbiddenMessage`` wrapped by ``errors.NewForbidden``, e.g. ``pods is
forbidden: User "u" cannot list resource "pods" in API group "" in the namespace "ns"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from listwatch.testing import _status as status
from listwatch.testing._paths import parse_bool

#: Non-resource paths every authenticated user may GET (the default ClusterRoles above).
_OPEN_PATHS = ("/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    """What RBAC decides on: a resource request's attributes, or a non-resource path."""

    verb: str
    resource: str = ""
    group: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    is_resource: bool = False


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """``RequestInfoFactory.NewRequestInfo`` for the verbs the fake serves."""
    verb = _VERBS.get(method, method.lower())
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return RequestInfo(verb)  # non-resource: /api, /api/v1, /version...
    if parts[0] == "apis":
        if len(parts) < 4:
            return RequestInfo(verb)  # /apis/{group}/{version}: discovery
        group, parts = parts[1], parts[3:]
    else:
        group, parts = "", parts[2:]
    if method == "GET":
        verb = "get"
    if parts[0] == "watch":
        verb, parts = "watch", parts[1:]
    namespace = ""
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) > 1 else ""
    subresource = parts[2] if len(parts) > 2 else ""
    if not name and verb == "get":
        verb = "watch" if parse_bool(query.get("watch")) else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(verb, resource, group, namespace, name, subresource, is_resource=True)


def _name_from_field_selector(selector: str) -> str:
    """``metadata.name=x`` (or ``==``) as the only term names the object."""
    if "," in selector:
        return ""
    for operator in ("==", "="):
        field, sep, value = selector.partition(operator)
        if sep and field.strip() == "metadata.name" and "!" not in field:
            return value.strip()
    return ""


def authorize(user: str | None, method: str, path: str, query: Mapping[str, str]) -> None:
    """Raise 403 unless ``user`` may do this; ``None`` is the admin, who may do anything."""
    if user is None:
        return
    info = request_info(method, path, query)
    if not info.is_resource:
        if method == "GET" and any(path == p or path.startswith(p + "/") for p in _OPEN_PATHS):
            return
        raise status.failure(
            403,
            f'forbidden: User "{user}" cannot {info.verb} path "{path}"',
            reason="Forbidden",
            details={},
        )
    raise forbidden(user, info)


def forbidden(user: str, info: RequestInfo) -> status.StatusError:
    resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
    where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    reason = (
        f'User "{user}" cannot {info.verb} resource "{resource}" in API group "{info.group}" '
        f"{where}"
    )
    qualified = status.qualified_resource(info.group, info.resource)
    subject = f'{qualified} "{info.name}"' if info.name else qualified
    details: dict[str, str] = {}
    if info.name:
        details["name"] = info.name
    if info.group:
        details["group"] = info.group
    details["kind"] = info.resource
    return status.failure(
        403, f"{subject} is forbidden: {reason}", reason="Forbidden", details=details
    )
