"""``fencing.decide``: every row of its table, and properties over random histories."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listwatch import StaleEpoch
from listwatch.errors import StaleWrite
from listwatch.fencing import Stamp, Verdict, decide

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
