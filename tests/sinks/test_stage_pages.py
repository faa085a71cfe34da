"""``_base.stage_pages``: a snapshot's pages staged one at a time, each while the next is read.

The staging here is a recorder (the backends' own staging is tested against real databases
in the other modules of this directory); what is tested is the order of the two sides and
what ends them: a page staged while the next is read, never two at once, in order, and an
error of either side raised as it is, the other side ended and waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from listwatch import Item, Page, Snapshot
from listwatch.errors import ResourceExpired
from listwatch.sinks._base import Staging, stage_pages

from .helpers import LOCK_WAIT, configmap


def page(number: int) -> Page:
    return Page([Item.of(configmap(f"cm-{number}-{i}", rv=number)) for i in range(3)], "9")


class Recorder(Staging):
    """Stages nothing; records which pages were added, and can hold a page until told."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.hold = True
        self.refuse: str | None = None

    async def add(self, items: Sequence[Item]) -> Mapping[str, str]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.started.set()
            if self.hold:
                await self.release.wait()
            if items[0].key == self.refuse:
                raise ValueError(f"refused {items[0].key}")
            self.added.append(items[0].key)
            return {items[0].key: "recorded"}
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.in_flight -= 1

    async def swap(self, snapshot: Snapshot) -> None:
        raise AssertionError("stage_pages never swaps")


async def test_a_page_is_staged_while_the_next_is_read() -> None:
    """Page 2 is asked for while page 1 is still staging (held): the staging of page 1 is
    released only from the reading of page 2, so one after the other would never end."""
    staging = Recorder()

    async def pages() -> AsyncIterator[Page]:
        yield page(1)
        await staging.started.wait()  # page 1 is staging now, and not done
        assert staging.added == []
        staging.release.set()
        yield page(2)

    async with asyncio.timeout(LOCK_WAIT):
        quarantined = await stage_pages(Snapshot(pages(), resource_version="9"), staging)
    assert staging.added == ["default/cm-1-0", "default/cm-2-0"]  # in order
    assert staging.most_in_flight == 1  # one page at a time
    assert quarantined == {"default/cm-1-0": "recorded", "default/cm-2-0": "recorded"}


async def test_a_list_error_ends_the_page_being_staged_and_is_raised_as_it_is() -> None:
    staging = Recorder()

    async def pages() -> AsyncIterator[Page]:
        yield page(1)
        await staging.started.wait()
        raise ResourceExpired(410, "Expired", "the continue token expired")

    with pytest.raises(ResourceExpired):
        async with asyncio.timeout(LOCK_WAIT):
            await stage_pages(Snapshot(pages(), resource_version="9"), staging)
    assert staging.cancelled  # the page in flight was cancelled...
    assert staging.in_flight == 0  # ...and waited for


async def test_a_refused_page_ends_the_snapshot_with_its_own_error() -> None:
    staging = Recorder()
    staging.hold = False
    staging.refuse = "default/cm-2-0"
    asked: list[int] = []

    async def pages() -> AsyncIterator[Page]:
        for number in range(1, 6):
            asked.append(number)
            yield page(number)

    with pytest.raises(ValueError, match="refused default/cm-2-0"):
        async with asyncio.timeout(LOCK_WAIT):
            await stage_pages(Snapshot(pages(), resource_version="9"), staging)
    assert staging.added == ["default/cm-1-0"]
    assert max(asked) <= 3  # no more than the page after the refused one was read
