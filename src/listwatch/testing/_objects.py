"""One object's endpoints: GET, POST (create), PUT (replace), PATCH and DELETE.

Each goes through the same :class:`ObjectStore` calls as the Python API of
``FakeApiServer``, after the checks kube-apiserver makes before storage: the body decodes
(``fieldValidation``, ``fieldvalidation.py``), its ``apiVersion``/``kind`` fit the URL, its
namespace and name match the path, and the patch type is one the fake applies
(``patch.py``); then, unlike the Python API, the field manager records the write in
``metadata.managedFields`` (``managedfields.py``, named by ``fieldManager`` or the
``User-Agent``). Query parameters the fake does not act on (``pretty``) are accepted and
have no effect; ``dryRun`` is refused (see :func:`_refuse_dry_run`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from listwatch.testing import _fieldvalidation as fieldvalidation
from listwatch.testing import _managedfields as managedfields
from listwatch.testing import _namespaces as namespaces
from listwatch.testing import _patch as patch
from listwatch.testing import _status as status
from listwatch.testing._paths import Target
from listwatch.testing._resources import ResourceType
from listwatch.testing._status import FieldError
from listwatch.testing._store import JsonDict, ObjectStore

#: Defaults applied as a body is decoded (``SetDefaults_<Kind>``) that a client can see
#: recorded in ``managedFields``; the rest of a type's defaulting is the store's.
DEFAULTS: dict[tuple[str, str], Callable[[JsonDict], None]] = {
    ("", "Namespace"): namespaces.set_defaults,
}


@dataclass
class Answer:
    code: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)


class ObjectHandlers:
    """Serves the object endpoints of one server's store."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    async def handle(
        self, request: web.BaseRequest, target: Target, query: dict[str, str]
    ) -> Answer:
        method = request.method
        if target.name is None:
            if method != "POST" or (target.resource.namespaced and target.namespace is None):
                # A namespaced collection only takes writes per namespace.
                raise status.method_not_allowed()
            return await self._create(request, target, query)
        if method == "GET":
            return Answer(200, self._current(target))
        if method == "PUT":
            return await self._replace(request, target, query)
        if method == "PATCH":
            return await self._patch(request, target, query)
        if method == "DELETE":
            return self._delete(target, query)
        raise status.method_not_allowed()

    # ------------------------------------------------------------------ verbs

    def _current(self, target: Target) -> JsonDict:
        assert target.name is not None
        obj = self._store.get(target.resource, target.namespace, target.name)
        if obj is None:
            raise status.object_not_found(
                target.resource.group, target.resource.plural, target.name
            )
        return obj

    async def _create(
        self, request: web.BaseRequest, target: Target, query: dict[str, str]
    ) -> Answer:
        directive = fieldvalidation.directive(query, "CreateOptions")
        _refuse_dry_run(query, "CreateOptions")
        obj, warnings = await self._read_object(request, target, directive)
        _record_fields(request, query, target, None, obj)
        return Answer(201, self._store.create(target.resource, obj), warnings)

    async def _replace(
        self, request: web.BaseRequest, target: Target, query: dict[str, str]
    ) -> Answer:
        directive = fieldvalidation.directive(query, "UpdateOptions")
        _refuse_dry_run(query, "UpdateOptions")
        obj, warnings = await self._read_object(request, target, directive)
        _check_name(obj, target)
        live = self._store.get(target.resource, target.namespace, target.name or "")
        _record_fields(request, query, target, live, obj)
        stored, created = self._store.update(target.resource, obj)
        return Answer(201 if created else 200, stored, warnings)

    async def _patch(
        self, request: web.BaseRequest, target: Target, query: dict[str, str]
    ) -> Answer:
        kind = patch.patch_type(request.headers.get("Content-Type", ""))
        directive = fieldvalidation.directive(query, "PatchOptions")
        _refuse_dry_run(query, "PatchOptions")
        # Duplicates inside a JSON patch are dropped by the patch library (patch.go).
        check = kind == patch.MERGE_PATCH and directive != fieldvalidation.IGNORE
        decoded = _decode(await _read_body(request), check=check, what="error decoding patch: ")
        problems = decoded.problems()
        patched = patch.apply(kind, self._current(target), decoded.value)
        if not isinstance(patched, dict):
            raise status.bad_request("the patch must produce a JSON object")
        if problems and directive == fieldvalidation.STRICT:
            raise _strict_patch_error(patched, problems)
        _check_type(patched, target.resource)
        _check_name(patched, target)
        _record_fields(request, query, target, self._current(target), patched)
        stored = self._store.replace(target.resource, patched)
        return Answer(200, stored, _warnings(problems, directive))

    def _delete(self, target: Target, query: dict[str, str]) -> Answer:
        assert target.name is not None
        _refuse_dry_run(query, "DeleteOptions")
        resource = target.resource
        final, deleted = self._store.delete(resource, target.namespace, target.name)
        if not deleted:
            # Only marked (finalizers remain, or a namespace terminating): the object, with
            # 200 (delete.go answers 202 only to orphanDependents=false).
            return Answer(200, final)
        if resource.returns_deleted_object:
            return Answer(200, final)
        return Answer(200, _success(resource, final))

    # ------------------------------------------------------------------ bodies

    async def _read_object(
        self, request: web.BaseRequest, target: Target, directive: str
    ) -> tuple[JsonDict, dict[str, str]]:
        _check_content_type(request)
        resource = target.resource
        prefix = (
            f'{resource.kind} in version "{resource.version}" cannot be handled as a '
            f"{resource.kind}: "
        )
        decoded = _decode(
            await _read_body(request),
            check=directive != fieldvalidation.IGNORE,
            what=prefix,
        )
        obj = decoded.value
        if not isinstance(obj, dict):
            raise status.bad_request("the request body must be a JSON object")
        problems = decoded.problems()
        if problems and directive == fieldvalidation.STRICT:
            raise status.bad_request(prefix + "strict decoding error: " + ", ".join(problems))
        _check_type(obj, resource)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise status.bad_request("metadata must be a JSON object")
        if resource.namespaced:
            if metadata.get("namespace") and metadata["namespace"] != target.namespace:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            metadata["namespace"] = target.namespace
        return obj, _warnings(problems, directive)


