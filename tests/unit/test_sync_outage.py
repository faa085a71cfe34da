"""How long a resource has gone without a sync, folded from the Syncer's events
(``StatusTracker``): what ``/readyz``'s staleness rule, the mirror's stale error line and
``--exit-on-failure`` read. A resync is not a failure, though its relist is time without a
sync; a snapshot delivered ends an outage."""

from __future__ import annotations

from listwatch.observe import _events as observe
from listwatch.observe._status import StatusTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def delivered(tracker: StatusTracker, generation: int) -> None:
    tracker(observe.GenerationStarted(generation))
    tracker(observe.ReceiverStarted("on_list", generation))
    tracker(observe.SnapshotDelivered(generation, 3, "7", 0.1))


def failed(tracker: StatusTracker, generation: int) -> None:
    tracker(observe.GenerationStarted(generation))
    tracker(observe.GenerationEnded(generation, "ServerError", "ServerError: 500"))
    tracker(observe.BackingOff(1.0))


def test_a_resource_is_unsynced_from_the_start_until_its_first_snapshot() -> None:
    clock = Clock()
    tracker = StatusTracker(None, clock=clock)
    clock.now += 5
    status = tracker.status()
    assert (status.unsynced_for, status.failing_for, status.failures) == (5.0, 0.0, 0)
    delivered(tracker, 1)
    clock.now += 100  # quiet, and in sync: a watch with nothing to say is not an outage
    assert tracker.status().unsynced_for == 0.0


def test_an_outage_runs_from_the_first_failure_to_the_next_snapshot() -> None:
    clock = Clock()
    tracker = StatusTracker(None, clock=clock)
    delivered(tracker, 1)
    clock.now += 50
    failed(tracker, 2)
    clock.now += 3
    failed(tracker, 3)
    clock.now += 4
    status = tracker.status()
    assert (status.unsynced_for, status.failing_for, status.failures) == (7.0, 7.0, 2)
    assert status.last_error == "ServerError: 500"
    delivered(tracker, 4)
    status = tracker.status()
    assert (status.unsynced_for, status.failing_for, status.failures) == (0.0, 0.0, 0)


def test_a_resync_is_not_a_failure_but_its_relist_is_time_without_a_sync() -> None:
    """A resync's relist that never completes (a Retry-After of days on its second page)
    must not look in sync: nothing reaches the receiver meanwhile."""
    clock = Clock()
    tracker = StatusTracker(None, clock=clock)
    delivered(tracker, 1)
    clock.now += 100
    tracker(observe.GenerationEnded(1, "resync", "", resync=True))
    tracker(observe.GenerationStarted(2))
    clock.now += 30
    status = tracker.status()
    assert not status.synced
    assert (status.unsynced_for, status.failing_for, status.failures) == (30.0, 0.0, 0)
    assert status.last_error is None
    tracker(observe.ReceiverStarted("on_list", 2))
    tracker(observe.SnapshotDelivered(2, 3, "9", 0.1))
    assert tracker.status().unsynced_for == 0.0


def test_failing_before_the_first_snapshot_counts_the_outage_from_the_start() -> None:
    clock = Clock()
    tracker = StatusTracker(None, clock=clock)
    clock.now += 2
    failed(tracker, 1)
    clock.now += 1
    status = tracker.status()
    assert (status.unsynced_for, status.failing_for, status.failures) == (3.0, 1.0, 1)
