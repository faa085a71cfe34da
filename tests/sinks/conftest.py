"""Fixtures for the sink tests: real SQLite files in ``tmp_path`` and a real PostgreSQL server
(``tests/postgres_server.py``), no mocks. Helpers the tests import are in helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from listwatch.sinks._base import Sink, SinkStore
from listwatch.sinks.postgres import PostgresSink
from listwatch.sinks.sqlite import SQLiteSink

from .helpers import PostgresFactory, SinkFactory, SQLiteFactory


@pytest.fixture(
    params=[
        pytest.param(SQLiteFactory, id="sqlite"),
        pytest.param(PostgresFactory, id="postgres"),
    ]
)
def sink_factory(request: pytest.FixtureRequest) -> SinkFactory:
    """Every backend in turn, over a database of the test's own (the contract tests)."""
    factory: type[SinkFactory] = request.param
    return factory.for_test(request)


@pytest.fixture
async def sink(sink_factory: SinkFactory) -> AsyncIterator[Sink[Any]]:
    """An open sink of "configmaps", of every backend in turn."""
    async with sink_factory.sink() as opened:
        yield opened


@pytest.fixture
async def store(sink_factory: SinkFactory) -> AsyncIterator[SinkStore[Any]]:
    """A store, of every backend in turn."""
    async with await sink_factory.store() as opened:
        yield opened


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "mirror.db"


@pytest.fixture
async def sqlite_sink(db: Path) -> AsyncIterator[SQLiteSink]:
    async with SQLiteSink(db, resource="configmaps") as opened:
        yield opened


@pytest.fixture
async def pg_sink(postgres_dsn: str) -> AsyncIterator[PostgresSink]:
    async with PostgresSink(postgres_dsn, resource="configmaps") as opened:
        yield opened
