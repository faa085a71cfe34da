"""OpenAPI v3 documents (``/openapi/v3``, ``/openapi/v3/{api/v1 | apis/g/v}``).

kubectl needs them to write: before ``create -f``, ``replace -f`` or ``patch`` it looks up
the PATCH operation of the object's kind in the group version's OpenAPI v3 document and
checks for a ``fieldValidation`` query parameter (cli-runtime ``resource/
query_param_verifier_v3.go``). Found, it lets the server validate (``fieldValidation=
Strict``); not found, it would validate client-side against the schemas; no document at
all and it fails with "failed to download openapi".

What is published is what the fake does, nothing more:

* the paths and operations it serves (list, create, read, replace, patch, delete; no
  deletecollection, no watch paths, no subresources), each with
  ``x-kubernetes-action`` and ``x-kubernetes-group-version-kind`` as kube-openapi writes
  them, and ``fieldValidation`` on create, replace and patch (``fieldvalidation.py``
  honours it);
* patch bodies of the two patch types it applies (``patch.py``);
* for each kind a schema that says what the fake checks: ``apiVersion``, ``kind`` and an
  object ``metadata``, every other field kept as given
  (``x-kubernetes-preserve-unknown-fields``). The fake does not know Pod's fields, so
  it publishes none; ``kubectl explain`` shows exactly that.

The root lists each document with a ``hash`` (``serverRelativeURL``), as the real one does
so clients can cache; any hash is answered with the current document.
"""

from __future__ import annotations

import hashlib

import orjson

from listwatch.testing._resources import ResourceRegistry, ResourceType
from listwatch.testing._store import JsonDict

ROOT = "/openapi/v3"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")


def document(path: str, registry: ResourceRegistry) -> JsonDict | None:
    """The OpenAPI v3 document at ``path``, or ``None`` if there is none."""
    path = path.rstrip("/")
    if path == ROOT:
        return _root(registry)
    if not path.startswith(ROOT + "/"):
        return None
    group_version = path[len(ROOT) + 1 :]
    for key, resources in _group_versions(registry).items():
        if key == group_version:
            return _group_version_document(resources)
    return None


def _group_versions(registry: ResourceRegistry) -> dict[str, list[ResourceType]]:
    documents: dict[str, list[ResourceType]] = {}
    for resource in registry:
        key = f"apis/{resource.group}/{resource.version}" if resource.group else "api/v1"
        documents.setdefault(key, []).append(resource)
    return documents


def _root(registry: ResourceRegistry) -> JsonDict:
    paths = {}
    for key, resources in sorted(_group_versions(registry).items()):
        digest = hashlib.sha512(orjson.dumps(_group_version_document(resources))).hexdigest()
        paths[key] = {"serverRelativeURL": f"{ROOT}/{key}?hash={digest.upper()}"}
    return {"paths": paths}


def schema_name(resource: ResourceType, *, list_kind: bool = False) -> str:
    """kube-openapi's definition name: ``io.k8s.api.core.v1.Pod``, ``com.example.v1.Widget``."""
    kind = resource.list_kind if list_kind else resource.kind
    if resource.builtin:
        package = resource.group.split(".")[0] if resource.group else "core"
        return f"io.k8s.api.{package}.{resource.version}.{kind}"
    reversed_group = ".".join(reversed(resource.group.split(".")))
    return f"{reversed_group}.{resource.version}.{kind}"


def _gvk(resource: ResourceType) -> JsonDict:
    return {"group": resource.group, "version": resource.version, "kind": resource.kind}


def _ref(name: str) -> JsonDict:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema_type: str = "string") -> JsonDict:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": schema_type, "uniqueItems": True},
    }


