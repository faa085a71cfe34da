"""``--shards`` and ``--shard`` on the command line: every wrong combination is one clear
usage line (exit 2) before anything connects; run as a process, as users meet it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from listwatch.testing import FakeApiServer
from tests.cli.test_failures import WRONG, mirror_args, refusing_receiver
from tests.objects import pod
from tests.processes import run_to_end, running

__all__ = ["refusing_receiver"]  # a fixture, shared with test_failures

BASE = ["mirror", "pods", "--sqlite", "m.db", "--kubeconfig", "/nonexistent/kubeconfig"]


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--shards", "4"], "--shards N needs --leader-elect"),
        (["--shards", "0", "--leader-elect"], "argument --shards: must be at least 1, not 0"),
        (["--shards", "two", "--leader-elect"], "must be a whole number of shards, not two"),
        (["--shard", "4/4"], "shard 4 of 4: want 0 <= index < count"),
        (["--shard", "1/0"], "shard 1 of 0"),
        (["--shard", "half"], "not a shard: 'half'"),
        (["--shards", "4", "--shard", "1/4", "--leader-elect"], "exclude each other"),
        (["--shard", "1/4", "--leader-elect"], "--shard I/N runs one shard without election"),
    ],
)
async def test_a_wrong_shard_flag_is_one_usage_line(flags: list[str], said: str) -> None:
    code, err = await run_to_end(*BASE, *flags)
    assert code == 2, err
    assert said in err
    assert "Traceback" not in err


async def test_a_sharded_mirror_that_keeps_failing_exits_naming_the_shard(
    server: FakeApiServer, kubeconfig: Path, refusing_receiver: str, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    token_file = tmp_path / "token"
    token_file.write_text(WRONG)
    args = mirror_args(
        kubeconfig,
        refusing_receiver,
        token_file,
        "--shards",
        "2",
        "--leader-elect",
        "--lease-duration",
        "2",
        "--renew-deadline",
        "1.5",
        "--retry-period",
        "0.3",
        "--exit-on-failure",
        "1",
    )
    async with running("mirror", *args) as mirror:
        async with asyncio.timeout(60):
            code = await mirror.process.wait()
        await mirror.stop()  # collects the last lines
    assert code == 1, mirror.tail()
    last = mirror.lines[-1]
    assert re.search(
        r"error: pods: failing for \d+ s without a sync into .* \(shard [01]/2\) "
        r"\(--exit-on-failure 1; .*401",
        last,
    ), mirror.tail()
    # It released its shard Leases on the way out: another replica need not wait.
    for index in range(2):
        lease = server.get("coordination.k8s.io/v1", "Lease", f"listwatch-shard-{index}", "default")
        assert lease is None or lease["spec"]["holderIdentity"] == "", lease
