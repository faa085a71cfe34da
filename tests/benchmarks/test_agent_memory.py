"""``benchmarks.agent_memory`` still runs end to end: its servers start, every process it
measures syncs, and the report has a peak for each. At a tiny scale, and with no assertion on
the figures themselves (they are the benchmark's to report, not a test's to judge)."""

from __future__ import annotations

import argparse
import asyncio
import gzip
from pathlib import Path

import orjson

from benchmarks import agent_memory
from listwatch.testing._faults import gzip_bomb_body


async def test_the_harness_measures_every_process_of_both_workloads(tmp_path: Path) -> None:
    args = argparse.Namespace(
        configmaps=3, configmap_mib=0.05, pods=200, strategies="stream", argv=["(test)"]
    )
    report = await asyncio.to_thread(agent_memory.run, args)
    runs = report["runs"]
    assert [(r["workload"], r["strategy"]) for r in runs] == [
        ("3 ConfigMaps of 0.05 MiB", "stream"),
        ("200 pods of ~7 KB", "stream"),
    ]
    for run in runs:
        assert run["rows_ok"], run
        assert all(run[process] > 0 for process in agent_memory.PROCESSES), run
    table = agent_memory.markdown(report)
    assert table.count("| stream |") == 2


def test_a_configmap_is_about_the_size_asked_for() -> None:
    import random  # noqa: PLC0415

    size = 1_400_000
    document = orjson.dumps(agent_memory.configmap(0, size, random.Random(0)))
    assert size <= len(document) <= size + 200


def test_the_fake_s_gzip_bomb_is_one_valid_gzip_member_of_a_list() -> None:
    """The fault the mirror's tests use: what it inflates to is a real (empty) list."""
    inflated = gzip.decompress(b"".join(gzip_bomb_body(3 * 1024 * 1024)))
    assert len(inflated) > 3 * 1024 * 1024
    assert orjson.loads(inflated)["items"] == []
