"""``fencing.decide``: every row of its table, and properties over random histories."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch import Batch, Snapshot, StaleEpoch
from listwatch._shard import Shard
from listwatch.errors import StaleWrite
from listwatch.fencing import (
    Stamp,
    Verdict,
    decide,
    highest_epoch,
    scope_shard,
    scope_text,
    stamp_of,
)

S = "session-a"


def recorded(generation: int = 3, sequence: int = 2, epoch: int = 5) -> Stamp:
    return Stamp(epoch, S, generation, sequence)


def test_a_lower_epoch_than_any_recorded_is_refused() -> None:
    with pytest.raises(StaleEpoch, match="epoch 4: the receiver has recorded epoch 5"):
        decide("pods", Stamp(4, "other", 1), None, highest_epoch=5)


def test_the_epoch_rule_spans_resources() -> None:
    """The resource never saw epoch 5, but the receiver did (another resource)."""
    with pytest.raises(StaleEpoch):
        decide("nodes", Stamp(4, S, 9), Stamp(4, S, 8, 3), highest_epoch=5)


@pytest.mark.parametrize(
    ("write", "verdict"),
    [
        (Stamp(5, S, 3, 3), Verdict.APPLY),  # the next batch
        (Stamp(5, S, 3, 2), Verdict.DUPLICATE),  # the last one again (a retried request)
        (Stamp(5, S, 3, 1), Verdict.DUPLICATE),  # an earlier one, replayed
        (Stamp(5, S, 3, 0), Verdict.DUPLICATE),  # the generation's snapshot, replayed
        (Stamp(5, S, 4, 0), Verdict.APPLY),  # a newer generation's snapshot
        (Stamp(5, "restarted", 1, 0), Verdict.APPLY),  # another sender's snapshot
        (Stamp(6, S, 1, 0), Verdict.APPLY),  # a new leader's snapshot
    ],
)
def test_what_is_applied(write: Stamp, verdict: Verdict) -> None:
    assert decide("pods", write, recorded(), highest_epoch=5) is verdict


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (Stamp(5, S, 2, 0), "holds generation 3 of the same sender"),
        (Stamp(5, S, 2, 7), "holds generation 3 of the same sender"),
        (Stamp(5, S, 3, 4), "one went missing"),
        (Stamp(5, S, 4, 1), "holds generation 3, not its snapshot"),
        (Stamp(5, "restarted", 1, 1), "does not hold that generation's snapshot"),
        (Stamp(6, S, 3, 3), "does not hold that generation's snapshot"),
    ],
)
def test_what_is_refused(write: Stamp, message: str) -> None:
    with pytest.raises(StaleWrite, match=message):
        decide("pods", write, recorded(), highest_epoch=5)


def test_an_unstamped_write_meets_only_the_epoch_rule() -> None:
    assert decide("pods", Stamp(5, "", 1, 9), recorded(), highest_epoch=5) is Verdict.APPLY
    with pytest.raises(StaleEpoch):
        decide("pods", Stamp(4, "", 1, 9), recorded(), highest_epoch=5)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 4)), max_size=40))
def test_what_is_applied_never_goes_back(writes: list[tuple[int, int, int]]) -> None:
    """Whatever arrives, in whatever order: the applied stamps of one session only move
    forward, and an applied batch is always the successor of the last applied write."""
    state: Stamp | None = None
    highest: int | None = None
    for epoch, generation, sequence in writes:
        write = Stamp(epoch, S, generation, sequence)
        try:
            verdict = decide("pods", write, state, highest)
        except (StaleEpoch, StaleWrite):
            continue
        if verdict is Verdict.DUPLICATE:
            assert state is not None
            assert (write.epoch, write.generation) == (state.epoch, state.generation)
            continue
        if state is not None:
            assert write.epoch >= state.epoch
            if write.epoch == state.epoch:
                assert (write.generation, write.sequence) > (state.generation, state.sequence)
        if not write.snapshot:
            assert state is not None
            assert (write.epoch, write.generation) == (state.epoch, state.generation)
            assert write.sequence == state.sequence + 1
        state = write
        highest = max(highest or 0, write.epoch)


# -- an older snapshot replayed within one epoch ----------------------------------------------


def holding(resource_version: str, *, epoch: int = 5) -> Stamp:
    """What the receiver recorded: session S's generation 3, at ``resource_version``."""
    return Stamp(epoch, S, 3, 2, resource_version)


@pytest.mark.parametrize(
    "write",
    [
        Stamp(5, "another", 1, 0, "200"),  # another session's snapshot, replayed late
        Stamp(5, S, 4, 0, "200"),  # the same session's newer generation, yet older
        Stamp(5, "another", 1, 0, "9"),  # integers, not strings: "9" < "301"
    ],
)
def test_an_older_snapshot_of_the_same_epoch_is_refused(write: Stamp) -> None:
    with pytest.raises(StaleWrite, match=r"holds resourceVersion 301 of the same epoch"):
        decide("pods", write, holding("301"), highest_epoch=5)