_FIELD_VALIDATION = _query(
    "fieldValidation",
    "How the server treats duplicate fields in the request: Ignore, Warn (the default) or "
    "Strict. The fake keeps unknown fields (its schemas preserve them), so only duplicate "
    "fields are reported.",
)
_LIST_PARAMETERS = [
    _query("allowWatchBookmarks", "Ask for BOOKMARK events on a watch.", "boolean"),
    _query("continue", "The continue token of the previous page."),
    _query("fieldSelector", "Select by fields."),
    _query("labelSelector", "Select by labels."),
    _query("limit", "The page size.", "integer"),
    _query("resourceVersion", "The resourceVersion to list or watch from."),
    _query("resourceVersionMatch", "How resourceVersion is matched."),
    _query("sendInitialEvents", "Start a watch with the current state (watch-list).", "boolean"),
    _query("timeoutSeconds", "Bound on a list or watch call.", "integer"),
    _query("watch", "Watch for changes instead of listing.", "boolean"),
]


def _operation(
    resource: ResourceType, action: str, operation_id: str, response: JsonDict, **extra: object
) -> JsonDict:
    operation: JsonDict = {
        "description": f"{action} {resource.kind}",
        "operationId": operation_id,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource),
    }
    operation.update(extra)
    return operation


def _body(resource: ResourceType) -> JsonDict:
    return {
        "content": {"application/json": {"schema": _ref(schema_name(resource))}},
        "required": True,
    }


def _paths(resource: ResourceType) -> dict[str, JsonDict]:
    root = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
    one, many = _ref(schema_name(resource)), _ref(schema_name(resource, list_kind=True))
    kind = resource.kind
    paths: dict[str, JsonDict] = {}
    if resource.namespaced:
        collection = f"{root}/namespaces/{{namespace}}/{resource.plural}"
        scope = [
            {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
        paths[f"{root}/{resource.plural}"] = {
            "get": _operation(
                resource, "list", f"list{kind}ForAllNamespaces", many, parameters=_LIST_PARAMETERS
            )
        }
        prefix = "Namespaced"
    else:
        collection = f"{root}/{resource.plural}"
        scope = []
        prefix = ""
    paths[collection] = {
        "get": _operation(
            resource, "list", f"list{prefix}{kind}", many, parameters=_LIST_PARAMETERS
        ),
        "post": _operation(
            resource,
            "post",
            f"create{prefix}{kind}",
            one,
            parameters=[_FIELD_VALIDATION],
            requestBody=_body(resource),
        ),
        "parameters": scope,
    }
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    patch_body = {
        "content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES},
        "required": True,
    }
    paths[f"{collection}/{{name}}"] = {
        "get": _operation(resource, "get", f"read{prefix}{kind}", one),
        "put": _operation(
            resource,
            "put",
            f"replace{prefix}{kind}",
            one,
            parameters=[_FIELD_VALIDATION],
            requestBody=_body(resource),
        ),
        "patch": _operation(
            resource,
            "patch",
            f"patch{prefix}{kind}",
            one,
            parameters=[_FIELD_VALIDATION],
            requestBody=patch_body,
        ),
        "delete": _operation(resource, "delete", f"delete{prefix}{kind}", one),
        "parameters": [*name, *scope],
    }
    return paths


def _schemas(resource: ResourceType) -> dict[str, JsonDict]:
    free_form = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        schema_name(resource): {
            "description": f"{resource.kind}: the fake keeps every field as given.",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": free_form,
            },
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": [_gvk(resource)],
        },
        schema_name(resource, list_kind=True): {
            "description": f"A list of {resource.kind}.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": free_form,
                "items": {"type": "array", "items": _ref(schema_name(resource))},
            },
            "x-kubernetes-group-version-kind": [
                {"group": resource.group, "version": resource.version, "kind": resource.list_kind}
            ],
        },
    }


def _group_version_document(resources: list[ResourceType]) -> JsonDict:
    paths: dict[str, JsonDict] = {}
    schemas: dict[str, JsonDict] = {}
    for resource in resources:
        paths.update(_paths(resource))
        schemas.update(_schemas(resource))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (listwatch fake API server)", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
