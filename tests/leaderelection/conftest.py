"""Shared pieces of the leader election tests: electors, a recording ``lead``, a Lease."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from listwatch.testing import FakeApiServer
from tests.leaderelection.helpers import (
    Campaign,
)


@pytest.fixture
async def campaign(server: FakeApiServer) -> AsyncIterator[Campaign]:
    running = Campaign(server)
    try:
        yield running
    finally:
        await running.close()
