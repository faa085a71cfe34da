"""Backoff follows client-go: 0.8 s doubling to 30 s, jitter x[1, 2), reset after 2 min; a
server that does not answer at all is waited for by a short streak of its own (``Waits``)."""

from __future__ import annotations

import logging
import random

import pytest

from listwatch._backoff import Backoff
from listwatch._reflector import RECONNECT_CAP, Waits, _after_watch_error
from listwatch.errors import ApiConnectionError, ResourceExpired, ServerError

REFUSED = ApiConnectionError("watch /api/v1/pods: cannot connect (refused)", refused=True)
EXPIRED = ResourceExpired(410, "Expired", "too old resource version: 5 (9)")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_doubles_to_the_cap_without_jitter() -> None:
    clock = FakeClock()
    backoff = Backoff(jitter=0.0, clock=clock)
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])


def test_jitter_stays_in_one_to_two_times_the_base() -> None:
    clock = FakeClock()
    backoff = Backoff(clock=clock, rng=random.Random(7))
    bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    for base in bases:
        delay = backoff.next_delay()
        assert base <= delay < 2 * base


def test_resets_after_two_minutes_without_failure() -> None:
    clock = FakeClock()
    backoff = Backoff(jitter=0.0, clock=clock)
    for _ in range(5):
        backoff.next_delay()
    clock.now += 119.0
    assert backoff.next_delay() == pytest.approx(25.6)
    clock.now += 121.0
    assert backoff.next_delay() == pytest.approx(0.8)


def test_explicit_reset() -> None:
    backoff = Backoff(jitter=0.0, clock=FakeClock())
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.8)


async def test_wait_honours_a_longer_retry_after() -> None:
    backoff = Backoff(initial=0.0, cap=0.0, jitter=0.0)
    assert await backoff.wait(at_least=0.01) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"initial": 2, "cap": 1}, {"factor": 0.5}, {"jitter": -1}],
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_no_answer_waits_a_short_streak_that_does_not_grow_the_relists() -> None:
    waits = Waits(Backoff(jitter=0.0, clock=FakeClock()))
    outage = [waits.after(REFUSED) for _ in range(6)]
    assert outage == pytest.approx([0.8, 1.6] + [RECONNECT_CAP] * 4)
    assert waits.after(EXPIRED) == pytest.approx(0.8)  # the restarted server's 410


def test_an_answer_ends_the_reconnect_streak() -> None:
    waits = Waits(Backoff(jitter=0.0, clock=FakeClock()))
    for _ in range(3):
        waits.after(REFUSED)
    waits.answered()
    assert waits.after(REFUSED) == pytest.approx(0.8)
    waits.after(REFUSED)
    waits.after(ServerError(500, "InternalError"))  # an answer, if a failing one
    assert waits.after(REFUSED) == pytest.approx(0.8)


def test_a_relist_storm_grows_through_an_outage() -> None:
    """Generations failing one after another back off as client-go's do, whether or not
    the server was unreachable between them."""
    waits = Waits(Backoff(jitter=0.0, clock=FakeClock()))
    relists = []
    for _ in range(7):
        relists.append(waits.after(EXPIRED))
        waits.after(REFUSED)
    assert relists == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0])


def test_the_reconnect_streak_keeps_the_jitter_and_a_smaller_backoff() -> None:
    fast = Waits(Backoff(initial=0.01, cap=0.05, rng=random.Random(3)))
    delays = [fast.after(REFUSED) for _ in range(20)]
    assert all(0.01 <= delay < 0.1 for delay in delays)
    assert len(set(delays)) == len(delays)  # jittered: a fleet does not reconnect in lockstep


def test_an_outage_is_timed_from_its_first_unanswered_try_until_an_answer() -> None:
    clock = FakeClock()
    waits = Waits(Backoff(jitter=0.0, clock=clock))
    assert waits.unanswered_for() == 0.0
    for _ in range(4):
        clock.now += waits.after(REFUSED)
    assert waits.unanswered_for() == pytest.approx(0.8 + 1.6 + 2 * RECONNECT_CAP)
    waits.after(EXPIRED)  # the server answered, with a 410
    assert waits.unanswered_for() == 0.0


async def test_a_long_outage_is_announced_at_warning_though_each_wait_is_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every wait for a server that does not answer is at most ``2 * RECONNECT_CAP``: an
    outage must still be loud once it has lasted ``LOUD_WAIT_SECONDS``."""
    clock = FakeClock()
    waits = Waits(Backoff(initial=0.0, cap=0.0, jitter=0.0, clock=clock))
    caplog.set_level(logging.INFO, logger="listwatch")
    for _ in range(4):
        clock.now += 2.0  # each try takes a while to be refused
        assert await _after_watch_error(REFUSED, waits) is None
    levels = [(record.levelname, record.getMessage()) for record in caplog.records]
    # refused at 2, 4, 6 and 8 s: the outage is timed from its first refusal
    assert [level for level, _ in levels] == ["INFO", "INFO", "INFO", "WARNING"]
    assert "(no answer for 6 s); re-watching in 0.0 s" in levels[3][1]
