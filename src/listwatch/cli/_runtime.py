"""What every command shares: errors as one line, and shutdown signals.

A command-line user who mistypes a path or points at a cluster that is down must get one
line that says what is wrong, not a traceback: commands raise ``CliError`` with that line
and ``main`` prints it. Ctrl-C and SIGTERM set a stop event the command waits on, so it
shuts down in order (the syncer cancelled, the sink closed); a second signal cancels the
command outright, for when an orderly shutdown itself hangs. A command that is still
starting (waiting on a server that may never answer) is cancelled by the first one
(``unless_stopped_while_starting``): it has nothing to shut down in order yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator

from listwatch._aio import MAX_MESSAGE, cancel_and_join, short

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the user can act on; its message is printed as the single error line.

    ``resource`` names the resource it concerns, when it concerns one (a log field)."""

    def __init__(self, message: str, *, resource: str | None = None) -> None:
        super().__init__(message)
        self.resource = resource


def one_line(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """An exception's message flattened to one line (YAML errors span several)."""
    return short(" ".join(str(exc).split()) or type(exc).__name__, limit)


@contextlib.contextmanager
def stop_on_signals(
    stop: asyncio.Event, on_stop: Callable[[signal.Signals], None] | None = None
) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set ``stop``; a second one cancels the current task.

    Does nothing off the main thread or where the loop cannot take signal handlers
    (Windows): Ctrl-C then raises ``KeyboardInterrupt`` as usual.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed: list[signal.Signals] = []

    def handle(signum: signal.Signals) -> None:
        if stop.is_set():
            if task is not None:
                task.cancel()
            return
        stop.set()
        if on_stop is not None:
            on_stop(signum)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, handle, signum)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                break
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


Command = Callable[[asyncio.Event], Awaitable[int]]
"""A command, given an event to set once it has started its work (and handles ``stop``
itself from then on)."""


async def unless_stopped_while_starting(command: Command, stop: asyncio.Event) -> int | None:
    """Run ``command``; None if ``stop`` was set before it had started (it is cancelled).

    Why: starting means waiting on other servers (discovery, a preflight LIST, a database),
    each bounded by a long timeout (a server that never answers takes 60 s to be called
    down). A Ctrl-C then must not wait for those: nothing has started that needs an orderly
    stop, so the start is cancelled at once.
    """
    started = asyncio.Event()
    running = asyncio.ensure_future(command(started))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await cancel_and_join(running, stopping)
        raise
    stopping.cancel()
    if running.done() or started.is_set():
        return await running  # a second signal cancels the caller, and this await with it
    await cancel_and_join(running)
    error = None if running.cancelled() else running.exception()
    if error is not None:
        raise error  # it failed (or finished its own way) as it was being cancelled
    return None if running.cancelled() else running.result()
