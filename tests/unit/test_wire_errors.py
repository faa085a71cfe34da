"""The HTTP sync protocol's errors, both ways: what the receiver answers for each error, and
what the sender makes of that answer (``listwatch.httpsync._wire``'s table)."""

from __future__ import annotations

import orjson
import pytest

from listwatch._framing import LineTooLong
from listwatch.errors import HttpSyncError, ProtocolError, StaleEpoch, StaleWrite
from listwatch.httpsync import _wire as protocol

WHERE = "POST https://receiver.example/sync/pods/batch"


def over_the_wire(exc: Exception) -> tuple[protocol.Answer, Exception]:
    """The receiver's answer to ``exc`` as its body goes out, and the sender's error for it."""
    answer = protocol.status_for(exc)
    body = protocol.status_body(answer.code, answer.reason, answer.message, **answer.details)
    return answer, protocol.error_from_answer(answer.code, body, WHERE)


def test_a_stale_epoch_comes_back_as_itself() -> None:
    sent = StaleEpoch("deployments.apps", 4100, 4211)
    answer, got = over_the_wire(sent)
    assert (answer.code, answer.reason) == (409, "Conflict")
    assert answer.details["causes"] == [{"reason": "StaleEpoch"}]
    assert type(got) is StaleEpoch
    assert (got.resource, got.epoch, got.recorded) == ("deployments.apps", 4100, 4211)
    assert str(got) == str(sent)


def test_a_stale_write_comes_back_as_itself_naming_the_request() -> None:
    sent = StaleWrite("pods: refused a write of generation 2: the receiver holds generation 3")
    answer, got = over_the_wire(sent)
    assert (answer.code, answer.reason) == (409, "Conflict")
    assert answer.details["causes"] == [{"reason": "StaleWrite"}]
    assert type(got) is StaleWrite
    assert str(got) == f"{WHERE}: the receiver refused the write: {sent}"


@pytest.mark.parametrize(
    ("sent", "code", "reason"),
    [
        (ProtocolError("the commit record counts 2 objects, 1 came"), 400, "BadRequest"),
        (
            ProtocolError("a valid bearer token is required", code=401, reason="Unauthorized"),
            401,
            "Unauthorized",
        ),
        (
            ProtocolError("not json", code=415, reason="UnsupportedMediaType"),
            415,
            "UnsupportedMediaType",
        ),
        (LineTooLong(17 * 1024 * 1024 + 1, b"{"), 413, "RequestEntityTooLarge"),
        (OSError("disk full"), 503, "ServiceUnavailable"),
    ],
)
def test_other_errors_reach_the_sender_as_http_sync_errors(
    sent: Exception, code: int, reason: str
) -> None:
    """Not the fence's: the sender needs the code and the message, and retries."""
    answer, got = over_the_wire(sent)
    assert (answer.code, answer.reason) == (code, reason)
    assert type(got) is HttpSyncError
    assert str(got).startswith(f"{WHERE}: HTTP {code} {reason}: ")
    assert answer.message in str(got)


def test_a_conflict_without_the_epochs_is_a_stale_write() -> None:
    """A 409 is the fence's refusal whatever else its body says (another receiver's, a
    proxy's): never mistaken for a retryable failure."""
    no_epochs = {"details": {"causes": [{"reason": "StaleEpoch"}]}}
    for body in (b"", b"conflict", orjson.dumps({"details": []}), orjson.dumps(no_epochs)):
        assert type(protocol.error_from_answer(409, body, WHERE)) is StaleWrite


def test_an_answer_that_is_not_a_status_is_named_not_quoted() -> None:
    """A proxy's page, or aiohttp's own 400 for a header it could not parse, which quotes
    the header's first 100 bytes: the bearer token. Only its size is shown."""
    token = "tok-" + "s3cret" * 20
    quoted = f"Got more than 8190 bytes when reading: b'Bearer {token[:93]}...'.".encode()
    got = protocol.error_from_answer(400, quoted, WHERE, secrets=[token])
    assert type(got) is HttpSyncError
    assert str(got) == (
        f"{WHERE}: HTTP 400 Bad Request: an answer that is not a Status ({len(quoted)} bytes, "
        "not shown)"
    )
    got = protocol.error_from_answer(502, b"<html>" + b"x" * 1000, WHERE)
    assert str(got).startswith(f"{WHERE}: HTTP 502 Bad Gateway: an answer that is not a Status")


@pytest.mark.parametrize(
    "quoted",
    [
        "the token was {token}",  # whole
        "header b'Bearer {token:.60}...'",  # cut short, as a server quotes a header
        "it ends {token:.12}",  # a piece of at least 8 characters
    ],
)
def test_a_status_message_is_shown_without_the_senders_token(quoted: str) -> None:
    token = "Zm9vYmFyYmF6cXV4" * 8
    message = quoted.format(token=token)
    body = protocol.status_body(400, "BadRequest", message)
    got = str(protocol.error_from_answer(400, body, WHERE, secrets=[token]))
    assert token[:8] not in got
    assert "[redacted]" in got


def test_a_status_message_is_shown_as_one_capped_line() -> None:
    message = "line one\nforged: line two\x1b[31m " + "x" * 2000
    body = protocol.status_body(400, "BadRequest", message)
    got = str(protocol.error_from_answer(400, body, WHERE))
    assert "\n" not in got
    assert "\x1b" not in got
    assert "line one forged: line two" in got
    assert len(got) <= len(WHERE) + len(": HTTP 400 BadRequest: ") + protocol.MAX_SHOWN
    assert got.endswith("...")
