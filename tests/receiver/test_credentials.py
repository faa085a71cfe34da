"""The sender's credentials never leave it in a message: HttpSink refuses a receiver URL
that could carry one (its URL names every request in errors, logs and ``/readyz``), and of
a receiver's error answer shows nothing that is not a Status, nor its own token in one."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from listwatch import GroupVersionResource, Snapshot
from listwatch.errors import HttpSyncError
from listwatch.httpsync import HttpSink, SyncServer
from listwatch.sinks.sqlite import SQLiteStore
from tests.serving import serving

SECRET = "PASSWORD-4b1e"
PODS = GroupVersionResource("", "v1", "pods")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"https://user:{SECRET}@receiver.example/", "must not hold a user or password"),
        (f"https://{SECRET}@receiver.example/", "must not hold a user or password"),
        (f"https://receiver.example/?token={SECRET}", "must not have a query or a fragment"),
        (f"https://receiver.example/#{SECRET}", "must not have a query or a fragment"),
        (f"https://user:{SECRET}[@receiver.example/", "cannot be parsed"),
        (f"https://receiver.example:{SECRET}/", "cannot be parsed"),
        (f"ftp://user:{SECRET}@receiver.example/", "must be http(s)://HOST[:PORT][/PATH]"),
    ],
)
def test_a_receiver_url_that_could_hold_a_secret_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        HttpSink(url, token="t")
    assert SECRET not in str(refused.value)


async def test_a_token_quoted_back_by_a_server_is_not_shown() -> None:
    """A token over 8 KB: aiohttp's server (here a receiver served without ``runner()``)
    answers 400 quoting the header's first 100 bytes. The sender's error names the answer,
    not its text."""
    token = "Tok3n" * 2000
    store = SQLiteStore(":memory:")
    app = SyncServer(store, token=token).app()
    try:
        async with serving(app) as url, HttpSink(url, token=token) as sink:
            with pytest.raises(HttpSyncError) as failed:
                await sink.on_list(Snapshot.of([], "1", resource=PODS))
    finally:
        await store.close()
    assert re.fullmatch(
        rf"POST {re.escape(url)}/sync/pods/snapshot: HTTP 400 Bad Request: an answer that is "
        r"not a Status \(\d+ bytes, not shown\)",
        str(failed.value),
    ), failed.value


async def test_a_status_message_that_quotes_the_token_is_cut() -> None:
    token = "c2VjcmV0LXRva2Vu" * 4

    async def quoting(request: web.Request) -> web.Response:
        quoted = request.headers["Authorization"][:60]
        return web.json_response(
            {"kind": "Status", "code": 400, "reason": "BadRequest", "message": f"bad {quoted}"},
            status=400,
        )

    app = web.Application()
    app.router.add_post("/sync/pods/snapshot", quoting)
    async with serving(app) as url, HttpSink(url, token=token) as sink:
        with pytest.raises(HttpSyncError, match=r"HTTP 400 BadRequest: bad Bearer \[redacted\]$"):
            await sink.on_list(Snapshot.of([], "1", resource=PODS))
