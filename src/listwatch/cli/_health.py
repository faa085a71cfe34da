"""What ``listwatch mirror`` says about failures: each failed attempt, a resource gone stale,
and when to give up.

A mirror that cannot sync must say so without ``-v``: the Syncer retries every error for
ever (a running mirror rides out an API server restart), so the person watching it needs
to see each failed attempt, where it was writing, why it failed and when it tries again;
and a resource that has not synced for a long time needs one louder line, not one per
attempt. Both are built on what the Syncers already report: ``FailureLog`` is an observer
of a Syncer's events (``listwatch.observe``), and ``watch_health`` reads the statuses those
events fold into (``SyncerStatus.unsynced_for``, ``failing_for``), so the loop keeps no
counter and writes no line for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NoReturn, Protocol

from listwatch._agent import Agent
from listwatch._aio import cancel_and_join
from listwatch._supervisor import Supervisor
from listwatch.cli._logging import cli_logger
from listwatch.cli._runtime import CliError
from listwatch.observe import _events as observe
from listwatch.observe._status import SyncerStatus

__all__ = ["DEFAULT_STALE_AFTER", "FailureLog", "GaveUp", "watch_health"]

DEFAULT_STALE_AFTER = 60.0
"""Twice the Syncer's longest backoff (30 s): a resource that has not synced through two of
its slowest retries will not by itself, and someone should look. It is also the longest
``Retry-After`` honoured (``listwatch._reflector.MAX_RETRY_AFTER_SECONDS``): a server that
asks for the longest wait we grant, on a relist, makes the resource not ready meanwhile,
and kube-apiserver's own waits (32 s at most) never do."""

_IDLE_CHECK = 5.0
"""With no threshold ahead, how often the watcher looks again anyway (a new term's
Syncers replace the ones it waits on)."""


def _flat(text: str) -> str:
    return " ".join(text.split())


def _attempts(count: int) -> str:
    return f"{count} failed attempt{'' if count == 1 else 's'}"


class FailureLog:
    """Observer of one Syncer: a WARNING for every generation that ended in an error.

    The line is written when the Syncer reports its backoff (``BackingOff``, emitted
    before it waits), so it says when the next attempt is while there is still time to
    act on it. A resync's relist is not a failure and writes nothing.
    """

    def __init__(self, resource: str, target: str, *, source: str | None = None) -> None:
        self._resource = resource
        self._target = target
        self._source = source
        self._ended: observe.GenerationEnded | None = None
        self._failures = 0

    def __call__(self, event: observe.SyncEvent) -> None:
        match event:
            case observe.GenerationEnded(resync=False):
                self._ended = event
            case observe.BackingOff(seconds=seconds) if self._ended is not None:
                ended, self._ended = self._ended, None
                self._failures += 1
                reason = _flat(ended.message) or ended.reason
                cli_logger.warning(
                    "sync into %s failed: %s; next attempt in %.1f s",
                    self._target,
                    reason,
                    seconds,
                    extra={
                        "resource": self._resource,
                        "target": self._target,
                        "source": self._source,
                        "reason": reason,
                        "error": ended.reason,
                        "generation": ended.generation,
                        "failures": self._failures,
                        "retry_in": round(seconds, 3),
                    },
                )
            case observe.SnapshotDelivered():
                self._failures = 0
            case _:
                pass


class GaveUp(CliError):
    """``--exit-on-failure``: a resource failed for longer than the user allows."""


class Terms(Protocol):
    """What ``watch_health`` reads: the Supervisor of the term running now, if any (an
    ``Agent``, or one shard of a ``ShardedAgent``: ``ShardedAgent.shard_terms``)."""

    @property
    def supervisor(self) -> Supervisor | None: ...

    async def wait_for_supervisor(self) -> Supervisor: ...


async def watch_health(
    agent: Agent | Terms, *, target: str, stale_after: float, exit_after: float | None
) -> NoReturn:
    """Log each resource that goes ``stale_after`` seconds without a sync (one ERROR) and
    its recovery (one INFO); raise ``GaveUp`` once one has been failing for ``exit_after``.

    Readiness says the same through ``/readyz`` (``Agent(stale_after=...)``); this is the
    line a person reads. Runs for the life of the mirror: a standby has nothing to report.
    """
    stale: set[str] = set()
    while True:
        supervisor = agent.supervisor
        if supervisor is None:
            stale.clear()  # a standby: the next term starts afresh
            await agent.wait_for_supervisor()
            continue
        changes = [s.next_change() for s in supervisor.syncers.values()]  # before reading
        statuses = supervisor.statuses()
        for name, status in statuses.items():
            _check(name, status, stale, target=target, stale_after=stale_after)
            if exit_after is not None and status.failures and status.failing_for >= exit_after:
                raise GaveUp(_gave_up(name, status, target, exit_after), resource=name)
        await _changed(changes, _next_deadline(statuses, stale, stale_after, exit_after))


def _check(
    name: str, status: SyncerStatus, stale: set[str], *, target: str, stale_after: float
) -> None:
    if name not in stale and status.unsynced_for > stale_after:
        stale.add(name)
        since = "since the start" if not status.has_synced else "since its last sync"
        why = (
            f"{_attempts(status.failures)}, the last: {_flat(status.last_error)}"
            if status.failures and status.last_error
            else "no attempt has failed yet: still listing or writing"
        )
        cli_logger.error(
            "not synced into %s for %.0f s (%s; %s): not ready until it syncs",
            target,
            status.unsynced_for,
            since,
            why,
            extra={
                "resource": name,
                "target": target,
                "unsynced_seconds": round(status.unsynced_for, 3),
                "failures": status.failures,
                "reason": status.last_error,
                "stale_after": stale_after,
            },
        )
    elif name in stale and status.unsynced_for == 0:
        stale.discard(name)
        cli_logger.info(
            "synced into %s again: ready", target, extra={"resource": name, "target": target}
        )


def _gave_up(name: str, status: SyncerStatus, target: str, exit_after: float) -> str:
    return (
        f"failing for {status.failing_for:.0f} s without a sync into {target} "
        f"(--exit-on-failure {exit_after:g}; {_attempts(status.failures)}): "
        f"{_flat(status.last_error or 'no error recorded')}"
    )


def _next_deadline(
    statuses: Mapping[str, SyncerStatus],
    stale: set[str],
    stale_after: float,
    exit_after: float | None,
) -> float:
    """Seconds until a status next crosses a threshold (``_IDLE_CHECK`` at most)."""
    waits = [_IDLE_CHECK]
    for name, status in statuses.items():
        if status.unsynced_for and name not in stale:
            waits.append(stale_after - status.unsynced_for)
        if status.failures and exit_after is not None:
            waits.append(exit_after - status.failing_for)
    return max(0.01, min(waits) + 0.01)  # just past it: "longer than" is strict


async def _changed(changes: list[asyncio.Event], within: float) -> None:
    """Until one of ``changes`` is set (a Syncer's status changed), or ``within`` seconds."""
    waiters = [asyncio.ensure_future(change.wait()) for change in changes]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_join(*waiters)
