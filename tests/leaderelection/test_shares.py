"""The sharding rules (``_shares``) as tables: liveness, fair share, taking, giving back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from listwatch.leaderelection._lease import check_dns_subdomain
from listwatch.leaderelection._shares import (
    Presence,
    fair_share,
    holders,
    live_replicas,
    may_take,
    presence_lease_name,
    rank,
    shard_lease_name,
    to_forget,
    to_give_back,
)
from listwatch.testing import FakeApiServer
from tests.leaderelection.helpers import Campaign, spec_of


@pytest.mark.parametrize(
    ("shards", "live", "share"),
    [(4, 1, 4), (4, 2, 2), (4, 3, 2), (4, 4, 1), (4, 5, 1), (1, 3, 1), (7, 2, 4), (4, 0, 4)],
)
def test_the_fair_share_is_the_ceiling_of_shards_over_live_replicas(
    shards: int, live: int, share: int
) -> None:
    assert fair_share(shards, live) == share


def test_a_share_of_zero_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one shard"):
        fair_share(0, 1)


@pytest.mark.parametrize(
    ("presence", "now", "alive"),
    [
        (Presence("b", 2, observed_at=10.0), 11.9, True),  # renewed within its duration
        (Presence("b", 2, observed_at=10.0), 12.0, False),  # expired by our observation
        (Presence("", 2, observed_at=10.0), 10.1, False),  # released on shutdown: gone at once
        (Presence("b", 0, observed_at=10.0), 10.0, False),  # no duration: never alive
        (Presence("b", -3, observed_at=10.0), 10.0, False),  # a negative duration counts as 0
    ],
)
def test_a_replica_is_alive_while_its_presence_is_held_and_unexpired_by_observation(
    presence: Presence, now: float, alive: bool
) -> None:
    live = live_replicas([presence], now=now, identity="a")
    assert live == ({"a", "b"} if alive else {"a"})


def test_this_replica_always_counts_itself_alive() -> None:
    assert live_replicas([], now=0.0, identity="me") == {"me"}
    stale_self = Presence("me", 1, observed_at=0.0)
    assert live_replicas([stale_self], now=100.0, identity="me") == {"me"}


@pytest.mark.parametrize(
    ("held", "in_flight", "share", "ready", "allowed"),
    [
        (0, False, 2, True, True),
        (1, False, 2, True, True),
        (2, False, 2, True, False),  # at the share
        (3, False, 2, True, False),  # over it
        (0, True, 2, True, False),  # one acquisition at a time
        (0, False, 4, False, False),  # has not seen the others yet
    ],
)
def test_a_replica_takes_one_shard_at_a_time_only_under_its_share_once_it_has_seen_the_others(
    held: int, in_flight: bool, share: int, ready: bool, allowed: bool
) -> None:
    assert may_take(held=held, in_flight=in_flight, share=share, ready=ready) is allowed


@pytest.mark.parametrize(
    ("held", "share", "over_for", "settle", "gives_back"),
    [
        ([0, 1], 2, 100.0, 2.0, False),  # at the share: keeps everything
        ([0, 1, 2], 2, 1.9, 2.0, False),  # over, but not for long enough (hysteresis)
        ([0, 1, 2], 2, 2.0, 2.0, True),  # over for the settle period: one goes
        ([0, 1, 2, 3], 1, 5.0, 2.0, True),  # far over: still one per round
        ([], 1, 5.0, 2.0, False),
    ],
)
def test_a_replica_gives_back_one_shard_per_round_once_over_its_share_for_the_settle_period(
    held: list[int], share: int, over_for: float, settle: float, gives_back: bool
) -> None:
    chosen = to_give_back(held, share=share, identity="me", over_for=over_for, settle=settle)
    if not gives_back:
        assert chosen is None
        return
    assert chosen in held
    assert chosen == min(held, key=lambda index: rank("me", index))


def test_the_shard_given_back_depends_on_the_identity_not_on_the_order_held() -> None:
    picks = {
        identity: to_give_back([0, 1, 2, 3], share=1, identity=identity, over_for=9, settle=1)
        for identity in ("a", "b", "c", "d", "e", "f")
    }
    assert picks["a"] == to_give_back([3, 2, 1, 0], share=1, identity="a", over_for=9, settle=1)
    assert len(set(picks.values())) > 1, picks  # rendezvous ranks spread the choice


@pytest.mark.parametrize(
    "identity",
    ["replica-0", "Web_1", "pod.name", "x" * 300, "--", "ümlaut", "a b"],
)
def test_a_presence_lease_name_is_a_valid_name_for_any_identity(identity: str) -> None:
    name = presence_lease_name("listwatch", identity)
    check_dns_subdomain("name", name)
    assert name.startswith("listwatch-replica-")


def test_distinct_identities_get_distinct_presence_leases() -> None:
    names = {presence_lease_name("lw", i) for i in ("Web-1", "web-1", "web_1", "web.1")}
    assert len(names) == 4
    assert presence_lease_name("lw", "web-1") == "lw-replica-web-1"  # a valid one is kept


def test_shard_leases_are_numbered_from_zero() -> None:
    assert [shard_lease_name("listwatch", i) for i in range(2)] == [
        "listwatch-shard-0",
        "listwatch-shard-1",
    ]


def test_holders_groups_the_held_shards_by_replica() -> None:
    assert holders({0: "a", 1: "", 2: "a", 3: None, 4: "b"}) == {"a": [0, 2], "b": [4]}


async def test_an_elector_not_admitted_keeps_observing_and_takes_the_lease_once_admitted(
    server: FakeApiServer, campaign: Campaign
) -> None:
    admitted = False
    entered: list[bool] = []

    @contextlib.contextmanager
    def admission() -> Iterator[bool]:
        entered.append(admitted)
        yield admitted

    holder = await campaign("holder")
    await holder.until(lambda s: s.leading)
    waiting = await campaign("waiting", admission=admission)
    await waiting.until(lambda s: s.holder == "holder")
    await holder.stop()  # released: free for anyone admitted
    await waiting.until(lambda s: s.holder == "")
    await server.wait_until(lambda s: entered.count(False) >= 2, timeout=10)
    assert spec_of(server)["holderIdentity"] == ""  # asked, refused, nothing written
    admitted = True
    status = await waiting.until(lambda s: s.leading)
    assert status.term is not None
    assert spec_of(server)["holderIdentity"] == "waiting"
    assert entered[-1] is True


@pytest.mark.parametrize(
    ("presence", "now", "forget"),
    [
        (Presence("", 2, observed_at=10.0), 10.0, True),  # released: the replica stopped
        (Presence("b", 2, observed_at=10.0), 12.0, False),  # expired, but maybe only paused
        (Presence("b", 2, observed_at=10.0), 29.9, False),
        (Presence("b", 2, observed_at=10.0), 30.0, True),  # ten lease durations: long gone
        (Presence("b", 0, observed_at=10.0), 20.0, True),  # no duration counts as 1 s
        (Presence("me", 2, observed_at=0.0), 1e6, False),  # never its own
    ],
)
def test_a_presence_is_forgotten_once_released_or_expired_for_ten_lease_durations(
    presence: Presence, now: float, forget: bool
) -> None:
    assert to_forget(presence, now=now, identity="me") is forget
