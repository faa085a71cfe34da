"""Failover: a cut-off leader, a paused leader, stale records, and a recreated Lease."""

from __future__ import annotations

import time

import pytest

from listwatch.leaderelection import EPOCH_ANNOTATION
from listwatch.testing import FakeApiServer
from tests.leaderelection.helpers import Campaign, lease_object, lease_of, spec_of

from .proxy import BlackholeProxy


async def test_a_cut_off_leader_stops_at_the_renew_deadline_and_a_standby_waits_out_the_lease(
    server: FakeApiServer, campaign: Campaign
) -> None:
    async with BlackholeProxy(int(server.url.rsplit(":", 1)[1])) as proxy:
        a = await campaign("a", port=proxy.port)
        await a.until(lambda s: s.observed_epoch is not None)
        b = await campaign("b")
        b.rivals = a.terms
        await b.until(lambda s: s.holder == "a")
        proxy.blackhole()  # a's renewals no longer reach the server; b still does
        await a.until(lambda s: not s.leading)
        # a's lead was cancelled, its gate already closed, before a reported the loss.
        assert [kind for kind, _ in a.events][-2:] == ["lead cancelled", "not leading"]
        assert a.gate_at_cancel == [False]
        b_leads = await b.until(lambda s: s.leading)
        assert b_leads.term is not None
        # b waited a full leaseDurationSeconds (3) from its own last sight of a's record.
        assert b_leads.term.acquired_at >= b.observed_at_of("a") + 3.0
        await b.until(lambda s: bool(b.terms))
        assert b.rival_valid_at_start == [False]  # a could no longer write when b began
        assert b_leads.term.epoch > a.terms[0].epoch
        assert b_leads.term.lease_transitions == 1
        proxy.restore()
        rejoined = await a.until(lambda s: s.holder == "b")
        assert not rejoined.leading
        assert len(a.terms) == 1


@pytest.mark.parametrize(
    "stamp",
    ["2001-01-01T00:00:00.000000Z", "2999-12-31T23:59:59.999999Z"],
    ids=["renewTime far in the past", "renewTime far in the future"],
)
async def test_expiry_is_timed_from_the_elector_s_own_observation(
    server: FakeApiServer, campaign: Campaign, stamp: str
) -> None:
    """A stale-looking record is not expired, a fresh-looking one does expire."""
    await server.create(
        lease_object(
            holderIdentity="ghost",
            leaseDurationSeconds=1,
            acquireTime=stamp,
            renewTime=stamp,
            leaseTransitions=7,
        )
    )
    a = await campaign("a")
    status = await a.until(lambda s: s.leading)
    assert status.term is not None
    first_seen = min(s.observed_at for s in a.statuses if s.holder == "ghost" and s.observed_at)
    assert status.term.acquired_at >= first_seen + 1.0
    assert status.term.lease_transitions == 8
    assert spec_of(server)["acquireTime"] != stamp


async def test_the_write_gate_closes_by_the_local_clock_while_the_loop_is_stalled(
    server: FakeApiServer, campaign: Campaign
) -> None:
    """A SIGSTOP stand-in: the whole event loop blocks, so no renewal can run."""
    a = await campaign("a")
    leading = await a.until(lambda s: s.leading)
    term = leading.term
    assert term is not None
    assert term.valid()
    time.sleep(term.remaining() + 0.01)  # noqa: ASYNC251 - the stall *is* the test
    # Nothing has run since: no renewal, no loss detected; the clock alone says no.
    assert a.elector.status.term is term
    assert not term.valid()
    assert term.remaining() == 0.0
    # Once the loop runs again, the stale term ends, and the next term is a new term.
    again = await a.until(lambda s: s.terms == 2 and s.leading)
    assert again.term is not None
    assert again.term.epoch > term.epoch
    assert again.term.lease_transitions == 0  # the same holder: no transition
    assert a.gate_at_cancel == [False]
    assert not term.valid()


async def test_a_deleted_lease_ends_the_term_and_the_next_epoch_is_larger(
    server: FakeApiServer, campaign: Campaign
) -> None:
    a = await campaign("a")
    await a.until(lambda s: s.observed_epoch is not None)
    first = a.terms[0]
    await server.wait_until(lambda s: spec_of(s)["leaseTransitions"] == 0)
    lease = lease_of(server)
    assert lease is not None
    await server.delete(lease)
    again = await a.until(lambda s: s.terms == 2 and s.observed_epoch is not None)
    assert again.term is not None
    assert again.term.epoch > first.epoch
    assert again.term.lease_uid != first.lease_uid
    assert spec_of(server)["leaseTransitions"] == 0  # restarted: no use as an epoch
    assert [kind for kind, _ in a.events][2:4] == ["lead cancelled", "not leading"]
    assert a.gate_at_cancel[0] is False  # closed before lead was cancelled
    assert not first.valid()


async def test_an_old_epoch_never_continues_on_a_recreated_lease(
    server: FakeApiServer, campaign: Campaign
) -> None:
    """Deleted and created again naming the same holder: still a new term, a larger epoch."""
    a = await campaign("a")
    await a.until(lambda s: s.observed_epoch is not None)
    first = a.terms[0]
    lease = lease_of(server)
    assert lease is not None
    forged = {**lease_object(**lease["spec"])}
    await server.delete(lease)
    recreated = await server.create(forged)  # same spec, same holder: only the uid differs
    again = await a.until(lambda s: s.terms == 2)
    assert again.term is not None
    assert again.term.lease_uid == recreated["metadata"]["uid"]
    assert again.term.epoch > int(recreated["metadata"]["resourceVersion"]) > first.epoch
    assert a.gate_at_cancel[0] is False
    assert not first.valid()
    await a.until(lambda s: s.observed_epoch == again.term.epoch)  # type: ignore[union-attr]
    assert lease_of(server)["metadata"]["annotations"][EPOCH_ANNOTATION] == str(  # type: ignore[index]
        again.term.epoch
    )


async def test_a_second_process_with_the_same_identity_ends_the_term_loudly(
    campaign: Campaign, caplog: pytest.LogCaptureFixture
) -> None:
    first = await campaign("a")
    await first.until(lambda s: s.observed_epoch is not None)
    second = await campaign("a")  # misconfigured: identities must be unique
    # Like client-go, it takes a record that names its identity as its own...
    await second.until(lambda s: s.leading)
    # ...and the first meets, at its next renewal, a record it never wrote.
    await first.until(lambda s: any(kind == "lead cancelled" for kind, _ in first.events))
    assert "another process renews it as a: identities must be unique" in caplog.text
    assert first.gate_at_cancel[0] is False
    assert second.terms[0].epoch > first.terms[0].epoch
