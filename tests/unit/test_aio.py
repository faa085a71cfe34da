"""The structured-concurrency shapes of ``listwatch._aio``: every task joined, every error
flattened, every change signalled and every message cut the same way."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import pytest

from listwatch._aio import (
    MAX_MESSAGE,
    RunsInBackground,
    Signal,
    cancel_and_join,
    first_error,
    short,
)
from listwatch.errors import FatalError

WAIT = 5.0
"""Upper bound for awaiting a condition that should hold almost at once (never asserted on)."""


class SlowToStop:
    """A task body whose cleanup awaits ``release`` after it was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cleaning = asyncio.Event()
        self.release = asyncio.Event()
        self.cleaned = False

    async def run(self) -> NoReturn:
        try:
            self.started.set()
            await asyncio.Event().wait()
            raise AssertionError("never set")
        finally:
            self.cleaning.set()
            await self.release.wait()
            self.cleaned = True


# -- cancel_and_join ---------------------------------------------------------------------


async def test_cancel_and_join_waits_for_the_tasks_cleanup() -> None:
    body = SlowToStop()
    task = asyncio.create_task(body.run())
    await asyncio.wait_for(body.started.wait(), WAIT)
    joining = asyncio.create_task(cancel_and_join(task))
    await asyncio.wait_for(body.cleaning.wait(), WAIT)
    assert not joining.done()
    body.release.set()
    await asyncio.wait_for(joining, WAIT)
    assert body.cleaned
    assert task.cancelled()


async def test_a_caller_cancelled_again_mid_wait_still_joins_then_is_cancelled() -> None:
    body = SlowToStop()
    task = asyncio.create_task(body.run())
    await asyncio.wait_for(body.started.wait(), WAIT)
    done_when_the_caller_resumed: list[bool] = []

    async def caller() -> None:
        try:
            await cancel_and_join(task)
        finally:
            done_when_the_caller_resumed.append(task.done())

    joining = asyncio.create_task(caller())
    await asyncio.wait_for(body.cleaning.wait(), WAIT)  # the caller is waiting for the task
    joining.cancel()  # cancelled again, while it waits
    body.release.set()
    with pytest.raises(asyncio.CancelledError):
        await joining
    assert joining.cancelled()  # the caller's cancellation, raised...
    assert done_when_the_caller_resumed == [True]  # ...only once the task had finished
    assert body.cleaned


async def test_cancel_and_join_leaves_a_finished_tasks_outcome_on_it() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait([task])
    await cancel_and_join(task)  # nothing to cancel, nothing raised
    assert isinstance(task.exception(), ValueError)


async def test_cancel_and_join_cancels_every_task_before_waiting() -> None:
    bodies = [SlowToStop(), SlowToStop()]
    tasks = [asyncio.create_task(body.run()) for body in bodies]
    for body in bodies:
        await asyncio.wait_for(body.started.wait(), WAIT)
    joining = asyncio.create_task(cancel_and_join(*tasks))
    for body in bodies:  # both are cleaning up at once: neither waited for the other
        await asyncio.wait_for(body.cleaning.wait(), WAIT)
    for body in bodies:
        body.release.set()
    await asyncio.wait_for(joining, WAIT)
    assert all(task.cancelled() for task in tasks)


# -- RunsInBackground --------------------------------------------------------------------


class Gone(FatalError):
    pass


class Stoppable(RunsInBackground):
    def __init__(self) -> None:
        self.body = SlowToStop()

    async def run(self) -> NoReturn:
        await self.body.run()


class Failing(RunsInBackground):
    def __init__(self) -> None:
        self.fail = asyncio.Event()
        self.failing = asyncio.Event()

    async def run(self) -> NoReturn:
        await self.fail.wait()
        self.failing.set()
        raise Gone("the resource is gone")


async def test_leaving_the_block_cancels_run_and_waits_for_its_cleanup() -> None:
    background = Stoppable()
    body = background.body

    async def release_once_cleaning() -> None:
        await body.cleaning.wait()
        body.release.set()

    releasing = asyncio.create_task(release_once_cleaning())
    async with background:
        await asyncio.wait_for(body.started.wait(), WAIT)
    assert body.cleaned  # joined: nothing of run outlives the block
    await releasing


async def test_a_cancelled_exit_still_joins_run() -> None:
    background = Stoppable()
    body = background.body
    done_when_the_exit_ended: list[bool] = []

    async def user() -> None:
        try:
            async with background:
                await asyncio.wait_for(body.started.wait(), WAIT)
        finally:
            done_when_the_exit_ended.append(body.cleaned)

    using = asyncio.create_task(user())
    await asyncio.wait_for(body.cleaning.wait(), WAIT)  # the exit is waiting for run
    using.cancel()
    body.release.set()
    with pytest.raises(asyncio.CancelledError):
        await using
    assert done_when_the_exit_ended == [True]


