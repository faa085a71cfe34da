"""What every command shares: errors as one line, logging to stderr, and shutdown signals.

A command-line user who mistypes a path or points at a cluster that is down must get one
line that says what is wrong, not a traceback: commands raise ``CliError`` with that line
and ``main`` prints it. Ctrl-C and SIGTERM set a stop event the command waits on, so it
shuts down in order (the syncer cancelled, the sink closed); a second signal cancels the
command outright, for when an orderly shutdown itself hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from listwatch._aio import MAX_MESSAGE, short

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the user can act on; its message is printed as the single error line."""


def one_line(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """An exception's message flattened to one line (YAML errors span several)."""
    return short(" ".join(str(exc).split()) or type(exc).__name__, limit)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted: rich's live view
    redirects it while live, so log lines land above the view instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextlib.contextmanager
def logging_to_stderr(verbosity: int) -> Iterator[None]:
    """While inside, the ``listwatch`` logger goes to stderr: warnings by default, INFO with
    ``-v``, DEBUG with ``-vv`` (every event: noisy). Restored on exit, so a command run
    in-process (tests, embedding) leaves the caller's logging as it was."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("listwatch")
    saved = (logger.level, logger.propagate)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


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