def _record_fields(
    request: web.BaseRequest,
    query: dict[str, str],
    target: Target,
    live: JsonDict | None,
    new: JsonDict,
) -> None:
    """The field manager's entry for this write, in ``new`` (``managedfields.py``), made
    after the defaults that decoding applies, as kube-apiserver makes it."""
    set_defaults = DEFAULTS.get((target.resource.group, target.resource.kind))
    if set_defaults is not None:
        set_defaults(new)
    managedfields.record(
        live,
        new,
        manager=managedfields.manager_of(
            query.get("fieldManager"), request.headers.get("User-Agent", "")
        ),
        api_version=target.resource.api_version,
        builtin=target.resource.builtin,
    )


def _check_content_type(request: web.BaseRequest) -> None:
    """``NegotiateInputSerializer``: a body the server cannot decode is 415 (an empty
    ``Content-Type`` means the first serializer, JSON). The fake decodes JSON only."""
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if media_type not in ("", "application/json"):
        raise status.failure(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json",
            reason="UnsupportedMediaType",
        )


def _refuse_dry_run(query: dict[str, str], options_kind: str) -> None:
    """The fake has no dry run: refusing ``dryRun`` beats writing what was only tried.

    Answered as kube-apiserver answers a ``dryRun`` value it does not know (422 on the
    options' ``dryRun`` field, supported values "All").
    """
    value = query.get("dryRun")
    if value is None:
        return
    error = FieldError(
        "dryRun",
        "FieldValueNotSupported",
        "Unsupported value",
        "the listwatch fake API server does not support dry run",
        value,
    )
    raise status.invalid("meta.k8s.io", options_kind, "", [error])


def _warnings(problems: list[str], directive: str) -> dict[str, str]:
    if not problems or directive != fieldvalidation.WARN:
        return {}
    return {"Warning": ", ".join(fieldvalidation.warning_headers(problems))}


async def _read_body(request: web.BaseRequest) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise status.failure(
            413, "Request entity too large", reason="RequestEntityTooLarge"
        ) from exc


def _decode(raw: bytes, *, check: bool, what: str) -> fieldvalidation.Decoded:
    try:
        return fieldvalidation.decode(raw, check=check)
    except ValueError as exc:
        raise status.bad_request(f"{what}{exc}") from exc


def _strict_patch_error(patched: JsonDict, problems: list[str]) -> status.StatusError:
    """patch.go: ``NewInvalid(GroupKind{}, "", patch: Invalid value: <patched object>)``."""
    error = FieldError.invalid(
        "patch",
        json.dumps(patched, separators=(",", ":")),
        "strict decoding error: " + ", ".join(problems),
    )
    return status.failure(
        422,
        f' "" is invalid: {error}',
        reason="Invalid",
        details={
            "causes": [{"reason": error.cause_reason, "message": error.body(), "field": "patch"}]
        },
    )


def _check_type(obj: JsonDict, resource: ResourceType) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != resource.api_version:
        raise status.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({resource.api_version})"
        )
    if kind and kind != resource.kind:
        raise status.bad_request(
            f'{kind} in version "{resource.version}" cannot be handled as a {resource.kind}'
        )


def _check_name(obj: JsonDict, target: Target) -> None:
    name = (obj.get("metadata") or {}).get("name") or ""
    if name != target.name:
        raise status.bad_request(
            f"the name of the object ({name}) does not match the name on the URL ({target.name})"
        )


def _success(resource: ResourceType, final: JsonDict) -> JsonDict:
    metadata = final.get("metadata", {})
    details: JsonDict = {"name": metadata.get("name", "")}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    details["uid"] = metadata.get("uid", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
