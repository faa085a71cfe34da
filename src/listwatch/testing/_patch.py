"""PATCH: the patch types the fake applies, and kube-apiserver's answer to the others.

kube-apiserver picks the patch type from ``Content-Type`` (without its ``; charset=...``)
and refuses a type the resource does not support with 415 "the body of the request was in
an unknown format - accepted media types include: <types>" (``handlers/patch.go``,
``negotiation.NewUnsupportedMediaTypeError``). The fake supports:

* ``application/merge-patch+json`` (RFC 7386), as ``jsonpatch.MergePatch`` does it;
* ``application/json-patch+json`` (RFC 6902), with the ``jsonpatch`` library. An
  undecodable patch is 400; one that does not apply (a missing path, a failed ``test``) is
  422 "the server rejected our request due to an error in our request" with the library's
  reason as the cause (``NewGenericServerResponse``; the reason's words are python-json-
  patch's, not evanphx/json-patch's); more than 10000 operations is 413
  (``maxJSONPatchOperations``).

Not supported, and so answered with the 415 a real server gives a type it lacks:
``application/strategic-merge-patch+json`` (a strategic merge needs every field's patch
strategy and merge key from the Go types, which the fake does not have: a guess would
merge lists wrongly) and ``application/apply-patch+yaml`` (server-side apply needs the
field managers and schemas). kubectl's ``label`` and ``annotate`` send merge patches; its
``patch`` defaults to strategic and so needs ``--type merge`` or ``--type json``.
"""

from __future__ import annotations

from typing import Any

from listwatch.testing import _status as status

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
SUPPORTED = (JSON_PATCH, MERGE_PATCH)  # in the order kube-apiserver lists patch types
MAX_JSON_PATCH_OPERATIONS = 10000


def patch_type(content_type: str) -> str:
    """The patch type of a request, or the 415 for one the fake does not apply."""
    media_type = content_type.split(";", 1)[0]
    if media_type not in SUPPORTED:
        raise status.failure(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(SUPPORTED),
            reason="UnsupportedMediaType",
        )
    return media_type


def apply(kind: str, current: Any, patch: Any) -> Any:
    """The patched document; 400/413/422 as kube-apiserver answers a bad patch."""
    if kind == MERGE_PATCH:
        return merge_patch(current, patch)
    return json_patch(current, patch)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes a member."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 with the ``jsonpatch`` library (the ``testing`` extra)."""
    import jsonpatch  # noqa: PLC0415 - an extra, needed only when a JSON patch arrives

    if not isinstance(operations, list):
        raise status.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise status.failure(
            413,
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(operations)}",
            reason="RequestEntityTooLarge",
        )
    try:
        patch = jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, TypeError) as exc:
        raise status.bad_request(str(exc)) from None
    try:
        return patch.apply(document)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError) as exc:
        raise _rejected(str(exc) or type(exc).__name__) from None
    except (TypeError, ValueError, IndexError) as exc:
        raise _rejected(str(exc)) from None


def _rejected(reason: str) -> status.StatusError:
    """``NewGenericServerResponse(422, ...)``: a generic message, the reason as a cause."""
    return status.failure(
        422,
        "the server rejected our request due to an error in our request",
        reason="Invalid",
        details={"causes": [{"reason": "UnexpectedServerResponse", "message": reason}]},
    )
