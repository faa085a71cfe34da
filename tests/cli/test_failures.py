"""A mirror that cannot sync says so, as a real process, without ``-v``.

Each failed attempt is a warning naming the resource, the target, the reason and the next
attempt; a resource out of sync for longer than ``--stale-after`` is one error line and
``/readyz`` false until it syncs again; ``--exit-on-failure`` ends a failing mirror with
exit code 1 and one line; ``--log-format json`` writes one object per line. A Ctrl-C stops a
mirror at once even while its API server never answers. Every condition is awaited in the
process's own lines (or its probes), never guessed with a sleep.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from listwatch.httpsync import SyncServer
from listwatch.sinks.sqlite import SQLiteStore
from listwatch.testing import FakeApiServer
from listwatch.testing._kubeconfig import write_kubeconfig
from tests.cli.helpers import eventually
from tests.objects import pod
from tests.processes import running
from tests.serving import serving

TOKEN = "the-receivers-token-3f9a"
WRONG = "a-wrong-token-77c1"


def mirror_args(kubeconfig: Path, url: str, token_file: Path, *extra: str) -> tuple[str, ...]:
    return (
        "mirror",
        "pods",
        "--kubeconfig",
        str(kubeconfig),
        "--http",
        url,
        "--http-token-file",
        str(token_file),
        "--merge-interval",
        "0.05",
        *extra,
    )


@pytest.fixture
async def refusing_receiver(tmp_path: Path) -> AsyncIterator[str]:
    """A receiver (in this process) whose token the mirror does not have: every sync 401."""
    store = SQLiteStore(tmp_path / "received.db")
    try:
        async with serving(SyncServer(store, token=TOKEN).app()) as url:
            yield url
    finally:
        await store.close()


async def test_each_refused_sync_is_a_warning_naming_resource_target_reason_and_next_attempt(
    server: FakeApiServer, kubeconfig: Path, refusing_receiver: str, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    token_file = tmp_path / "token"
    token_file.write_text(WRONG)
    url = refusing_receiver
    async with running("mirror", *mirror_args(kubeconfig, url, token_file)) as mirror:
        warning = (
            r"^listwatch mirror: warning: pods: sync into (\S+) failed: (.+); "
            r"next attempt in ([\d.]+) s$"
        )
        found = await mirror.wait_for_line(warning)
        assert found.group(1) == url
        assert "HTTP 401 Unauthorized" in found.group(2)
        assert float(found.group(3)) > 0
        await eventually(
            lambda: (
                sum(line.startswith("listwatch mirror: warning: pods:") for line in mirror.lines)
                >= 2
            ),
            what=f"a warning for the next attempt too\n{mirror.tail()}",
            within=30,
        )
        assert await mirror.stop() == 0, mirror.tail()  # failing is no reason to exit by itself
    assert WRONG not in mirror.text()
    assert TOKEN not in mirror.text()


async def test_exit_on_failure_ends_a_failing_mirror_with_one_json_line(
    server: FakeApiServer, kubeconfig: Path, refusing_receiver: str, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    token_file = tmp_path / "token"
    token_file.write_text(WRONG)
    url = refusing_receiver
    args = mirror_args(
        kubeconfig, url, token_file, "--exit-on-failure", "1", "--log-format", "json"
    )
    async with running("mirror", *args) as mirror:
        async with asyncio.timeout(60):
            code = await mirror.process.wait()
        await mirror.stop()  # collects the last lines
    assert code == 1, mirror.tail()
    entries = [orjson.loads(line) for line in mirror.lines]  # every line is one JSON object
    assert all(entry["time"].endswith("Z") for entry in entries)
    warnings = [entry for entry in entries if entry["level"] == "warning"]
    assert warnings, mirror.tail()
    for entry in warnings:
        assert (entry["resource"], entry["target"]) == ("pods", url)
        assert "401" in entry["reason"]
        assert entry["retry_in"] > 0
    last = entries[-1]
    assert (last["level"], last["logger"], last["resource"]) == ("error", "listwatch.cli", "pods")
    assert "--exit-on-failure 1" in last["message"]
    assert "401" in last["message"]
    assert WRONG not in mirror.text()


async def readyz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{base}/readyz") as response:
        return response.status, await response.json()


async def test_a_stale_resource_is_one_error_and_not_ready_until_it_syncs_again(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """The mirror syncs, then its token goes bad: its writes fail, and once the resource has
    gone a second without a sync one error line says so and /readyz answers 503. The token
    is put right: an info line says it is back, /readyz 200. The receiver, a process too,
    logs every request with its outcome and never the token."""
    await server.create(pod("a"))
    receiver_token = tmp_path / "receiver-token"
    receiver_token.write_text(TOKEN)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    receiver_args = ("receiver", "--listen", "127.0.0.1:0", "--sqlite", str(tmp_path / "r.db"))
    async with (
        running("receiver", *receiver_args, "--token-file", str(receiver_token)) as receiver,
        aiohttp.ClientSession() as http,
    ):
        url = (await receiver.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")).group(1)
        extra = ("--stale-after", "1", "--metrics-address", "127.0.0.1:0")
        async with running("mirror", *mirror_args(kubeconfig, url, token_file, *extra)) as mirror:
            probes = (
                await mirror.wait_for_line(r"metrics and health on (http://\S+)/metrics")
            ).group(1)
            await mirror.wait_for_line(r"^listwatch mirror: pods: synced 1 objects")
            assert (await readyz(http, probes))[0] == 200

            token_file.write_text(WRONG)
            await server.create(pod("b"))  # a batch to write, refused
            stale = await mirror.wait_for_line(
                r"^listwatch mirror: error: pods: not synced into (\S+) for \d+ s \(since its "
                r"last sync; \d+ failed attempts?, the last: .*401.*\): not ready until it syncs$"
            )
            assert stale.group(1) == url
            status, body = await readyz(http, probes)
            assert status == 503, body
            assert body["not_ready"] == ["pods"]
            assert body["resources"]["pods"]["stale"] is True

            token_file.write_text(TOKEN)
            await mirror.wait_for_line(
                rf"^listwatch mirror: pods: synced into {url} again: ready$", within=60
            )
            status, body = await readyz(http, probes)
            assert status == 200, body
            errors = [line for line in mirror.lines if "error: pods: not synced" in line]
            assert len(errors) == 1, mirror.tail()  # one line, not one per attempt
            assert await mirror.stop() == 0
        await receiver.wait_for_line(
            r"INFO listwatch\.httpsync\.requests: pods: POST /sync/pods/snapshot 200, "
            r"1 records, [\d.]+ s, cluster default$"
        )
        await receiver.wait_for_line(
            r"INFO listwatch\.httpsync\.requests: pods: POST /sync/pods/\w+ 401, [\d.]+ s, "
            r"cluster unknown, Unauthorized: a valid bearer token is required$"
        )
        assert await receiver.stop() == 0
    for process in (mirror, receiver):
        assert TOKEN not in process.text()
        assert WRONG not in process.text()


async def test_ctrl_c_stops_a_mirror_whose_api_server_never_answers(tmp_path: Path) -> None:
    """The API server accepts the connection and says nothing: the mirror is still
    starting (discovery waits up to a minute), and the first SIGINT ends it at once."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, f"http://127.0.0.1:{port}", "token")
    try:
        async with running(
            "mirror",
            "mirror",
            "pods",
            "--sqlite",
            str(tmp_path / "m.db"),
            "--kubeconfig",
            str(kubeconfig),
        ) as mirror:
            async with asyncio.timeout(30):
                await accepted.wait()
            mirror.process.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):  # was: the whole discovery timeout (60 s)
                code = await mirror.process.wait()
            await mirror.stop()
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert code == 130, mirror.tail()
    assert mirror.lines[-2:] == [
        "listwatch mirror: SIGINT: stopping (again to abort)",
        "listwatch mirror: stopped while starting",
    ]
