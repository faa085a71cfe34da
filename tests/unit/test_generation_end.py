"""What ends a generation, decided without a server: which errors stop the Syncer
(``_reflector.fatal_error``), and a snapshot its receiver did not read to the end
(``Snapshot.ensure_read``)."""

from __future__ import annotations

import pytest

from listwatch import Snapshot
from listwatch._models import PageStream
from listwatch._reflector import fatal_error
from listwatch.errors import (
    ConnectionLost,
    FatalError,
    Forbidden,
    ForbiddenBeforeSync,
    InvalidRequest,
    ReceiverError,
    ResourceExpired,
    ResourceNotFound,
    ServerError,
    Unauthorized,
)

PODS = "list /api/v1/pods"


@pytest.mark.parametrize(
    ("error", "has_synced"),
    [
        (ResourceNotFound(404, "NotFound", request=PODS), False),  # a name not served
        (InvalidRequest(422, "Invalid"), False),
        (InvalidRequest(422, "Invalid"), True),
    ],
)
def test_a_fatal_error_stops_the_syncer_as_it_is(error: FatalError, has_synced: bool) -> None:
    assert fatal_error(error, has_synced=has_synced) is error


def test_a_404_once_synced_is_a_resource_no_longer_served_and_is_retried() -> None:
    """Its CRD was deleted: one resource's news, not a reason to stop the others, and it
    may be served again."""
    gone = ResourceNotFound(404, "NotFound", request="watch /apis/example.com/v1/widgets")
    assert fatal_error(gone, has_synced=True) is None


def test_a_403_before_the_first_snapshot_stops_the_syncer() -> None:
    """This identity may not list the resource: retrying would only hide it."""
    forbidden = Forbidden(403, "Forbidden", 'pods is forbidden: cannot list "pods"', request=PODS)
    fatal = fatal_error(forbidden, has_synced=False)
    assert type(fatal) is ForbiddenBeforeSync
    assert isinstance(fatal, Forbidden)  # callers catching Forbidden still do
    assert (fatal.status, fatal.reason, fatal.message, fatal.request) == (
        403,
        "Forbidden",
        'pods is forbidden: cannot list "pods"',
        PODS,
    )


@pytest.mark.parametrize(
    ("error", "has_synced"),
    [
        (Forbidden(403, "Forbidden", request=PODS), True),  # RBAC rolling out, a token rotating
        (Unauthorized(401, "Unauthorized", request=PODS), False),  # credentials rotate
        (ResourceExpired(410, "Expired"), False),
        (ServerError(500, "InternalError"), False),
        (ConnectionLost("watch /api/v1/pods: reset"), True),
        (ReceiverError("on_batch failed"), True),
        (ValueError("a bug"), True),
    ],
)
def test_everything_else_backs_off_and_relists(error: Exception, has_synced: bool) -> None:
    assert fatal_error(error, has_synced=has_synced) is None


async def test_a_snapshot_read_to_its_end_was_taken() -> None:
    snapshot = Snapshot.of([{"metadata": {"name": "a", "resourceVersion": "1"}}], "1")
    await snapshot.collect()
    snapshot.ensure_read()


async def test_a_snapshot_not_read_to_its_end_is_a_receiver_error() -> None:
    """Taking part of a snapshot for all of it would lose the deletions of the rest; an
    empty snapshot must be read too (that is how a receiver learns everything is gone)."""
    objects = [{"metadata": {"name": n, "resourceVersion": "1"}} for n in "abc"]
    partly = Snapshot.of(objects, "1", page_size=1)
    async for _ in partly:
        break
    with pytest.raises(
        ReceiverError, match=r"^the store's sink for pods returned after reading 1 "
    ):
        partly.ensure_read("the store's sink for pods")
    with pytest.raises(
        ReceiverError, match=r"^on_list returned after reading 0 items, before the end"
    ):
        Snapshot.of([], "1").ensure_read()


async def test_a_list_error_in_the_stream_is_raised_whatever_the_reader_made_of_it() -> None:
    """The stream failed, not the reader: the list error ends the generation, and the
    loop's rules (not a ReceiverError) decide what comes next."""
    expired = ResourceExpired(410, "Expired", request=PODS)

    async def pages() -> PageStream:
        raise expired
        yield  # an async generator, for the type

    snapshot = Snapshot(pages(), resource_version="1")
    with pytest.raises(ResourceExpired):
        await snapshot.collect()
    with pytest.raises(ResourceExpired) as raised:  # the reader swallowed it
        snapshot.ensure_read()
    assert raised.value is expired
