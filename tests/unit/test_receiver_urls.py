"""``ReceiverUrls``: which receiver a sender writes to, and when it moves to the next."""

from __future__ import annotations

import logging

import pytest

from listwatch.errors import HttpSyncError
from listwatch.httpsync import ReceiverUrls

A, B, C = "http://a:1", "http://b:2", "http://c:3"


def down(url: str) -> HttpSyncError:
    return HttpSyncError(f"POST {url}/sync/pods/batch: cannot connect (ConnectionRefusedError)")


def test_the_first_url_is_used_first() -> None:
    assert ReceiverUrls([A, B, C]).current == A


def test_a_failure_moves_to_the_next_and_stays_there() -> None:
    urls = ReceiverUrls([A, B, C])
    urls.failed(A, down(A))
    assert urls.current == B
    # B works: nothing moves the sender back to A, which the sender left.
    assert urls.current == B


def test_after_the_last_comes_the_first_again() -> None:
    urls = ReceiverUrls([A, B])
    urls.failed(A, down(A))
    urls.failed(B, down(B))
    assert urls.current == A


def test_a_failure_of_a_receiver_already_left_moves_nothing() -> None:
    """Two requests in flight on A both fail: the sender moves once, to B, not past it."""
    urls = ReceiverUrls([A, B, C])
    urls.failed(A, down(A))
    urls.failed(A, down(A))
    assert urls.current == B


def test_the_move_is_a_warning_naming_both_urls_and_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls = ReceiverUrls([A, B])
    with caplog.at_level(logging.WARNING, logger="listwatch"):
        urls.failed(A, down(A))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"POST {A}/sync/pods/batch: cannot connect (ConnectionRefusedError); "
        f"failing over from {A} to {B}"
    )


def test_one_url_has_nothing_to_move_to(caplog: pytest.LogCaptureFixture) -> None:
    urls = ReceiverUrls(A)
    with caplog.at_level(logging.WARNING, logger="listwatch"):
        urls.failed(A, down(A))
    assert urls.current == A
    assert caplog.records == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([], "give at least one receiver URL"),
        ([A, "http://b:2/", A], f"the receiver URL {A} is given twice"),
        ([A, "http://user:pw@b:2"], "must not hold a user or password"),
    ],
)
def test_what_cannot_be_used_is_refused(given: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        ReceiverUrls(given)
    assert "pw" not in str(raised.value)
