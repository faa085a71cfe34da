"""``metav1.Status`` bodies, and the exception that carries one.

Clients classify errors by the Status a server sends (``code``, ``reason``, ``details``),
not by the HTTP status line alone: client-go's ``IsResourceExpired`` needs reason
``Expired``, ``isTooLargeResourceVersionError`` needs the ``ResourceVersionTooLarge`` cause.
So every refusal of the fake server is built here, in one place, with the wire shape and
messages of kube-apiserver (docs/kubernetes-semantics.md#status-and-http-codes), and raised as a
:class:`StatusError` that the HTTP layer turns into a response and the Python API lets
through to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

#: The default ``reason`` for a status code, as ``NewGenericServerResponse`` picks it.
REASON_FOR_CODE: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

#: The body APF and max-inflight send with a 429 (``http.Error`` adds the newline).
APF_PLAIN_TEXT_BODY = "Too many requests, please try again later.\n"


def status_body(
    code: int,
    reason: str | None,
    message: str,
    *,
    details: JsonDict | None = None,
    metadata: JsonDict | None = None,
) -> JsonDict:
    """A failure ``Status`` exactly as the API server serializes it (empty fields omitted)."""
    body: JsonDict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


@dataclass(eq=False)
class StatusError(Exception):
    """A request refused with a ``metav1.Status``: HTTP status ``code``, ``body``, headers."""

    code: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code} {self.reason or ''}: {self.message}".strip())

    @property
    def reason(self) -> str:
        """The Status ``reason`` ("" when the server sent none, as for a bad watch RV)."""
        return str(self.body.get("reason", ""))

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))

    def json_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def failure(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    details: JsonDict | None = None,
    metadata: JsonDict | None = None,
    retry_after: int | None = None,
) -> StatusError:
    """A :class:`StatusError`; ``retry_after`` sets both the header and ``retryAfterSeconds``.

    kube-apiserver's ``ErrorNegotiated`` copies ``details.retryAfterSeconds`` into a
    ``Retry-After`` header, so the two always travel together.
    """
    headers: dict[str, str] = {}
    if retry_after is not None:
        details = {**(details or {}), "retryAfterSeconds": retry_after}
        headers["Retry-After"] = str(retry_after)
    body = status_body(code, reason, message, details=details, metadata=metadata)
    return StatusError(code, body, headers)


def bad_request(message: str) -> StatusError:
    return failure(400, message, reason="BadRequest")


def unauthorized() -> StatusError:
    return failure(401, "Unauthorized", reason="Unauthorized")


def resource_not_found() -> StatusError:
    """A path that names no served resource (the generic 404 of the API server)."""
    return failure(
        404, "the server could not find the requested resource", reason="NotFound", details={}
    )


def object_not_found(group: str, plural: str, name: str) -> StatusError:
    """``NewNotFound``: message ``pods "x" not found``, details name/group/kind(=plural)."""
    return failure(
        404,
        f'{qualified_resource(group, plural)} "{name}" not found',
        reason="NotFound",
        details=_object_details(group, plural, name),
    )


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return failure(
        409,
        f'{qualified_resource(group, plural)} "{name}" already exists',
        reason="AlreadyExists",
        details=_object_details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, detail: str) -> StatusError:
    return failure(
        409,
        f'Operation cannot be fulfilled on {qualified_resource(group, plural)} "{name}": {detail}',
        reason="Conflict",
        details=_object_details(group, plural, name),
    )


def method_not_allowed() -> StatusError:
    """A path that exists without this verb: the router's 405, the same for every path."""
    return failure(
        405,
        "the server does not allow this method on the requested resource",
        reason="MethodNotAllowed",
        details={},
    )


def expired(message: str, *, metadata: JsonDict | None = None) -> StatusError:
    """410 with reason ``Expired``, the only 410 client-go's ``IsResourceExpired`` accepts."""
    return failure(410, message, reason="Expired", metadata=metadata)


