"""Signals: the first SIGTERM/SIGINT asks for an orderly stop, a second one aborts."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from listwatch.cli._logging import logging_to_stderr
from listwatch.cli._runtime import one_line, stop_on_signals


async def test_first_signal_sets_stop_second_cancels() -> None:
    stop = asyncio.Event()
    seen: list[signal.Signals] = []

    async def command() -> str:
        with stop_on_signals(stop, seen.append):
            await stop.wait()
            await asyncio.Event().wait()  # an orderly stop that hangs
        return "unreachable"

    task = asyncio.create_task(command())
    await asyncio.sleep(0)  # let the task install its handlers
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stop.wait(), 5)
    assert seen == [signal.SIGTERM]
    os.kill(os.getpid(), signal.SIGINT)
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done
    assert task.cancelled()


def test_logging_is_restored() -> None:
    loggers = [logging.getLogger(name) for name in ("listwatch", "listwatch.cli", "")]

    def state() -> list[tuple[int, bool, list[logging.Handler]]]:
        return [(logger.level, logger.propagate, list(logger.handlers)) for logger in loggers]

    before = state()
    with logging_to_stderr("info", "json", command="mirror"):
        assert loggers[0].level == logging.INFO
        assert not loggers[0].propagate
    assert state() == before


def test_one_line() -> None:
    assert one_line(ValueError("a\n  b\n\nc")) == "a b c"
    assert one_line(ValueError()) == "ValueError"
    assert one_line(ValueError("x" * 400)).endswith("…")
