"""``python -m listwatch ...`` as a child process of a test, its stderr read as it comes.

The CLI's behaviour is tested as users meet it, a process with real signals; what it did is
learned from the lines it writes (``wait_for_line``), never from a guessed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from tests.cli.helpers import PYTHON, subprocess_env


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """``python -m listwatch ARGS`` with the tests' environment; stderr piped."""
    return await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "listwatch",
        *args,
        env=subprocess_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_to_end(*args: str, within: float = 60.0) -> tuple[int, str]:
    """Run ``python -m listwatch ARGS`` to its end: exit code and stderr (``within`` is a
    safety net against a hang, never a synchronisation)."""
    process = await spawn(*args)
    _, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, err.decode()


class ListwatchProcess:
    """One ``python -m listwatch`` child: ``lines`` is its stderr so far."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, name: str, *args: str) -> ListwatchProcess:
        return cls(name, await spawn(*args))

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
            self._changed = asyncio.Event()
        self._changed.set()

    async def wait_for_line(self, pattern: str, *, within: float = 30.0) -> re.Match[str]:
        """The first line (so far or to come) that matches ``pattern``."""
        async with asyncio.timeout(within):
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                if self.process.returncode is not None or self._reader.done():
                    raise AssertionError(f"{self.name} exited:\n{self.tail()}")
                await self._changed.wait()

    def text(self) -> str:
        return "\n".join(self.lines)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines[-lines:])

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` (unless it has exited) and wait for the exit; its exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
        code = await self.process.wait()
        await self._reader
        return code


@contextlib.asynccontextmanager
async def running(name: str, *args: str) -> AsyncIterator[ListwatchProcess]:
    """A process that is killed (if still running) when the block ends."""
    process = await ListwatchProcess.start(name, *args)
    try:
        yield process
    finally:
        await process.stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def mirror_replicas(
    kubeconfig: Path, count: int, *args: str
) -> AsyncIterator[list[ListwatchProcess]]:
    """``count`` ``listwatch mirror pods --leader-elect`` replicas (``replica-0``, …) with
    ``args`` (the target and the test's own flags). On the way out each is SIGCONTed (a
    SIGSTOPped one could not take its SIGKILL) and SIGKILLed."""
    started: list[ListwatchProcess] = []
    try:
        for i in range(count):
            identity = f"replica-{i}"
            started.append(
                await ListwatchProcess.start(
                    identity,
                    "mirror",
                    "pods",
                    *args,
                    "--kubeconfig",
                    str(kubeconfig),
                    "--merge-interval",
                    "0.05",
                    "--leader-elect",
                    "-v",
                    "--identity",
                    identity,
                )
            )
        yield started
    finally:
        for replica in started:
            if replica.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    replica.process.send_signal(signal.SIGCONT)
            await replica.stop(signal.SIGKILL)


async def start_receiver(store: list[str], token_file: Path) -> tuple[ListwatchProcess, str]:
    """A ``listwatch receiver`` process on a free local port writing to ``store``; its URL."""
    receiver = await ListwatchProcess.start(
        "receiver",
        "receiver",
        "--listen",
        "127.0.0.1:0",
        *store,
        "--token-file",
        str(token_file),
        "-v",
    )
    found = await receiver.wait_for_line(r"serving (http://127\.0\.0\.1:\d+)")
    return receiver, found.group(1)
