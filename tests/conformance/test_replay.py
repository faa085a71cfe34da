"""The fake API server answers each recorded exchange as the real kube-apiserver did.

Each group's script (``exchanges.py``) runs once against a ``FakeApiServer`` configured as
its group says, over HTTPS, through the same runner the recorder used against the real
server; then every exchange is compared with its recording (``corpus/<group>.json``,
``compare.py``). Differences are failures unless ``differences.py`` accepts them, and an
accepted difference that no longer occurs is a failure too.
"""

from __future__ import annotations

import asyncio
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import listwatch.testing
from listwatch.testing import FakeApiServer
from tests.conformance.compare import Difference, compare
from tests.conformance.differences import ACCEPTED, Accepted
from tests.conformance.exchanges import GROUPS
from tests.conformance.normalize import normalize
from tests.conformance.runner import new_namespace, run_group
from tests.conformance.script import Exchange, Group

CORPUS = Path(__file__).parent / "corpus"
Entries = dict[str, dict[str, Any]]


class FakeTarget:
    """A :class:`FakeApiServer` as the runner's target (see ``runner.Target``)."""

    def __init__(self, server: FakeApiServer) -> None:
        self._server = server
        self.base_url = server.url
        self.ssl_context = server.ssl_context
        self.token = server.token
        self.address = server.url.split("://", 1)[1]

    async def prepare_namespace(self, session: aiohttp.ClientSession, namespace: str) -> None:
        """Nothing: the fake admits pods without a ServiceAccount."""

    async def identity_token(
        self, session: aiohttp.ClientSession, namespace: str, name: str
    ) -> str:
        return self._server.add_user(f"system:serviceaccount:{namespace}:{name}")

    async def compact(self, session: aiohttp.ClientSession) -> None:
        self._server.compact()


@cache
def recording(group: str) -> Entries:
    corpus = json.loads((CORPUS / f"{group}.json").read_text())
    return {entry["name"]: entry for entry in corpus["exchanges"]}


@cache
def replay(group_name: str) -> Entries:
    """Run a group's script against a fresh fake server; its normalized exchanges."""
    group = GROUPS[group_name]

    async def run() -> Entries:
        async with FakeApiServer(**group.fake_options) as server:
            target = FakeTarget(server)
            namespace = new_namespace()
            answers = (await run_group(group, target, namespace)).answers
            return {
                step.name: normalize(
                    step, answers[step.name], namespace=namespace, address=target.address
                )
                for step in group.exchanges()
            }

    return asyncio.run(run())


def differences(group: Group, exchange: Exchange) -> list[Difference]:
    return compare(
        exchange, recording(group.name)[exchange.name], replay(group.name)[exchange.name]
    )


def accepts(accepted: Accepted, group: Group, exchange: Exchange, difference: Difference) -> bool:
    name = f"{group.name}/{exchange.name}"
    return any(_glob(p, name) for p in accepted.exchanges) and any(
        difference.matches(p) for p in accepted.paths
    )


def _glob(pattern: str, text: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), text) is not None


EXCHANGES = [
    pytest.param(group, exchange, id=f"{group.name}/{exchange.name}")
    for group in GROUPS.values()
    for exchange in group.exchanges()
]


@pytest.mark.parametrize(("group", "exchange"), EXCHANGES)
def test_the_fake_answers_as_the_real_server_did(group: Group, exchange: Exchange) -> None:
    recorded = recording(group.name).get(exchange.name)
    assert recorded is not None, f"{exchange.name} is not in the corpus: re-record (README.md)"
    replayed = replay(group.name)[exchange.name]
    assert replayed["request"] == recorded["request"], (
        f"{exchange.name} is no longer the request that was recorded: re-record (README.md)"
    )
    unexplained = [
        d
        for d in differences(group, exchange)
        if not any(accepts(a, group, exchange, d) for a in ACCEPTED)
    ]
    assert not unexplained, "the fake differs from kube-apiserver:\n" + "\n".join(
        map(str, unexplained)
    )


def test_the_corpus_holds_exactly_the_scripted_exchanges() -> None:
    for group in GROUPS.values():
        assert list(recording(group.name)) == [e.name for e in group.exchanges()], group.name


@pytest.mark.parametrize("accepted", ACCEPTED, ids=lambda a: a.title)
def test_an_accepted_difference_still_occurs(accepted: Accepted) -> None:
    assert any(
        accepts(accepted, group, exchange, difference)
        for group in GROUPS.values()
        for exchange in group.exchanges()
        for difference in differences(group, exchange)
    ), f"no replayed exchange differs as {accepted.title!r} says: remove it (and its docs)"


@pytest.mark.parametrize("accepted", ACCEPTED, ids=lambda a: a.title)
def test_an_accepted_difference_is_documented_in_the_fake(accepted: Accepted) -> None:
    doc = " ".join((listwatch.testing.__doc__ or "").split())
    assert accepted.title in doc
