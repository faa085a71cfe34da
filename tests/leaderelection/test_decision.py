"""The pure rules: ``decide``, ``LeaseTiming`` validation, MicroTime, the Lease record."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch.errors import EpochError
from listwatch.leaderelection import LeaseRecord, LeaseTiming
from listwatch.leaderelection._lease import parse_epoch
from listwatch.leaderelection._record import Wait, Write, decide, micro_time

ME = "me"
TIMING = LeaseTiming(lease_duration=2.5, renew_deadline=1.0, retry_period=0.5)
WALL = "2026-12-02T05:50:43.123456Z"

stamps = st.one_of(st.none(), st.text(max_size=30), st.just("2001-01-01T00:00:00.000000Z"))
records = st.builds(
    LeaseRecord,
    holder_identity=st.sampled_from(["", ME, "other", "other-2"]),
    lease_duration_seconds=st.integers(-5, 60),
    acquire_time=stamps,
    renew_time=stamps,
    lease_transitions=st.integers(0, 10_000),
)
moments = st.floats(0, 1e6, allow_nan=False)
elapsed = st.floats(0, 200, allow_nan=False)


def decide_at(record: LeaseRecord | None, observed_at: float, now: float) -> Wait | Write:
    return decide(
        record, observed_at=observed_at, now=now, identity=ME, timing=TIMING, wall_time=WALL
    )


@given(records, moments, elapsed)
def test_a_record_is_taken_exactly_when_free_ours_or_expired_by_observation(
    record: LeaseRecord, observed_at: float, since: float
) -> None:
    now = observed_at + since
    decision = decide_at(record, observed_at, now)
    held_by_other = record.holder_identity not in ("", ME)
    expired = now >= observed_at + max(record.lease_duration_seconds, 0)
    if held_by_other and not expired:
        assert decision == Wait(record.holder_identity, observed_at + record.lease_duration_seconds)
        return
    assert isinstance(decision, Write)
    assert not decision.create
    written = decision.record
    assert written.holder_identity == ME
    assert written.lease_duration_seconds == 3  # 2.5 s rounded up
    assert written.renew_time == WALL
    same = record.holder_identity == ME
    assert decision.transition is (not same)
    assert written.lease_transitions == record.lease_transitions + (0 if same else 1)
    assert written.acquire_time == ((record.acquire_time or WALL) if same else WALL)


@given(records, moments, elapsed, stamps, stamps)
def test_the_record_s_timestamps_never_change_the_decision(
    record: LeaseRecord, observed_at: float, since: float, acquire: str | None, renew: str | None
) -> None:
    now = observed_at + since
    restamped = replace(record, acquire_time=acquire, renew_time=renew)
    first, second = decide_at(record, observed_at, now), decide_at(restamped, observed_at, now)
    assert type(first) is type(second)
    if isinstance(first, Wait):
        assert first == second
    else:
        assert isinstance(second, Write)
        assert (first.transition, first.record.lease_transitions) == (
            second.transition,
            second.record.lease_transitions,
        )


@given(records, moments, elapsed, elapsed)
def test_once_expired_a_record_stays_expired_until_it_changes(
    record: LeaseRecord, observed_at: float, since: float, later: float
) -> None:
    if isinstance(decide_at(record, observed_at, observed_at + since), Write):
        assert isinstance(decide_at(record, observed_at, observed_at + since + later), Write)


def test_no_lease_is_created_with_zero_transitions() -> None:
    decision = decide_at(None, 0.0, 0.0)
    assert decision == Write(LeaseRecord(ME, 3, WALL, WALL, 0), create=True, transition=False)


def test_the_boundary_is_the_observation_plus_the_record_s_duration() -> None:
    held = LeaseRecord("other", 15, None, None, 4)
    assert isinstance(decide_at(held, 100.0, 114.999), Wait)
    assert isinstance(decide_at(held, 100.0, 115.0), Write)


@given(
    st.floats(0.001, 100, allow_nan=False),
    st.floats(0.001, 100, allow_nan=False),
    st.floats(0.001, 100, allow_nan=False),
    st.floats(0.01, 3, allow_nan=False),
)
def test_timing_is_valid_exactly_when_client_go_s_ordering_holds(
    lease: float, renew: float, retry: float, jitter: float
) -> None:
    if lease > renew > jitter * retry:
        timing = LeaseTiming(lease, renew, retry, jitter)
        assert timing.lease_duration_seconds == math.ceil(lease) >= lease
    else:
        with pytest.raises(ValueError, match="must be greater than"):
            LeaseTiming(lease, renew, retry, jitter)


MICRO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_micro_time_is_rfc3339_utc_with_microseconds(moment: datetime) -> None:
    text = micro_time(moment)
    assert MICRO.fullmatch(text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert parsed == moment


def test_micro_time_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        micro_time(datetime(2026, 12, 2, 5, 50, 43))
    assert micro_time(datetime(2026, 12, 2, 5, 50, 43, 123456, UTC)) == WALL


def test_a_lease_spec_round_trips_and_wrong_types_are_refused() -> None:
    record = LeaseRecord("me", 15, WALL, WALL, 3)
    assert LeaseRecord.from_spec(record.to_spec()) == record
    assert LeaseRecord.from_spec({}) == LeaseRecord()
    with pytest.raises(ValueError, match="leaseDurationSeconds must be an integer"):
        LeaseRecord.from_spec({"leaseDurationSeconds": "15"})
    with pytest.raises(ValueError, match="leaseTransitions must be an integer"):
        LeaseRecord.from_spec({"leaseTransitions": True})


@pytest.mark.parametrize("rv", ["", "0", "-3", "+3", "007", "12a", "٣", "1.5", "x" * 200])
def test_an_epoch_needs_a_canonical_positive_integer(rv: str) -> None:
    with pytest.raises(EpochError, match="not a positive decimal integer"):
        parse_epoch(rv, "default/l")


def test_an_epoch_is_the_resource_version() -> None:
    assert parse_epoch("18446744073709551615", "default/l") == 2**64 - 1
