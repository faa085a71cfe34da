"""Fixtures and helpers for the sink tests: real SQLite files in ``tmp_path`` and a real
PostgreSQL server (``tests/postgres_server.py``), no mocks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import pytest

from listwatch import Batch, Event, EventType, Item, Page, Snapshot, object_key
from listwatch.sinks.postgres import PostgresSink
from listwatch.sinks.sqlite import SQLiteSink

GATE_TIMEOUT = 30.0
"""How long a gated write waits for the test to release it before giving up (a safety net
against hanging the worker thread when a test fails, never a synchronisation)."""


def configmap(
    name: str, rv: int | str = 1, namespace: str = "default", **data: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)},
        "data": data,
    }


def snapshot(
    *items: dict[str, Any], rv: str = "100", generation: int = 1, epoch: int = 0
) -> Snapshot:
    return Snapshot.of(items, rv, generation=generation, epoch=epoch)


def one_page(page: Sequence[Item], rv: str, generation: int = 1, *, epoch: int = 0) -> Snapshot:
    """A snapshot whose single page is ``page`` itself (not a copy), so that a page that
    gates its own iteration (``GatedItems``) gates the sink's write."""

    async def pages() -> AsyncIterator[Page]:
        yield Page(page, rv)

    return Snapshot(pages(), resource_version=rv, generation=generation, epoch=epoch)


def by_key(*items: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {object_key(item): item for item in items}


def event(type: EventType, obj: dict[str, Any]) -> Event:
    return Event.from_object(type, obj)


def batch(*events: Event, rv: str, generation: int = 1, epoch: int = 0) -> Batch:
    return Batch({e.key: e for e in events}, rv, generation, received=len(events), epoch=epoch)


def connect(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, as another process or tool would open the file."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=0)
    connection.row_factory = sqlite3.Row
    return connection


def rows(path: Path, resource: str) -> dict[str, sqlite3.Row]:
    with connect(path) as connection:
        result = connection.execute(
            "SELECT * FROM objects WHERE resource = ? ORDER BY key", (resource,)
        ).fetchall()
    connection.close()
    return {row["key"]: row for row in result}


def state_row(path: Path, resource: str) -> sqlite3.Row | None:
    connection = connect(path)
    try:
        row: sqlite3.Row | None = connection.execute(
            "SELECT * FROM sync_state WHERE resource = ?", (resource,)
        ).fetchone()
        return row
    finally:
        connection.close()


class GatedItems(Sequence[Item]):
    """A snapshot page whose iteration stops before item ``at`` until the test releases it.

    The sink consumes a page while its transaction is open, so the pause holds the write
    half done: rows before ``at`` are written but not committed. ``reached`` and
    ``release`` are threading events because the iteration runs on the connection's thread.
    Use it as the page of ``one_page``.
    """

    def __init__(self, items: Sequence[dict[str, Any]], at: int) -> None:
        self._items = [Item.of(item) for item in items]
        self._at = at
        self.reached = threading.Event()
        self.release = threading.Event()

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...
    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        return self._items[index]

    def __iter__(self) -> Iterator[Item]:
        for index, item in enumerate(self._items):
            if index == self._at:
                self.reached.set()
                if not self.release.wait(GATE_TIMEOUT):
                    raise TimeoutError("the test never released the gated snapshot")
            yield item


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "mirror.db"


@pytest.fixture
async def sink(db: Path) -> AsyncIterator[SQLiteSink]:
    async with SQLiteSink(db, resource="configmaps") as opened:
        yield opened


@pytest.fixture
async def pg_sink(postgres_dsn: str) -> AsyncIterator[PostgresSink]:
    async with PostgresSink(postgres_dsn, resource="configmaps") as opened:
        yield opened
