"""The collector pause around a parse leaves the collector as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import orjson
import pytest

from listwatch import _jsonparse as jsonparse


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_parses_and_leaves_the_collector_enabled(collector_restored: None) -> None:
    gc.enable()
    assert jsonparse.loads(b'{"a":[1,2]}') == {"a": [1, 2]}
    assert gc.isenabled()


def test_a_parse_error_still_re_enables_the_collector(collector_restored: None) -> None:
    gc.enable()
    with pytest.raises(orjson.JSONDecodeError):
        jsonparse.loads(b"{nope")
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled(collector_restored: None) -> None:
    gc.disable()
    assert jsonparse.loads(b"[]") == []
    assert not gc.isenabled()
