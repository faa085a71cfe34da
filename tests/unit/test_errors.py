"""Every answer an API server can give maps onto one error class
(docs/kubernetes-semantics.md#status-and-http-codes)."""

from __future__ import annotations

import orjson
import pytest

from listwatch import errors
from listwatch.errors import api_error_from_response, api_error_from_status


def status(code: int, reason: str = "", message: str = "", **details: object) -> bytes:
    body: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (410, "Expired", errors.ResourceExpired),
        (410, "Gone", errors.ResourceExpired),
        (410, "", errors.ResourceExpired),
        (404, "NotFound", errors.ResourceNotFound),
        (400, "BadRequest", errors.InvalidRequest),
        (422, "Invalid", errors.InvalidRequest),
        (401, "Unauthorized", errors.Unauthorized),
        (403, "Forbidden", errors.Forbidden),
        (429, "TooManyRequests", errors.TooManyRequests),
        (500, "InternalError", errors.ServerError),
        (503, "ServiceUnavailable", errors.ServerError),
        (504, "Timeout", errors.ServerError),
    ],
)
def test_status_codes_map_to_classes(code: int, reason: str, expected: type) -> None:
    error = api_error_from_response(code, status(code, reason, "m"), request="list /api/v1/pods")
    assert type(error) is expected
    assert error.status == code
    assert "list /api/v1/pods" in str(error)


def test_fatal_errors_are_fatal() -> None:
    assert isinstance(api_error_from_response(404, b""), errors.FatalError)
    assert isinstance(api_error_from_response(422, b""), errors.FatalError)
    assert not isinstance(api_error_from_response(401, b""), errors.FatalError)


def test_too_large_resource_version_by_cause_and_by_old_message() -> None:
    by_cause = api_error_from_response(
        504,
        status(
            504,
            "Timeout",
            "Timeout: Too large resource version: 9, current: 5",
            causes=[{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            retryAfterSeconds=1,
        ),
        retry_after_header="1",
    )
    assert isinstance(by_cause, errors.ResourceVersionTooLarge)
    assert by_cause.retry_after == 1.0
    by_message = api_error_from_response(
        504, status(504, "Timeout", "Too large resource version: 9, current: 5")
    )
    assert isinstance(by_message, errors.ResourceVersionTooLarge)


def test_plain_text_429_uses_the_header() -> None:
    error = api_error_from_response(
        429, b"Too many requests, please try again later.\n", retry_after_header="7"
    )
    assert isinstance(error, errors.TooManyRequests)
    assert error.retry_after == 7.0
    assert "Too many requests" in error.message


def test_retry_after_from_details_when_no_header() -> None:
    error = api_error_from_response(500, status(500, "ServerTimeout", "etcd", retryAfterSeconds=2))
    assert isinstance(error, errors.ServerError)
    assert error.retry_after == 2.0


def test_http_date_retry_after_is_ignored() -> None:
    error = api_error_from_response(
        503, b"busy", retry_after_header="Wed, 21 Oct 2015 07:28:00 GMT"
    )
    assert error.retry_after is None


def test_error_event_status() -> None:
    error = api_error_from_status(
        {
            "kind": "Status",
            "code": 410,
            "reason": "Expired",
            "message": "too old resource version: 1 (5)",
        }
    )
    assert isinstance(error, errors.ResourceExpired)
    assert "too old resource version" in str(error)


def test_an_error_body_is_cut_short_in_the_message() -> None:
    error = api_error_from_response(500, b"x" * 10_000)
    assert len(str(error)) < 400