def too_old_resource_version(requested: int, oldest: int) -> StatusError:
    """The watch cache's 410: ``too old resource version: <requested> (<oldest-1>)``
    (docs/kubernetes-semantics.md#watch)."""
    return expired(f"too old resource version: {requested} ({oldest})")


def too_large_resource_version(requested: int, current: int) -> StatusError:
    """504 with cause ``ResourceVersionTooLarge`` and ``Retry-After: 1``
    (docs/kubernetes-semantics.md#status-and-http-codes)."""
    return failure(
        504,
        f"Timeout: Too large resource version: {requested}, current: {current}",
        reason="Timeout",
        details={
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ]
        },
        retry_after=1,
    )


def namespace_terminating(group: str, plural: str, name: str, namespace: str) -> StatusError:
    """NamespaceLifecycle admission's 403 for new content in a terminating namespace."""
    details = _object_details(group, plural, name)
    details["causes"] = [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    return failure(
        403,
        f'{qualified_resource(group, plural)} "{name}" is forbidden: unable to create new '
        f"content in namespace {namespace} because it is being terminated",
        reason="Forbidden",
        details=details,
    )


def internal_error(message: str) -> StatusError:
    return failure(500, f"Internal error occurred: {message}", reason="InternalError")


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: ``<field>: <type>: <detail>`` in messages and causes."""

    field: str
    cause_reason: str  # FieldValueForbidden, FieldValueNotSupported, FieldValueRequired, ...
    type_text: str  # "Forbidden", "Unsupported value", "Required value", "Invalid value"
    detail: str
    bad_value: str | None = None
    quote_value: bool = True  # Go prints strings quoted, numbers (e.g. ``0``) as is

    @classmethod
    def forbidden(cls, path: str, detail: str) -> FieldError:
        return cls(path, "FieldValueForbidden", "Forbidden", detail)

    @classmethod
    def required(cls, path: str, detail: str) -> FieldError:
        return cls(path, "FieldValueRequired", "Required value", detail)

    @classmethod
    def invalid(cls, path: str, value: str, detail: str, *, quote: bool = True) -> FieldError:
        return cls(path, "FieldValueInvalid", "Invalid value", detail, value, quote)

    @classmethod
    def not_supported(cls, path: str, value: str, supported: Sequence[str]) -> FieldError:
        choices = ", ".join(json.dumps(s) for s in supported)
        return cls(
            path,
            "FieldValueNotSupported",
            "Unsupported value",
            f"supported values: {choices}",
            value,
        )

    def body(self) -> str:
        """``ErrorBody``: the part after the field path."""
        if self.bad_value is None:
            return f"{self.type_text}: {self.detail}"
        value = json.dumps(self.bad_value) if self.quote_value else self.bad_value
        return f"{self.type_text}: {value}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(group: str, kind: str, name: str, errors: Sequence[FieldError]) -> StatusError:
    """``NewInvalid``: 422 ``<Kind>.<group> "<name>" is invalid: <errors>`` with causes."""
    qualified_kind = f"{kind}.{group}" if group else kind
    joined = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    details: JsonDict = {"group": group, "kind": kind} if group else {"kind": kind}
    if name:
        details["name"] = name
    details["causes"] = [
        {"reason": e.cause_reason, "message": e.body(), "field": e.field} for e in errors
    ]
    return failure(
        422, f'{qualified_kind} "{name}" is invalid: {joined}', reason="Invalid", details=details
    )


def invalid_list_options(errors: Sequence[FieldError]) -> StatusError:
    """422 for ``ListOptions`` validation (docs/kubernetes-semantics.md#paging, #watch): kind
    ListOptions, group meta.k8s.io."""
    return invalid("meta.k8s.io", "ListOptions", "", errors)


def qualified_resource(group: str, plural: str) -> str:
    """``GroupResource.String()``: ``pods`` for the core group, ``deployments.apps`` else."""
    return f"{plural}.{group}" if group else plural


def _object_details(group: str, plural: str, name: str) -> JsonDict:
    details: JsonDict = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details
