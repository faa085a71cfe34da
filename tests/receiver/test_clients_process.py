"""``listwatch receiver --clients FILE`` and ``--cluster``, and ``mirror --cluster``, as
processes: the clients file is read again on SIGHUP (a broken one is logged at ERROR and
the previous one stays), a broken file at the start is one line, ``--cluster`` names the
rows of ``mirror --sqlite`` and means nothing over ``--http``."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

from listwatch import GroupVersionResource
from listwatch.httpsync import _wire as protocol
from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer
from tests.objects import pod
from tests.processes import ListwatchProcess, run_to_end

from .helpers import Connection, chunk, request_head

PODS = GroupVersionResource("", "v1", "pods")


def entry(name: str, token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f'[[cluster]]\nname = "{name}"\ntoken_sha256 = "{digest}"\n'


async def snapshot_with(url: str, token: str, generation: int) -> int:
    """One empty snapshot sent with ``token``: the status answered."""
    header = protocol.Header("snapshot", PODS, 1, "s", generation, 0, str(generation))
    body = protocol.encode_header(header) + protocol.encode_commit(0, str(generation))
    connection = await Connection.to(url)
    try:
        head = request_head("/sync/pods/snapshot", token=token)
        await connection.send(head + chunk(body) + chunk(b""))
        status, _ = await connection.answer()
    finally:
        connection.close()
    return status


async def test_the_clients_file_is_read_again_on_sighup(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(entry("eu", "first-token-a1") + entry("us", "us-token-b2"))
    receiver = await ListwatchProcess.start(
        "receiver",
        "receiver",
        "--listen",
        "127.0.0.1:0",
        "--sqlite",
        str(tmp_path / "r.db"),
        "--clients",
        str(clients),
    )
    try:
        found = await receiver.wait_for_line(
            r"serving (http://127\.0\.0\.1:\d+) into .* for 2 "
            r"clusters of "
        )
        url = found.group(1)
        assert await snapshot_with(url, "first-token-a1", 1) == 200

        clients.write_text(
            entry("eu", "rotated-token-c3")
            + entry("us", "us-token-b2")
            + entry("ap", "ap-token-d4")
        )
        receiver.process.send_signal(signal.SIGHUP)
        await receiver.wait_for_line(r"SIGHUP: clients file .* read again: 3 clusters")
        assert await snapshot_with(url, "first-token-a1", 2) == 401
        assert await snapshot_with(url, "rotated-token-c3", 2) == 200

        clients.write_text("[[cluster]]\nname = 'eu'\n")
        receiver.process.send_signal(signal.SIGHUP)
        await receiver.wait_for_line(
            r"ERROR .*clients file .*no credential.*the previous one \(3 clusters\) stays"
        )
        assert await snapshot_with(url, "rotated-token-c3", 3) == 200
        await receiver.wait_for_line(r"POST /sync/pods/snapshot 401, .*cluster unknown")
        assert await receiver.stop() == 0, receiver.tail()
    finally:
        await receiver.stop(signal.SIGKILL)
    text = receiver.text()
    for token in ("first-token-a1", "rotated-token-c3", "us-token-b2"):
        assert token not in text


async def test_a_broken_clients_file_at_the_start_is_one_line(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text("[[cluster]]\nname = 'eu'\ntoken_sha256 = 'abc'\n")
    code, err = await run_to_end(
        "receiver",
        "--listen",
        "127.0.0.1:0",
        "--sqlite",
        str(tmp_path / "r.db"),
        "--clients",
        str(clients),
    )
    assert code == 1, err
    assert f"--clients {clients}: [[cluster]] 'eu': token_sha256 must be 64 hex digits" in err
    assert len(err.strip().splitlines()) == 1, err


async def test_clients_and_a_token_file_do_not_go_together(tmp_path: Path) -> None:
    code, err = await run_to_end(
        "receiver",
        "--listen",
        "127.0.0.1:0",
        "--sqlite",
        str(tmp_path / "r.db"),
        "--clients",
        "c.toml",
        "--token-file",
        "t",
    )
    assert code == 2
    assert "not allowed with argument" in err


async def test_cluster_means_nothing_over_http(tmp_path: Path, kubeconfig: Path) -> None:
    code, err = await run_to_end(
        "mirror",
        "pods",
        "--kubeconfig",
        str(kubeconfig),
        "--http",
        "http://127.0.0.1:1",
        "--cluster",
        "eu",
    )
    assert code == 1
    assert "--cluster goes with --sqlite or --postgres" in err


async def test_mirror_writes_its_rows_as_its_cluster(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    for i in range(3):
        await server.create(pod(f"p{i}"))
    db = tmp_path / "mirror.db"
    mirror = await ListwatchProcess.start(
        "mirror",
        "mirror",
        "pods",
        "--kubeconfig",
        str(kubeconfig),
        "--sqlite",
        str(db),
        "--cluster",
        "prod-eu",
        "-v",
    )
    try:
        await mirror.wait_for_line(r"pods: synced 3 objects")
        assert await mirror.stop() == 0, mirror.tail()
    finally:
        await mirror.stop(signal.SIGKILL)
    assert set(read_mirror(db, resource="pods", cluster="prod-eu").objects) == {
        f"default/p{i}" for i in range(3)
    }
    assert read_mirror(db, resource="pods").objects == {}
