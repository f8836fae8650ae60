"""Waiting on a condition, the one way the suite does it: poll ``check`` until it holds or a deadline
passes, then fail saying what was awaited, the last value seen and the logs of the processes involved.

Why one helper: a test on a busy machine must wait on a condition, never on time, and every wait needs
a bound (the guide's rules). Twenty private copies had drifted (counted iterations that stretch a 10 s
bound on a loaded machine, failures without the last value or the children's logs).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import urllib.error
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class HasTail(Protocol):
    """A child process whose recent output explains a failure (tests.procs.Proc)."""

    name: str

    def tail(self) -> str: ...


def _failure(what: str, timeout: float, last: object, procs: Sequence[HasTail]) -> AssertionError:
    logs = "".join(f"\n--- {p.name} ---\n{p.tail()}" for p in procs)
    return AssertionError(f"not within {timeout} s: {what}; last: {last!r}{logs}")


async def until(check: Callable[[], T | Awaitable[T]], what: str, *, timeout: float = 10.0,
                interval: float = 0.05, procs: Sequence[HasTail] = (), off_loop: bool = False,
                ignore: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy result of ``check`` (a function or a coroutine function).

    ``off_loop`` runs a blocking ``check`` (an HTTP GET, a SQLite read of another process's file) in a
    thread so the loop keeps serving the code under test; ``ignore`` lists exceptions that mean "not
    yet" (a server still starting refuses connections)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = await asyncio.to_thread(check) if off_loop else check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            last = result
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last, procs)
        await asyncio.sleep(interval)


def until_sync(check: Callable[[], T], what: str, *, timeout: float = 10.0, interval: float = 0.05,
               procs: Sequence[HasTail] = (), ignore: tuple[type[BaseException], ...] = ()) -> T:
    """:func:`until` for a test without an event loop (a CLI run in a subprocess)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last, procs)
        time.sleep(interval)


async def eventually(check: Callable[[], T], timeout: float, what: str, *procs: HasTail) -> T:
    """:func:`until` for a blocking ``check`` of servers in other processes (HTTP, files, sockets): run
    off the loop, and a server still starting (refused, 5xx, half a body) or an answer without the key
    looked for yet is "not yet"."""
    return await until(check, what, timeout=timeout, procs=procs, off_loop=True,
                       ignore=(OSError, urllib.error.URLError, ValueError, KeyError))
