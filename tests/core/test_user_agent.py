"""Every request names listwatch in its User-Agent, so an API server's audit log and its
Priority and Fairness rules can tell listwatch from any other Python client; a User-Agent
the user chose is kept."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import listwatch
from listwatch import ListWatch
from listwatch._version import USER_AGENT
from listwatch.testing import FakeApiServer
from tests.core.helpers import Mirror, make_syncer
from tests.objects import pod

ROOT = Path(__file__).parents[2]


async def test_every_request_of_a_syncer_names_listwatch(
    server: FakeApiServer, api_client: Any
) -> None:
    await server.create(pod("a"))
    syncer = make_syncer(ListWatch.from_client(api_client, "pods"), Mirror())
    async with syncer:
        await syncer.wait_synced()
        await server.wait_for_watchers(1)
    agents = {request.user_agent for request in server.requests}
    assert agents == {USER_AGENT}
    assert re.fullmatch(
        r"listwatch/\d+\.\d+\.\d+\S* \([a-z0-9_]+/[a-z0-9_]+; python/3\.\d+\.\d+\)"
        r" kubernetes_asyncio/\S+",
        USER_AGENT,
    )
    # discovery (the name "pods" was resolved) and the LIST and WATCH all went through it
    assert {r.path for r in server.requests} >= {"/api/v1", "/api/v1/pods"}


async def test_a_user_agent_the_user_chose_is_kept(server: FakeApiServer, api_client: Any) -> None:
    api_client.user_agent = "inventory-agent/2.4"
    syncer = make_syncer(ListWatch.from_client(api_client, "pods", version="v1"), Mirror())
    async with syncer:
        await syncer.wait_synced()
    assert {request.user_agent for request in server.requests} == {"inventory-agent/2.4"}


def test_the_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert listwatch.__version__ == project["version"]
    assert USER_AGENT.startswith(f"listwatch/{project['version']} (")
