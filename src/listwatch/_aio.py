"""The structured-concurrency shapes, each solved once (trio's nurseries, anyio's
``AsyncContextManagerMixin``): every task listwatch starts has an owner that waits for it
to finish, by construction rather than where someone remembered.

Generic asyncio primitives with no Kubernetes in them: this module imports nothing of
listwatch, so the fake API server (``listwatch.testing``) may use it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

__all__ = [
    "MAX_MESSAGE",
    "OpenedOnEnter",
    "RunsInBackground",
    "Signal",
    "cancel_and_join",
    "first_error",
    "short",
]

E = TypeVar("E", bound=BaseException)

MAX_MESSAGE = 300
"""Characters of a message kept in statuses, logs and errors: a server's error body or a
receiver's exception can be any size, and one line must stay one line."""


class OpenedOnEnter:
    """``async with x``: ``await x.open()`` on entry, ``await x.close()`` on exit, however
    the block ends. Sinks, the HTTP sink and the fake server share this shape; ``open``
    does nothing unless a subclass needs it."""

    async def open(self) -> None:
        """Acquire what the object needs (connections, a listening socket)."""

    async def close(self) -> None:
        """Release it; called on every exit from ``async with``."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def cancel_and_join(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` (a no-op for those done) and wait until every one has finished.

    Why not ``task.cancel(); await asyncio.wait([task])``: if the caller is cancelled again
    while it waits, that stops waiting and leaves the task running with nobody to own it.
    Here the wait goes on until the tasks are done, and the caller's cancellation is raised
    after. The tasks' own outcomes are left on them (``task.exception()``), not raised.
    """
    for task in tasks:
        task.cancel()
    interrupted: asyncio.CancelledError | None = None
    while pending := [task for task in tasks if not task.done()]:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


class RunsInBackground:
    """``async with obj:`` runs ``obj.run()`` in a task for the body's duration.

    Why: an app's lifespan wants a long-running loop beside it. On exit the task is
    cancelled and joined (``cancel_and_join``: also when the exit is itself cancelled), so
    nothing of it outlives the ``async with``; if ``run`` had already ended with an error
    (a ``FatalError``), that error is raised there, unless the body is raising its own.
    """

    _task: asyncio.Task[Any] | None = None

    async def run(self) -> Any:
        raise NotImplementedError

    def _task_name(self) -> str:
        """The name of the task ``run`` runs in (shown by debuggers and task dumps)."""
        return f"listwatch {type(self).__name__}"

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"this {type(self).__name__} is already running")
        self._task = asyncio.create_task(self.run(), name=self._task_name())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_join(task)
        if not task.cancelled() and exc is None:
            error = task.exception()
            if error is not None:
                raise error


@overload
def first_error(
    group: BaseExceptionGroup[E],
    *,
    prefer: type[BaseException] | tuple[type[BaseException], ...] = (),
    if_alone: Literal[False] = False,
) -> E: ...


@overload
def first_error(
    group: BaseExceptionGroup[E],
    *,
    prefer: type[BaseException] | tuple[type[BaseException], ...] = (),
    if_alone: Literal[True],
) -> E | BaseExceptionGroup[E]: ...


def first_error(
    group: BaseExceptionGroup[E],
    *,
    prefer: type[BaseException] | tuple[type[BaseException], ...] = (),
    if_alone: bool = False,
) -> E | BaseExceptionGroup[E]:
    """The error of a task group that matters: the first leaf (depth first, the order a
    traceback shows) that is a ``prefer``, else the first leaf.

    Why: a task group wraps even a single failure in a group, and a loop that decides what
    to do next by the error's type (retry, give up) must see the error itself. ``prefer``
    keeps a ``FatalError`` from hiding behind an ordinary failure of a sibling.

    ``if_alone=True`` unwraps only a group that holds one error which is not itself a
    group, and otherwise returns the group unchanged: for a caller's own code (a leader's
    ``lead``), whose several errors, or whose own group, are not ours to pick from.
    """
    if if_alone:
        only = group.exceptions
        if len(only) == 1 and not isinstance(only[0], BaseExceptionGroup):
            return only[0]
        return group
    leaves = list(_leaves(group))
    for leaf in leaves:
        if isinstance(leaf, prefer):
            return leaf
    return leaves[0]


def _leaves(group: BaseExceptionGroup[E]) -> list[E]:
    leaves: list[E] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


def short(exc_or_text: BaseException | str, limit: int = MAX_MESSAGE) -> str:
    """``"Type: message"`` for an exception (the text as it is for a string), cut to
    ``limit`` characters with ``…`` marking the cut.

    Why: error bodies and receivers' exceptions are unbounded, and they end up in statuses,
    health reports, log lines and other errors' messages.
    """
    if isinstance(exc_or_text, BaseException):
        text = f"{type(exc_or_text).__name__}: {exc_or_text}"
    else:
        text = exc_or_text
    return text if len(text) <= limit else text[:limit] + "…"


class Signal:
    """A "something changed" signal, so that waiters wait for conditions instead of polling.

    Semantics (edge-triggered, conditions re-checked): each :meth:`notify` wakes every task
    waiting at that moment, once; a task that starts waiting after a notify waits for the
    next one. A waiter therefore never misses a change if it takes :attr:`event` *before*
    checking its condition (or checks and waits with no ``await`` in between, as a loop
    around :meth:`wait` does); :meth:`wait_until` does this. Why not one ``asyncio.Event``:
    whoever clears it can clear it under a waiter that has not run yet.
    """

    def __init__(self, on_notify: Callable[[], None] | None = None) -> None:
        self._event = asyncio.Event()
        self._on_notify = on_notify

    @property
    def event(self) -> asyncio.Event:
        """Set by the next :meth:`notify`. Take it *before* checking the condition."""
        return self._event

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()
        if self._on_notify is not None:
            self._on_notify()

    async def wait(self) -> None:
        """Until the next :meth:`notify`."""
        await self._event.wait()

    async def wait_until(self, condition: Callable[[], bool], within: float | None = None) -> None:
        """Until ``condition()`` holds; ``TimeoutError`` after ``within`` seconds (if given)."""
        async with asyncio.timeout(within):
            while True:
                event = self._event
                if condition():
                    return
                await event.wait()
