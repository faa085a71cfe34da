"""``--shards`` and ``--shard`` on the command line: every wrong combination is one clear
usage line (exit 2) before anything connects; run as a process, as users meet it."""

from __future__ import annotations

import pytest

from tests.processes import run_to_end

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
