"""``Supervisor``: several Syncers under one owner, one task group, one fate on a fatal error.

A cluster agent mirrors pods *and* nodes (and services, namespaces, custom resources) from
one process over one ``ApiClient``. Each resource keeps its own generations, status and
receiver calls, so one resource's restarts (a 410, a receiver that failed) never disturb
another: they are separate Syncers, each relisting on its own. What they share is their
fate when something cannot be retried: a ``FatalError`` in one (an unknown resource, a
forbidden one) is reported in its status and stops the whole supervisor with that error,
as controller-runtime's manager stops when one of its caches cannot sync, so that a
misconfigured agent exits and says why instead of running with a hole in its mirror.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NoReturn

from listwatch._aio import RunsInBackground, cancel_and_join, first_error
from listwatch._syncer import Syncer
from listwatch.errors import FatalError
from listwatch.observe._status import SyncerStatus

__all__ = ["Supervisor"]


def resource_name(syncer: Syncer) -> str:
    """The name a Syncer goes by: its resource as kubectl writes it (``deployments.apps``);
    for a source that has not resolved its name yet, the name as it was written."""
    return syncer.name


class Supervisor(RunsInBackground):
    """Run several Syncers together until cancelled, or until one fails fatally.

    ::

        supervisor = Supervisor([pods_syncer, nodes_syncer])
        await supervisor.run()  # raises the first FatalError of any of them
    """

    def __init__(self, syncers: Iterable[Syncer]) -> None:
        by_name: dict[str, Syncer] = {}
        for syncer in syncers:
            name = resource_name(syncer)
            if name in by_name:
                raise ValueError(f"two Syncers for the same resource {name!r}")
            by_name[name] = syncer
        if not by_name:
            raise ValueError("a Supervisor needs at least one Syncer")
        self._syncers = by_name

    @property
    def syncers(self) -> Mapping[str, Syncer]:
        """The Syncers by resource name (``pods``, ``deployments.apps``)."""
        return MappingProxyType(self._syncers)

    def statuses(self) -> dict[str, SyncerStatus]:
        return {name: syncer.status for name, syncer in self._syncers.items()}

    def not_ready(self) -> dict[str, SyncerStatus]:
        """The resources whose receiver does not hold a complete snapshot yet."""
        return {name: s for name, s in self.statuses().items() if not s.has_synced}

    async def wait_until(
        self, predicate: Callable[[Mapping[str, SyncerStatus]], bool]
    ) -> dict[str, SyncerStatus]:
        """Until ``predicate(statuses)`` holds; a fatal failure raises (``Syncer.wait_until``)."""
        while True:
            # The events are taken before the statuses are read: a change in between sets
            # one of them, so it is never slept through.
            changes = [s.next_change() for s in self._syncers.values()]
            statuses = self.statuses()
            if predicate(statuses):
                return statuses
            for syncer in self._syncers.values():
                if syncer.failure is not None:
                    raise syncer.failure
            # One waiter per Syncer, owned here: cancelled and awaited before returning.
            waiters = [asyncio.ensure_future(change.wait()) for change in changes]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_join(*waiters)

    async def wait_synced(self) -> dict[str, SyncerStatus]:
        """Until every receiver holds a complete snapshot."""
        return await self.wait_until(lambda statuses: all(s.synced for s in statuses.values()))

    async def run(self) -> NoReturn:
        """Every Syncer in one task group; the first ``FatalError`` stops them all and is raised."""
        try:
            async with asyncio.TaskGroup() as group:
                for name, syncer in self._syncers.items():
                    group.create_task(syncer.run(), name=f"listwatch {name}")
        except BaseExceptionGroup as errors:
            fatal, others = errors.split(FatalError)
            if others is not None:
                raise others from None  # a bug: surfaces as it is
            assert fatal is not None
            raise first_error(fatal) from None
        raise AssertionError("Syncer.run() returned")  # pragma: no cover - it never returns

    def _task_name(self) -> str:
        return "listwatch supervisor"

    def __repr__(self) -> str:
        return f"Supervisor({', '.join(self._syncers)})"
