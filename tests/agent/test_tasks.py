"""stop_task: a task that swallows a cancellation (as 3.11's wait_for can) is still stopped."""

from __future__ import annotations

import asyncio

from agent.tasks import stop_task


async def test_a_task_that_swallows_one_cancellation_is_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1
                    continue  # what a racing wait_for does: the cancellation is lost
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop_task(task, timeout=2)
    assert task.cancelled() and swallowed == 1


async def test_gives_up_after_the_timeout_and_says_so() -> None:
    refusals = 0

    async def refuses_for_a_while() -> None:
        nonlocal refusals
        while refusals < 1000:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                refusals += 1

    task = asyncio.create_task(refuses_for_a_while())
    await asyncio.sleep(0)
    assert await stop_task(task, timeout=0.3, step=0.05) is False
    assert refusals >= 3 and not task.done()
    refusals = 1000
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.done()


async def test_none_and_finished_tasks_are_fine() -> None:
    assert await stop_task(None)
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    assert await stop_task(done)