@pytest.mark.parametrize(
    ("write", "recorded", "verdict"),
    [
        (Stamp(5, "another", 1, 0, "301"), holding("301"), Verdict.APPLY),  # not older
        (Stamp(5, "another", 1, 0, "302"), holding("301"), Verdict.APPLY),
        (Stamp(6, "new-leader", 1, 0, "200"), holding("301"), Verdict.APPLY),  # a new epoch
        (Stamp(5, "another", 1, 0, ""), holding("301"), Verdict.APPLY),  # RV known at the end
        (Stamp(5, "another", 1, 0, "0200"), holding("301"), Verdict.APPLY),  # not comparable
        (Stamp(5, "another", 1, 0, "a1"), holding("b2"), Verdict.APPLY),  # opaque RVs
        (Stamp(5, "another", 1, 0, "200"), holding(""), Verdict.APPLY),
        (Stamp(5, S, 3, 0, "200"), holding("301"), Verdict.DUPLICATE),  # its own, retried
        (Stamp(5, "", 1, 0, "200"), holding("301"), Verdict.APPLY),  # unstamped: epoch only
    ],
)
def test_what_the_replay_rule_leaves_alone(write: Stamp, recorded: Stamp, verdict: Verdict) -> None:
    assert decide("pods", write, recorded, highest_epoch=5) is verdict


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 6), st.integers(1, 9))))
def test_within_an_epoch_the_applied_snapshots_never_go_back(
    writes: list[tuple[str, int, int]],
) -> None:
    """Snapshots of any sessions and generations, at any RVs, in one epoch: what is applied
    never moves the resource's RV back."""
    state: Stamp | None = None
    for session, generation, rv in writes:
        write = Stamp(1, session, generation, 0, str(rv))
        try:
            verdict = decide("pods", write, state, 1)
        except StaleWrite:
            continue
        if verdict is Verdict.APPLY:
            if state is not None:
                assert rv >= int(state.resource_version)
            state = write


# -- the scope of a sharded write (issue 23) ---------------------------------------------------

QUARTERS = [scope_text(Shard.of(i, 4)) for i in range(4)]


def test_a_shards_epoch_does_not_fence_another_shard() -> None:
    recorded_epochs = [(QUARTERS[1], 900), (QUARTERS[0], 700)]
    assert highest_epoch(Shard.of(0, 4), recorded_epochs) == 700
    assert decide("pods", Stamp(700, S, 2, shard=Shard.of(0, 4)), None, 700) is Verdict.APPLY


def test_an_old_leader_of_a_shard_is_fenced_by_its_shards_new_leader() -> None:
    highest = highest_epoch(Shard.of(0, 4), [(QUARTERS[0], 1000), (QUARTERS[1], 900)])
    with pytest.raises(StaleEpoch, match=r"pods \(shard 0/4\): refused a write of epoch 700"):
        decide("pods", Stamp(700, S, 2, shard=Shard.of(0, 4)), None, highest)


def test_an_unsharded_write_is_fenced_by_every_epoch_of_its_cluster() -> None:
    assert highest_epoch(None, [(QUARTERS[2], 900), ("", 5), (QUARTERS[0], 700)]) == 900


def test_a_shard_is_fenced_by_an_unsharded_writers_epoch() -> None:
    assert highest_epoch(Shard.of(3, 4), [("", 800), (QUARTERS[0], 900)]) == 800


def test_a_new_layouts_shard_is_fenced_only_by_the_old_ranges_it_overlaps() -> None:
    # 0/8 lies inside 0/4; 1/4 is beside it.
    recorded_epochs = [(QUARTERS[0], 700), (QUARTERS[1], 950)]
    assert highest_epoch(Shard.of(0, 8), recorded_epochs) == 700
    assert highest_epoch(Shard.of(2, 8), recorded_epochs) == 950


def test_no_recorded_epoch_fences_nothing() -> None:
    assert highest_epoch(Shard.of(0, 2), []) is None
    assert highest_epoch(Shard.of(0, 2), [(scope_text(Shard.of(1, 2)), 5)]) is None


def test_a_scope_is_the_range_whatever_the_layout_calls_it() -> None:
    assert scope_text(Shard.of(1, 2)) == "0x8000000000000000-0x10000000000000000"
    assert scope_text(Shard.of(2, 4)) == scope_text(Shard(2**63, 3 * 2**62))
    assert scope_text(Shard.of(0, 1)) == scope_text(None) == ""
    assert scope_shard(scope_text(Shard.of(3, 8))) == Shard(3 * 2**61, 4 * 2**61)
    assert scope_shard("") is None


def test_a_write_is_stamped_with_its_shard() -> None:
    assert stamp_of(Snapshot.of([], "1", shard=Shard.of(1, 2))).shard == Shard.of(1, 2)
    assert stamp_of(Snapshot.of([], "1", shard=Shard.of(0, 1))).shard is None
    assert stamp_of(Batch({}, "1", 1, shard=Shard.of(1, 2))).shard == Shard.of(1, 2)
