"""Electors against the fake API server over real HTTP: who leads, release, transitions."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from listwatch.leaderelection import EPOCH_ANNOTATION
from listwatch.testing import FakeApiServer, Fault, RecordedRequest
from tests.leaderelection.helpers import (
    LEASE,
    NAMESPACE,
    Campaign,
    Candidate,
    lease_object,
    lease_of,
    spec_of,
)

LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
MICRO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def annotations_of(server: FakeApiServer) -> dict[str, str]:
    lease = lease_of(server)
    if lease is None:
        return {}
    found: dict[str, str] = lease["metadata"].get("annotations", {})
    return found


def renewals_seen(candidate: Candidate, holder: str) -> int:
    """How many distinct records held by ``holder`` the candidate has seen."""
    return len({s.observed_at for s in candidate.statuses if s.holder == holder})


async def test_one_of_three_leads_and_the_others_observe_it(
    server: FakeApiServer, campaign: Campaign
) -> None:
    candidates = [await campaign(name) for name in ("a", "b", "c")]
    await server.wait_until(
        lambda s: lease_of(s) is not None and EPOCH_ANNOTATION in annotations_of(s)
    )
    (leader,) = [c for c in candidates if c.elector.status.leading]
    term = leader.terms[0]
    standbys = [c for c in candidates if c is not leader]
    for standby in standbys:
        await standby.until(
            lambda s: s.holder == leader.identity and s.observed_epoch == term.epoch
        )
    # Several renewals later, the same single leader; the standbys never led.
    await standbys[0].until(lambda s: renewals_seen(standbys[0], leader.identity) >= 4)
    assert campaign.leaders() == {leader.identity}
    assert all(len(leaders) <= 1 for leaders in campaign.timeline), campaign.timeline
    assert all(not c.terms for c in standbys)
    spec = spec_of(server)
    assert spec["holderIdentity"] == leader.identity
    assert spec["leaseDurationSeconds"] == 3
    assert spec["leaseTransitions"] == 0
    assert annotations_of(server)[EPOCH_ANNOTATION] == str(term.epoch)
    assert leader.elector.status.terms == 1
    assert term.valid()


async def test_a_clean_cancel_releases_the_lease(server: FakeApiServer, campaign: Campaign) -> None:
    a = await campaign("a")
    await a.until(lambda s: s.leading)
    await a.until(lambda s: s.observed_epoch is not None)  # the first renewal landed
    await a.stop()
    spec = spec_of(server)
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert EPOCH_ANNOTATION not in annotations_of(server)
    # lead was cancelled (with its gate already closed) before the elector said so.
    kinds = [kind for kind, _ in a.events]
    assert kinds == ["leading", "lead started", "lead cancelled", "not leading"]
    assert a.gate_at_cancel == [False]
    assert not a.terms[0].valid()
    assert not a.elector.status.running


async def test_a_standby_takes_over_at_once_after_a_clean_cancel(
    campaign: Campaign,
) -> None:
    # A 30 s lease: the standby can only lead within the 10 s limit through the release.
    slow_expiry: dict[str, Any] = {
        "lease_duration": 30.0,
        "renew_deadline": 1.0,
        "retry_period": 0.1,
    }
    a = await campaign("a", **slow_expiry)
    await a.until(lambda s: s.leading)
    b = await campaign("b", **slow_expiry)
    b.rivals = a.terms
    await b.until(lambda s: s.holder == "a")
    await a.stop()
    status = await b.until(lambda s: s.leading, limit=10.0)
    assert status.term is not None
    assert status.term.lease_transitions == 1
    assert any(s.holder == "" for s in b.statuses)  # it took the released record
    assert status.term.epoch > a.terms[0].epoch
    await b.until(lambda s: bool(b.terms))
    assert b.rival_valid_at_start == [False]


async def test_lease_transitions_count_holder_changes_only(
    server: FakeApiServer, campaign: Campaign
) -> None:
    a = await campaign("a")
    await a.until(lambda s: s.leading)
    b = await campaign("b")
    await b.until(lambda s: renewals_seen(b, "a") >= 3)
    first = spec_of(server)
    await b.until(lambda s: renewals_seen(b, "a") >= 5)
    later = spec_of(server)
    # The same holder renewing: acquireTime kept, renewTime moves, no transition.
    assert later["acquireTime"] == first["acquireTime"]
    assert later["renewTime"] != first["renewTime"]
    assert later["leaseTransitions"] == first["leaseTransitions"] == 0
    c = await campaign("c")
    await a.stop()
    taker = await b.until(lambda s: s.leading or s.holder == "c")
    new, standby = (b, c) if taker.leading else (c, b)
    second = await new.until(lambda s: s.leading)
    assert spec_of(server)["leaseTransitions"] == 1
    assert spec_of(server)["acquireTime"] != first["acquireTime"]
    await new.stop()
    third = await standby.until(lambda s: s.leading)
    assert spec_of(server)["leaseTransitions"] == 2
    assert second.term is not None
    assert third.term is not None
    assert [a.terms[0].lease_transitions, second.term.lease_transitions] == [0, 1]
    assert third.term.lease_transitions == 2


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """Local time 5:45 ahead of UTC (a POSIX TZ rule: no zone database needed)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-05:45"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.usefixtures("far_from_utc")
async def test_times_are_rfc3339_utc_micro_times(server: FakeApiServer, campaign: Campaign) -> None:
    assert time.localtime().tm_gmtoff == 5 * 3600 + 45 * 60
    a = await campaign("a")
    await a.until(lambda s: s.observed_epoch is not None)
    spec = spec_of(server)
    now = datetime.now(UTC)
    for name in ("acquireTime", "renewTime"):
        assert MICRO_TIME.fullmatch(spec[name]), spec[name]
        written = datetime.strptime(spec[name], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        # Local time written as UTC would be 5 h 45 min off.
        assert abs(written - now) < timedelta(minutes=30)


async def test_a_conflicting_renewal_is_read_again_not_repeated(
    server: FakeApiServer, campaign: Campaign
) -> None:
    a = await campaign("a")
    await a.until(lambda s: s.observed_epoch is not None)
    start = server.request_count
    server.inject(Fault.status(409, reason="Conflict"), path=LEASE_PATH, method="PUT")
    refused = await server.wait_for_request(lambda r: r.fault is not None, start=start)
    await server.wait_until(lambda s: len(requests_after(s, refused)) >= 2)
    following = [(r.method, r.path) for r in requests_after(server, refused)[:2]]
    assert following == [("GET", LEASE_PATH), ("PUT", LEASE_PATH)]
    assert a.elector.status.leading
    assert a.elector.status.terms == 1
    assert [kind for kind, _ in a.events] == ["leading", "lead started"]


def requests_after(server: FakeApiServer, request: RecordedRequest) -> list[RecordedRequest]:
    logged = list(server.requests)
    index = next(i for i, r in enumerate(logged) if r is request)
    return logged[index + 1 :]


async def test_a_write_between_read_and_update_makes_the_update_fail(
    server: FakeApiServer, campaign: Campaign
) -> None:
    """Optimistic concurrency for real: the elector's PUT carries the RV it read."""
    stamp = "2026-01-01T00:00:00.000000Z"
    await server.create(
        lease_object(holderIdentity="", leaseDurationSeconds=1, acquireTime=stamp, renewTime=stamp)
    )
    start = server.request_count
    a = await campaign("a")
    await server.wait_for_request(lambda r: r.method == "GET", start=start)
    # Synchronously, before the elector has even read the response: someone else takes it.
    current = lease_of(server)
    assert current is not None
    current["spec"] = {"holderIdentity": "intruder", "leaseDurationSeconds": 30}
    await server.replace(current)
    await server.wait_for_request(lambda r: r.method == "PUT", start=start)
    status = await a.until(lambda s: s.holder == "intruder")
    assert not status.leading
    assert not a.terms
    assert spec_of(server)["holderIdentity"] == "intruder"
