"""``listwatch mirror --http`` never shows a credential, as a real process: a URL that could
carry one is refused in one line that does not repeat it, and a receiver's answer that
quotes the bearer token (aiohttp's own 400 for a header over 8 KB) reaches neither the
mirror's log nor its unauthenticated ``/readyz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listwatch.httpsync import SyncServer
from listwatch.sinks.sqlite import SQLiteStore
from listwatch.testing import FakeApiServer
from tests.objects import pod
from tests.processes import run_to_end, running
from tests.serving import serving

SECRET = "PASSWORD-a51c"


@pytest.mark.parametrize(
    ("url", "shown", "why"),
    [
        (
            f"https://user:{SECRET}@127.0.0.1:1/",
            "https://127.0.0.1:1/",
            "must not hold a user or password: a receiver authenticates with a bearer token "
            "(HttpSink's token_file, mirror's --http-token-file) or a client certificate",
        ),
        (f"https://127.0.0.1:1/?token={SECRET}", "https://127.0.0.1:1/", "must not have a query"),
        (f"https://127.0.0.1:1/#{SECRET}", "https://127.0.0.1:1/", "must not have a query"),
        (f"https://u:{SECRET}[@127.0.0.1:1/", "(a URL that cannot be parsed)", "cannot be parsed"),
        (f"https://127.0.0.1:{SECRET}/", "(a URL that cannot be parsed)", "cannot be parsed"),
    ],
)
async def test_a_receiver_url_that_could_hold_a_secret_is_one_line_without_it(
    kubeconfig: Path, tmp_path: Path, url: str, shown: str, why: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t")
    args = ("mirror", "pods", "--kubeconfig", str(kubeconfig), "--http", url)
    code, err = await run_to_end(*args, "--http-token-file", str(token_file))
    assert code == 1, err
    assert err.startswith(f"listwatch mirror: error: --http {shown}: the receiver URL "), err
    assert why in err
    assert len(err.splitlines()) == 1, err
    assert SECRET not in err


async def readyz(base: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as response:
        return response.status, await response.json()


async def test_a_token_quoted_back_by_the_receiver_is_never_shown(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """A token over 8 KB: a receiver served by aiohttp's default runner answers 400 with the
    header's first 100 bytes. The mirror's warning, its error and ``/readyz`` (which anyone
    who reaches the port may read) name the answer, never its text."""
    await server.create(pod("a"))
    token = "Tok3n-" * 1500
    token_file = tmp_path / "token"
    token_file.write_text(token)
    store = SQLiteStore(tmp_path / "received.db")
    try:
        async with serving(SyncServer(store, token=token).app()) as url:
            args = ("mirror", "pods", "--kubeconfig", str(kubeconfig), "--http", url)
            args += ("--http-token-file", str(token_file), "--stale-after", "1")
            async with running("mirror", *args, "--metrics-address", "127.0.0.1:0") as mirror:
                probes = (
                    await mirror.wait_for_line(r"metrics and health on (http://\S+)/metrics")
                ).group(1)
                await mirror.wait_for_line(
                    r"warning: pods: sync into \S+ failed: .*HTTP 400 Bad Request: an answer "
                    r"that is not a Status \(\d+ bytes, not shown\)"
                )
                await mirror.wait_for_line(r"error: pods: not synced into", within=30)
                status, body = await readyz(probes)
                assert status == 503, body
                assert "an answer that is not a Status" in str(body)
                assert await mirror.stop() == 0
    finally:
        await store.close()
    assert "Tok3n-To" not in mirror.text() + str(body)
