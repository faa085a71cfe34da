"""``benchmarks.fleet`` still runs end to end: its clusters, receivers and senders start,
every cluster syncs and catches up with its churn, and the report has every figure. At a
tiny scale, and with no assertion on the figures themselves (they are the benchmark's to
report, not a test's to judge)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks import fleet
from tests.postgres_server import PostgresServer


@pytest.mark.timeout(240)
async def test_the_harness_measures_every_tier(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    argv = ["--clusters", "3", "--pods", "40", "--churn-rate", "5", "--churn-seconds", "1"]
    argv += ["--merge-interval", "0.2", "--senders", "2", "--out", str(tmp_path)]
    args = fleet.parser().parse_args([*argv, "--postgres-dsn", postgres_server.admin_dsn])
    args.argv = fleet._without_dsn(argv)
    report = await asyncio.to_thread(fleet.run, args)
    tiers = [1, 2] if fleet.receiver_has_clients() else [3]  # before --clients: one a cluster
    assert [r["receivers"] for r in report["runs"]] == tiers
    for run in report["runs"]:
        assert run["rows_ok"], run
        assert run["churn_events"] == 3 * 5, run
        assert run["batches"] > 0, run
        assert all(peak is not None and peak > 0 for peak in run["receiver_hwm_mib"]), run
    table = fleet.markdown(report)
    assert table.count("| True |") == len(tiers)
    assert "postgres" not in report["command"]