async def leave_after_run_failed(background: Failing, body_error: Exception | None) -> None:
    async with background:
        background.fail.set()
        await asyncio.wait_for(background.failing.wait(), WAIT)  # run raises right after
        if body_error is not None:
            raise body_error


async def test_an_error_that_ended_run_is_raised_on_leaving_the_block() -> None:
    with pytest.raises(Gone, match="gone"):
        await leave_after_run_failed(Failing(), None)


async def test_the_blocks_own_error_wins_over_runs() -> None:
    with pytest.raises(KeyError):
        await leave_after_run_failed(Failing(), KeyError("the body's"))


async def test_running_twice_at_once_is_refused() -> None:
    background = Stoppable()
    background.body.release.set()
    async with background:
        with pytest.raises(RuntimeError, match="this Stoppable is already running"):
            async with background:
                pass  # pragma: no cover
    async with background:  # and again once it stopped
        pass


# -- first_error -------------------------------------------------------------------------


def test_first_error_is_the_first_leaf_depth_first() -> None:
    first, second, third = ValueError("1"), KeyError("2"), OSError("3")
    group = BaseExceptionGroup("g", [BaseExceptionGroup("inner", [first, second]), third])
    assert first_error(group) is first


def test_a_preferred_error_comes_first_wherever_it_is() -> None:
    ordinary, fatal, later = ValueError("1"), Gone("2"), Gone("3")
    group = BaseExceptionGroup("g", [ordinary, BaseExceptionGroup("inner", [fatal, later])])
    assert first_error(group, prefer=FatalError) is fatal
    assert first_error(ExceptionGroup("g", [ordinary]), prefer=FatalError) is ordinary


def test_if_alone_unwraps_only_a_single_plain_error() -> None:
    alone, other = ValueError("1"), KeyError("2")
    assert first_error(ExceptionGroup("g", [alone]), if_alone=True) is alone
    several = ExceptionGroup("g", [alone, other])
    assert first_error(several, if_alone=True) is several
    nested = ExceptionGroup("g", [ExceptionGroup("lead's own", [alone])])
    assert first_error(nested, if_alone=True) is nested


# -- Signal ------------------------------------------------------------------------------


async def test_a_notify_wakes_every_waiter() -> None:
    signal = Signal()
    waiting = [asyncio.Event() for _ in range(3)]

    async def waiter(started: asyncio.Event) -> None:
        started.set()
        await signal.wait()

    waiters = [asyncio.create_task(waiter(started)) for started in waiting]
    for started in waiting:
        await asyncio.wait_for(started.wait(), WAIT)
    signal.notify()
    await asyncio.wait_for(asyncio.gather(*waiters), WAIT)


async def test_a_waiter_that_took_the_event_before_a_change_sees_it() -> None:
    signal = Signal()
    event = signal.event  # taken before checking a condition...
    signal.notify()  # ...a change that happens before it awaits is not missed
    await asyncio.wait_for(event.wait(), WAIT)
    assert not signal.event.is_set()  # a later waiter waits for the next change


async def test_wait_until_rechecks_its_condition_at_every_change() -> None:
    notified: list[None] = []
    signal = Signal(lambda: notified.append(None))
    state = {"ready": False}
    checks: list[bool] = []
    checked = asyncio.Event()

    def ready() -> bool:
        checks.append(state["ready"])
        checked.set()
        return state["ready"]

    async def next_check() -> None:
        await asyncio.wait_for(checked.wait(), WAIT)
        checked.clear()

    waiting = asyncio.create_task(signal.wait_until(ready, WAIT))
    await next_check()
    signal.notify()  # a change that does not satisfy it: checked again, still waiting
    await next_check()
    assert not waiting.done()
    state["ready"] = True
    signal.notify()
    await asyncio.wait_for(waiting, WAIT)
    assert checks == [False, False, True]
    assert len(notified) == 2


async def test_wait_until_returns_at_once_when_the_condition_holds() -> None:
    await asyncio.wait_for(Signal().wait_until(lambda: True), WAIT)


async def test_wait_until_gives_up_after_within() -> None:
    with pytest.raises(TimeoutError):
        await Signal().wait_until(lambda: False, within=0)


# -- short -------------------------------------------------------------------------------


def test_short_names_an_exceptions_type() -> None:
    assert short(ValueError("bad value")) == "ValueError: bad value"
    assert short("just text") == "just text"


def test_short_cuts_at_the_limit_and_marks_the_cut() -> None:
    exactly = "x" * MAX_MESSAGE
    assert short(exactly) == exactly
    assert short(exactly + "y") == exactly + "…"
    assert short("abcdef", limit=3) == "abc…"
    assert short(KeyError("k" * 400)).startswith("KeyError: 'kkk")
    assert len(short(KeyError("k" * 400))) == MAX_MESSAGE + 1
